"""Reference profiles: what a model's inputs, scores and embeddings looked like when it was trained.

A profile is plain JSON (numpy arrays become lists) and is written into a bundle next to the model;
:func:`lepton_apps.monitor.drift.compare` later holds a window of live traffic against it.

::

    profile = build_profile(valid_df, scores=valid_scores, embeddings=valid_emb, source="fraud@3f2a")
    profile.save(bundle_dir / "monitor")        # profile.json (+ embeddings.npy)
    profile = Profile.load(bundle_dir / "monitor")

Numeric column: ``bins`` quantile bins of the data (unique interior edges; the two end bins are open, so
any later value falls into a bin), counts per bin (±inf go to the end bins), missing / non-finite counts,
min / max / mean / std of the finite values, and a seeded sample of up to ``sample`` finite values (for
the KS test and the Wasserstein distance). Categorical column: the ``top`` most frequent values with their
counts, the count of all others, the number of distinct values and of values seen once and twice (the
Good–Turing estimate of how often a never-seen value turns up anyway, and of its error), the full
vocabulary when it has at most ``vocabulary`` values, and the missing count. Values are compared as
strings.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError
from lepton_apps.io import atomic_path, atomic_write_json
from lepton_apps.monitor.bands import bin_counts, psi, window_variation  # noqa: F401 - bin_counts, psi: re-exported

FORMAT_VERSION = 1
PROFILE_FILE = "profile.json"
EMBEDDINGS_FILE = "embeddings.npy"
OTHER = "(other)"


def _finite_float(x: float) -> float | None:
    """Return ``x`` as a float, or None when it is NaN or infinite (JSON has no NaN)."""
    x = float(x)
    return x if np.isfinite(x) else None


def numeric_values(values: Any, *, where: str) -> tuple[np.ndarray, dict[str, int]]:
    """Return ``values`` as a float64 array and the counts of rows that are not ordinary numbers.

    Counts: ``missing`` (None / NaN), ``unparseable`` (present but not a number, such as "n/a"),
    ``nonfinite`` (±inf). Missing and unparseable rows become NaN; nothing is dropped.
    """
    series = pd.Series(np.asarray(values).ravel() if not isinstance(values, pd.Series) else values)
    if series.dtype == bool:
        series = series.astype(float)
    missing = series.isna()
    numbers = pd.to_numeric(series, errors="coerce")
    try:
        arr = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataError(f"cannot read the values as numbers: {exc}", where=where,
                        fix="pass numbers, or list the column as categorical") from None
    unparseable = int((~missing & numbers.isna()).sum())
    return arr, {"missing": int(missing.sum()), "unparseable": unparseable, "nonfinite": int(np.isinf(arr).sum())}


def profile_numeric(values: Any, *, sample: int = 2000, bins: int = 10, seed: int = 0,
                    where: str = "column", ordered: bool = False) -> dict[str, Any]:
    """Return the numeric profile of ``values`` (a JSON-able dict; see the module docstring); with ``ordered``
    (``values`` in time order) also the variation between its consecutive windows (:func:`window_variation`)."""
    if bins < 2:
        raise DataError(f"bins={bins} is too few", where=where, fix="use bins >= 2 (the default is 10)")
    arr, counts = numeric_values(values, where=where)
    finite = arr[np.isfinite(arr)]
    n = int(arr.size)
    edges: list[float] = []
    if finite.size:
        qs = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf")
        edges = [float(e) for e in np.unique(qs)]
    rng = np.random.default_rng(seed)
    picked = finite if finite.size <= sample else rng.choice(finite, size=sample, replace=False)
    nonmissing = n - counts["missing"] - counts["unparseable"]
    out = {
        "kind": "numeric",
        "n": n,
        "missing": counts["missing"] + counts["unparseable"],
        "missing_rate": (counts["missing"] + counts["unparseable"]) / n if n else 0.0,
        "nonfinite": counts["nonfinite"],
        "n_finite": int(finite.size),
        "n_nonmissing": nonmissing,
        "min": _finite_float(finite.min()) if finite.size else None,
        "max": _finite_float(finite.max()) if finite.size else None,
        "mean": _finite_float(finite.mean()) if finite.size else None,
        "std": _finite_float(finite.std()) if finite.size else None,
        "edges": edges,
        "counts": [int(c) for c in bin_counts(arr, edges)] if finite.size else [],
        "sample": [float(v) for v in np.sort(picked)],
    }
    if ordered:
        out["variation"] = window_variation(arr, out)
    return out


def categorical_strings(values: Any) -> tuple[pd.Series, pd.Series]:
    """Return (values as strings, missing mask) for a categorical column.

    A whole number stored as a float reads as the integer ("7", not "7.0"): an integer code column turns
    float as soon as one value is missing, and must not then look like a column of new categories.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    missing = series.isna()
    if pd.api.types.is_float_dtype(series):
        whole = ~missing & np.isfinite(series) & (series == np.round(series)) & (series.abs() < 2.0**53)
        strings = series.astype(str).where(~whole, series.where(whole, 0).astype(np.int64).astype(str))
    else:
        strings = series.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))
    return strings.where(~missing, None), missing


def profile_categorical(values: Any, *, top: int = 100, vocabulary: int = 10_000) -> dict[str, Any]:
    """Return the categorical profile of ``values`` (a JSON-able dict; see the module docstring)."""
    strings, missing = categorical_strings(values)
    counts = strings[~missing].value_counts(sort=True)
    n = int(len(strings))
    kept = counts.iloc[:top]
    return {
        "kind": "categorical",
        "n": n,
        "missing": int(missing.sum()),
        "missing_rate": int(missing.sum()) / n if n else 0.0,
        "n_nonmissing": int(counts.sum()),
        "frequencies": {str(k): int(v) for k, v in kept.items()},
        "other": int(counts.iloc[top:].sum()),
        "n_distinct": int(counts.size),
        "singletons": int((counts == 1).sum()),
        "doubletons": int((counts == 2).sum()),
        "vocabulary": sorted(str(k) for k in counts.index) if counts.size <= vocabulary else None,
    }


def is_numeric_column(series: pd.Series) -> bool:
    """True for int / float columns (bool and everything else is categorical)."""
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def profile_table(df: pd.DataFrame, *, numeric: Iterable[str] | None = None,
                  categorical: Iterable[str] | None = None, sample: int = 2000, bins: int = 10,
                  seed: int = 0, judged: Mapping[str, Any] | None = None,
                  ordered: bool = False) -> dict[str, dict[str, Any]]:
    """Return ``{column: profile}`` for the columns of ``df`` (``ordered``: the rows are in time order, and numeric
    profiles also hold the variation between consecutive windows, :func:`window_variation`).

    With neither ``numeric`` nor ``categorical`` given, every column is profiled, numeric dtypes as
    numeric and the rest as categorical; with either given, exactly the listed columns are. ``judged``
    maps a column to the mask of the rows it is profiled on (:func:`judged_values`; other columns: every row).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}", where="profile_table",
                        fix="pass the reference rows as a DataFrame")
    numeric = list(numeric) if numeric is not None else None
    categorical = list(categorical) if categorical is not None else None
    if numeric is None and categorical is None:
        numeric = [c for c in df.columns if is_numeric_column(df[c])]
        categorical = [c for c in df.columns if c not in set(numeric)]
    numeric, categorical = numeric or [], categorical or []
    both = sorted(set(map(str, numeric)) & set(map(str, categorical)))
    if both:
        raise DataError(f"columns listed as both numeric and categorical: {both}", where="profile_table",
                        fix="list each column once")
    absent = [c for c in numeric + categorical if c not in df.columns]
    if absent:
        raise DataError(f"columns not in the table: {absent}", where="profile_table",
                        fix=f"choose among {list(df.columns)[:20]}")
    out: dict[str, dict[str, Any]] = {}
    for i, col in enumerate(numeric):
        values = judged_values(df[col], judged, str(col), where=f"column {col!r}")
        out[str(col)] = profile_numeric(values, sample=sample, bins=bins, seed=seed + i, where=f"column {col!r}",
                                        ordered=ordered)
    for col in categorical:
        out[str(col)] = profile_categorical(judged_values(df[col], judged, str(col), where=f"column {col!r}"))
    return out


def judged_values(values: Any, judged: Mapping[str, Any] | None, name: str, *, where: str) -> Any:
    """Return the rows of ``values`` that ``judged[name]`` (a boolean mask) keeps; all of them when ``name`` has
    no mask. DataError when the mask's length is not the number of rows."""
    mask = None if not judged else judged.get(name)
    if mask is None:
        return values
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (len(values),):
        raise DataError(f"the judged-rows mask of {name!r} has {mask.size} entries for {len(values)} rows",
                        where=where, fix="pass one True / False per row")
    return values[mask].reset_index(drop=True) if isinstance(values, pd.Series) else np.asarray(values)[mask]


def score_columns(scores: Any, *, where: str = "scores") -> dict[str, Any]:
    """Return ``{name: values}`` for scores given as a 1-D array (name ``score``), a DataFrame, a dict of
    arrays, or a 2-D array (one column per class: ``p0``, ``p1``, …)."""
    if isinstance(scores, pd.DataFrame):
        return {str(c): scores[c] for c in scores.columns}
    if isinstance(scores, Mapping):
        return {str(k): v for k, v in scores.items()}
    arr = np.asarray(scores)
    if arr.ndim == 1:
        return {"score": arr}
    if arr.ndim == 2:
        return {f"p{j}": arr[:, j] for j in range(arr.shape[1])}
    raise DataError(f"scores have {arr.ndim} dimensions", where=where,
                    fix="pass a 1-D array, a (rows, classes) array, a DataFrame or a dict of arrays")


def profile_scores(scores: Any, *, sample: int = 2000, bins: int = 10, seed: int = 0,
                   judged: Mapping[str, Any] | None = None, ordered: bool = False) -> dict[str, dict[str, Any]]:
    """Return ``{name: numeric profile}`` of a model's prediction distribution (see :func:`score_columns`), each
    on the rows ``judged[name]`` keeps (every row for a name without a mask); ``ordered`` as in :func:`profile_table`."""
    return {name: profile_numeric(judged_values(v, judged, name, where=f"scores {name!r}"), sample=sample, bins=bins,
                                  seed=seed + i, where=f"scores {name!r}", ordered=ordered)
            for i, (name, v) in enumerate(score_columns(scores).items())}


def embedding_matrix(matrix: Any, *, where: str = "embeddings") -> np.ndarray:
    """Return ``matrix`` as a 2-D float32 array; DataError when it is not (rows, dimensions)."""
    arr = np.asarray(matrix, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"embeddings have shape {arr.shape}", where=where,
                        fix="pass one row per item: an array of shape (rows, dimensions)")
    return arr


def profile_embeddings(matrix: Any, *, sample: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Return the embedding profile: a seeded sample of up to ``sample`` finite rows (float32 array under
    ``sample``), the per-dimension mean and std, and the counts of all rows and of non-finite rows."""
    arr = embedding_matrix(matrix)
    finite = np.isfinite(arr).all(axis=1)
    good = arr[finite]
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(good), size=min(sample, len(good)), replace=False))
    return {
        "kind": "embeddings",
        "n": int(len(arr)),
        "nonfinite_rows": int((~finite).sum()),
        "dim": int(arr.shape[1]),
        "mean": [float(v) for v in good.mean(axis=0)] if len(good) else [],
        "std": [float(v) for v in good.std(axis=0)] if len(good) else [],
        "sample": good[rows].astype(np.float32),
    }


@dataclasses.dataclass
class Profile:
    """A model's reference profile: ``features`` and ``predictions`` map a name to a numeric or categorical
    profile; ``embeddings`` is an embedding profile or None; ``n_rows`` the reference rows; ``created`` an
    ISO-8601 UTC time; ``source`` says what the reference was (bundle, data set, split)."""

    features: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    predictions: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    embeddings: dict[str, Any] | None = None
    n_rows: int = 0
    created: str = ""
    source: str = ""

    def to_dict(self, *, embedding_sample: bool = True) -> dict[str, Any]:
        """Return the profile as a JSON-able dict (the embedding sample as nested lists, or left out)."""
        emb = None
        if self.embeddings is not None:
            emb = {k: v for k, v in self.embeddings.items() if k != "sample"}
            if embedding_sample:
                emb["sample"] = np.asarray(self.embeddings["sample"], dtype=np.float32).tolist()
        return {"format_version": FORMAT_VERSION, "n_rows": self.n_rows, "created": self.created,
                "source": self.source, "features": self.features, "predictions": self.predictions,
                "embeddings": emb}

    def to_json(self, *, embedding_sample: bool = True) -> str:
        """Return the profile as JSON text (strict: no NaN)."""
        return json.dumps(self.to_dict(embedding_sample=embedding_sample), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "profile") -> "Profile":
        """Return the profile stored in ``data``; DataError on an unknown format version or shape."""
        if not isinstance(data, Mapping) or "features" not in data:
            raise DataError("not a monitoring profile (no 'features' key)", where=where,
                            fix="build it with lepton_apps.monitor.build_profile")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(f"profile format version {version!r}; this Lepton Apps reads {FORMAT_VERSION}",
                            where=where, fix="rebuild the profile from the reference data with this version")
        emb = data.get("embeddings")
        if emb is not None:
            emb = dict(emb)
            if "sample" in emb:
                emb["sample"] = embedding_matrix(emb["sample"], where=f"{where}: embeddings.sample")
        return cls(features=dict(data["features"]), predictions=dict(data.get("predictions") or {}),
                   embeddings=emb, n_rows=int(data.get("n_rows", 0)), created=str(data.get("created", "")),
                   source=str(data.get("source", "")))

    @classmethod
    def from_json(cls, text: str, *, where: str = "profile") -> "Profile":
        """Return the profile in the JSON ``text``; DataError when it is not valid JSON."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc}", where=where, fix="rebuild the profile") from None
        return cls.from_dict(data, where=where)

    def save(self, folder: str | Path) -> Path:
        """Write ``profile.json`` (and ``embeddings.npy`` with the embedding sample) into ``folder``
        atomically; return the path of profile.json."""
        folder = Path(folder)
        if self.embeddings is not None:
            with atomic_path(folder / EMBEDDINGS_FILE) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(self.embeddings["sample"], dtype=np.float32), allow_pickle=False)
        data = self.to_dict(embedding_sample=False)
        json.dumps(data, allow_nan=False)  # fail before writing anything that is not strict JSON
        return atomic_write_json(folder / PROFILE_FILE, data)

    @classmethod
    def load(cls, folder: str | Path) -> "Profile":
        """Read a profile written by :meth:`save`; DataError naming the missing or damaged file."""
        folder = Path(folder)
        path = folder / PROFILE_FILE
        if not path.is_file():
            raise DataError(f"no {PROFILE_FILE} in {folder}", where=str(folder),
                            fix="build and save a profile first (Profile.save), or point at the folder holding it")
        profile = cls.from_json(path.read_text(encoding="utf-8"), where=str(path))
        if profile.embeddings is not None and "sample" not in profile.embeddings:
            npy = folder / EMBEDDINGS_FILE
            if not npy.is_file():
                raise DataError(f"{PROFILE_FILE} has an embedding profile but {EMBEDDINGS_FILE} is missing",
                                where=str(folder), fix="copy embeddings.npy along with profile.json, or rebuild")
            try:
                sample = np.load(npy, allow_pickle=False)
            except (ValueError, OSError) as exc:
                raise DataError(f"cannot read {EMBEDDINGS_FILE}: {exc}", where=str(npy), fix="rebuild the profile") from None
            profile.embeddings["sample"] = embedding_matrix(sample, where=str(npy))
            if sample.shape[1] != profile.embeddings.get("dim"):
                raise DataError(f"{EMBEDDINGS_FILE} has {sample.shape[1]} dimensions, the profile says "
                                f"{profile.embeddings.get('dim')}", where=str(folder), fix="rebuild the profile")
        return profile


def build_profile(df: pd.DataFrame | None = None, *, scores: Any = None, embeddings: Any = None,
                  numeric: Iterable[str] | None = None, categorical: Iterable[str] | None = None,
                  source: str = "", sample: int = 2000, bins: int = 10, embedding_sample: int = 1000,
                  seed: int = 0, judged: Mapping[str, Any] | None = None, ordered: bool = False) -> Profile:
    """Return the :class:`Profile` of reference rows ``df``, their ``scores`` and ``embeddings`` (any may be
    None); ``n_rows`` is the number of reference rows (of the first input given). ``judged`` maps a feature or
    score name to the mask of the rows it is profiled on, as a monitored window's are compared
    (:class:`~lepton_apps.predictor.MonitorWindow`). ``ordered``: the rows are in time order (finance), and the
    profile also measures how much the reference's own consecutive windows vary (:func:`window_variation`), which
    widens the distance bands of a large window to that level."""
    features = profile_table(df, numeric=numeric, categorical=categorical, sample=sample, bins=bins,
                             seed=seed, judged=judged, ordered=ordered) if df is not None else {}
    predictions = (profile_scores(scores, sample=sample, bins=bins, seed=seed, judged=judged, ordered=ordered)
                   if scores is not None else {})
    emb = profile_embeddings(embeddings, sample=embedding_sample, seed=seed) if embeddings is not None else None
    if df is not None:
        n_rows = len(df)
    elif predictions:
        n_rows = next(iter(predictions.values()))["n"]
    else:
        n_rows = emb["n"] if emb is not None else 0
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return Profile(features=features, predictions=predictions, embeddings=emb, n_rows=int(n_rows),
                   created=created, source=source)
