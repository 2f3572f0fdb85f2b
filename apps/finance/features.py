"""Leak-free transaction features, one definition for batch and online scoring.

Features (after the Fraud Detection Handbook, chapter 3.4), for a transaction at time t:

* ``amount``; ``is_weekend``; ``is_night`` (hour 0–6, UTC);
* per customer, over the windows (t − w, t] that include the transaction itself:
  ``customer_nb_tx_{w}d`` and ``customer_avg_amount_{w}d``;
* per terminal, over (t − delay − w, t − delay], i.e. only transactions whose label is known
  at t (labels arrive ``delay`` days after the transaction): ``terminal_nb_tx_{w}d`` and
  ``terminal_risk_{w}d`` (share of fraud; 0 when the window is empty);
* the user's own columns: numbers as they are, categories as codes that LightGBM splits on
  natively (unknown and missing categories are missing values).

Amounts are summed as integer cents, so the batch path (sorted cumulative sums and
``searchsorted`` window bounds over the whole table) and the online path (per-entity lists
with ``bisect``) give bit-identical features. Rows are processed in time order; rows with the
same timestamp in input order. An unknown label (scoring data without labels) counts as 0.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError

from .data import Schema, validate

DAY_S = 86_400
NAT = np.iinfo(np.int64).min
HISTORY_MARKER = "\x00history"


@dataclasses.dataclass
class FeatureSpec:
    """What features a bundle computes; stored as ``features.json`` in the bundle."""

    roles: dict[str, Optional[str]]
    windows_days: list[int]
    label_delay_days: float
    numeric: list[str]
    categorical: dict[str, list[str]]  # column -> known categories (as text)

    @property
    def has_time(self) -> bool:
        """Return True when the data has a timestamp (time and window features exist)."""
        return bool(self.roles.get("timestamp"))

    def has(self, role: str) -> bool:
        """Return True when the data has a column for ``role``."""
        return bool(self.roles.get(role))

    @property
    def delay_s(self) -> int:
        """Return the label delay in seconds."""
        return int(round(self.label_delay_days * DAY_S))

    @functools.cached_property
    def names(self) -> list[str]:
        """Model input column names, in order."""
        out = ["amount"] if self.has("amount") else []
        if self.has_time:
            out += ["is_weekend", "is_night"]
            for w in self.windows_days if self.has("customer") else []:
                out.append(f"customer_nb_tx_{w}d")
                if self.has("amount"):
                    out.append(f"customer_avg_amount_{w}d")
            for w in self.windows_days if self.has("terminal") and self.has("label") else []:
                out += [f"terminal_nb_tx_{w}d", f"terminal_risk_{w}d"]
        return out + [f"col:{c}" for c in self.numeric + list(self.categorical)]

    @property
    def categorical_names(self) -> list[str]:
        """Return the model input names of the categorical user columns."""
        return [f"col:{c}" for c in self.categorical]

    def readable(self, name: str) -> str:
        """Return a human label for a feature name."""
        if name.startswith("col:"):
            return name[4:]
        fixed = {"amount": "Amount", "is_weekend": "Weekend", "is_night": "Night (00:00-06:59)"}
        if name in fixed:
            return fixed[name]
        kind, w = name.rsplit("_", 1)
        w = w[:-1]
        d = f"{self.label_delay_days:g}"
        return {
            "customer_nb_tx": f"Customer's transactions in the last {w} d",
            "customer_avg_amount": f"Customer's mean amount over {w} d",
            "terminal_nb_tx": f"Terminal's transactions over {w} d (ending {d} d ago)",
            "terminal_risk": f"Terminal's fraud rate over {w} d (labels ending {d} d ago)",
        }[kind]

    def built_and_missing(self) -> tuple[list[str], list[str]]:
        """Return (feature groups built, groups that could not be built and why)."""
        built, missing = [], []
        (built if self.has("amount") else missing).append("amount" + ("" if self.has("amount") else " (no amount column)"))
        if self.has_time:
            built.append("time of day / weekend")
        else:
            missing.append("time and window features (no timestamp column)")
        for role, what in (("customer", "per-customer count / mean amount windows"),
                           ("terminal", "per-terminal count / fraud-risk windows")):
            if self.has_time and self.has(role) and (role != "terminal" or self.has("label")):
                built.append(what)
            elif self.has_time:
                missing.append(f"{what} (no {role} column)")
        if self.numeric or self.categorical:
            built.append(f"{len(self.numeric)} numeric and {len(self.categorical)} categorical user columns")
        return built, missing

    def to_json(self) -> dict[str, Any]:
        """Return the spec as a JSON-able dict (``features.json``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureSpec:
        """Return the spec stored by :meth:`to_json`."""
        return cls(**d)


# --------------------------------------------------------------------------- the columns a table needs

def required_columns(spec: FeatureSpec) -> dict[str, str]:
    """Return ``{column: what it is}`` for every column a table needs to be scored with ``spec``:
    the timestamp, amount, customer and terminal columns the features use, then the user columns.
    The id and label columns are optional when scoring."""
    out = {spec.roles[r]: f"{r} column" for r in ("timestamp", "amount", "customer", "terminal") if spec.roles.get(r)}
    out.update({c: "numeric column" for c in spec.numeric})
    out.update({c: "categorical column" for c in spec.categorical})
    return out


def missing_columns(spec: FeatureSpec, columns) -> dict[str, str]:
    """Return ``{column: what it is}`` for the columns of :func:`required_columns` not in ``columns``."""
    have = set(map(str, columns))
    return {c: what for c, what in required_columns(spec).items() if str(c) not in have}


def missing_columns_message(missing: dict[str, str]) -> str:
    """Return one sentence naming the missing columns, e.g. "the model needs the customer column
    'customer_id', which is not in the data"."""
    parts = [f"the {what} {col!r}" for col, what in missing.items()]
    verb = "which is" if len(parts) == 1 else "which are"
    return f"the model needs {', '.join(parts)}, {verb} not in the data"


def validate_scoring_table(spec: FeatureSpec, df: pd.DataFrame):
    """Return the :class:`~lepton_apps.finance.data.Validation` of a table to score with ``spec`` (DataError when a
    column of :func:`required_columns` is missing)."""
    roles = spec.roles
    missing = missing_columns(spec, df.columns)
    if missing:
        raise DataError(missing_columns_message(missing), where=f"columns: {', '.join(map(str, df.columns[:20]))}",
                        fix="add the columns (or rename yours to these names), or score with a model trained "
                            "on data without them")
    schema = Schema(**{r: (c if c and c in df.columns else "") for r, c in roles.items()},
                    categorical=list(spec.categorical))
    return validate(df, schema, need_label=False)


# --------------------------------------------------------------------------- shared scalars

def to_cents(amount: np.ndarray) -> np.ndarray:
    """Return amounts as int64 cents (round half to even, like Python's round)."""
    return np.rint(np.asarray(amount, dtype=float) * 100).astype(np.int64)


def entity_keys(values: pd.Series) -> np.ndarray:
    """Return entity ids as keys: int64 for integer ids (fast), else text (integral floats lose '.0').

    The online state keeps text keys (:func:`entity_key`); :func:`align_keys` reconciles the two.
    """
    if pd.api.types.is_integer_dtype(values) and not values.isna().any():
        return values.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(dtype=float)
        if np.all(np.isfinite(v) & (v == np.floor(v))):
            return v.astype(np.int64)
        if np.all(np.isnan(v) | (v == np.floor(v))):
            return np.where(np.isnan(v), "", pd.Series(v).fillna(0).astype(np.int64).astype(str).to_numpy()).astype(object)
    return values.astype("string").fillna("").to_numpy().astype(object)


def align_keys(history: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return history and new keys of one comparable dtype (int64 when both are integers, else text)."""
    if new.dtype == np.int64:
        as_int = pd.to_numeric(pd.Series(history, dtype="object"), errors="coerce")
        if not as_int.isna().any() or len(history) == 0:
            return as_int.to_numpy(dtype=np.int64) if len(history) else history.astype(np.int64), new
        sentinel = np.iinfo(np.int64).min  # rows of the other entity kind in the history carry a marker
        marker = pd.Series(history, dtype="object") == HISTORY_MARKER
        if not (as_int.isna() & ~marker).any():
            return as_int.fillna(sentinel).to_numpy(dtype=np.int64), new
        return history, new.astype(str).astype(object)
    return history.astype(object), new


def entity_set(keys: np.ndarray | None) -> set[str] | None:
    """Return the distinct entity ids of a stream column as state keys (None when the column is absent)."""
    if keys is None:
        return None
    return {entity_key(k) for k in pd.unique(keys)}


def entity_key(value: Any) -> str:
    """Scalar twin of :func:`entity_keys`."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "" if value is None else str(value)


def time_flags(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (is_weekend, is_night) as float arrays for epoch seconds ``t``."""
    dow = (t // DAY_S + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    hour = (t % DAY_S) // 3600
    return (dow >= 5).astype(float), (hour <= 6).astype(float)


# --------------------------------------------------------------------------- batch

@dataclasses.dataclass
class Stream:
    """The columns features are computed from, for the valid rows of a table."""

    t: Optional[np.ndarray]          # int64 epoch seconds
    cents: Optional[np.ndarray]      # int64
    customer: Optional[np.ndarray]   # keys (any hashable dtype)
    terminal: Optional[np.ndarray]
    label: Optional[np.ndarray]      # int 0/1 (-1 unknown, counted as 0)
    tx_id: Optional[np.ndarray] = None

    def __len__(self) -> int:
        for a in (self.t, self.cents, self.customer, self.terminal, self.label):
            if a is not None:
                return len(a)
        return 0


def _grouped_positions(codes: np.ndarray, time_order: np.ndarray | None) -> np.ndarray:
    """Return the row order sorted by entity code, then by time.

    ``time_order`` is the stable time sort of the rows (None when they are already in time
    order). Stable sorts by code of the time-ordered rows give the (code, time) order; codes are
    sorted 16 bits at a time, because NumPy's stable sort of 16-bit integers is a radix sort
    (about 7x faster at 1M rows than sorting int64 keys).
    """
    keys = codes if time_order is None else codes[time_order]
    if len(keys) and keys.min() < 0:  # a missing-value code (-1) sorts first
        keys = keys.astype(np.int64) - keys.min()
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    high = keys[order] >> 16
    top = int(high.max()) if len(high) else 0
    if top > 0:  # more than 65,536 entities: a second, stable pass on the high bits
        order = order[np.argsort(high.astype(np.uint16) if top <= 0xFFFF else high, kind="stable")]
    return order if time_order is None else time_order[order]


#: above this many rows the customer and terminal windows are computed in two threads (NumPy's
#: sorts, searches and cumulative sums release the GIL); below it thread start-up costs more.
PARALLEL_ROWS = 200_000


class _Columns:
    """Writes features straight into the columns of the feature matrix (no per-feature array to
    allocate and copy again), leaving out the first ``skip`` rows of the stream (prepended history)."""

    def __init__(self, matrix: np.ndarray, names: list[str], skip: int = 0):
        self.matrix, self.skip = matrix, skip
        self.where = {name: j for j, name in enumerate(names)}

    def set(self, name: str, values: np.ndarray) -> None:
        """Put a feature given for every stream row, in row order."""
        self.matrix[:, self.where[name]] = values[self.skip:]

    def put_rows(self, names: list[str], rows: np.ndarray, block: np.ndarray) -> None:
        """Put features ``names`` (the columns of ``block``) for stream rows ``rows``."""
        if self.skip:
            keep = rows >= self.skip
            rows, block = rows[keep] - self.skip, block[keep]
        first = self.where[names[0]]
        if [self.where[name] for name in names] == list(range(first, first + len(names))):
            # adjacent matrix columns: move each row's values as one record (one random write per row
            # instead of one per feature)
            record = f"V{8 * len(names)}"
            self.matrix[:, first:first + len(names)].view(record)[:, 0][rows] = \
                np.ascontiguousarray(block).view(record)[:, 0]
        else:
            for j, name in enumerate(names):
                self.matrix[rows, self.where[name]] = block[:, j]


#: the window features are computed this many (entity, time)-sorted rows at a time: the working
#: arrays stay in cache and are reused, instead of a fresh full-length array per step
CHUNK_ROWS = 32_768


def _window_features(s: Stream, spec: FeatureSpec, cols: _Columns) -> None:
    """Put the time and window features of every row of ``s`` (vectorised over the whole stream)."""
    n = len(s)
    if not spec.has_time:
        return
    t = s.t
    # rows already in time order (the usual case) need no time sort
    time_order = None if n == 0 or bool(np.all(t[1:] >= t[:-1])) else np.argsort(t, kind="stable")
    tmin = int(t.min()) if n else 0
    span = (int(t.max()) - tmin if n else 0) + int(max(spec.windows_days) * DAY_S) + spec.delay_s + 1

    def flags() -> None:
        weekend, night = time_flags(t)
        cols.set("is_weekend", weekend)
        cols.set("is_night", night)

    parts = []  # the costliest first, so that two threads finish at about the same time
    if spec.has("terminal") and spec.has("label"):
        parts.append(lambda: _terminal_windows(s, spec, time_order, tmin, span, cols))
    if spec.has("customer"):
        parts.append(lambda: _customer_windows(s, spec, time_order, tmin, span, cols))
    parts.append(flags)
    if len(parts) == 3 and n >= PARALLEL_ROWS:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda part: part(), parts))
    else:
        for part in parts:
            part()


def _entity_keyed(keys: np.ndarray, t: np.ndarray, time_order: np.ndarray | None, tmin: int, span: int):
    """Return (row order by entity then time, the sorted key ``code * span + t - tmin``)."""
    codes = pd.factorize(keys)[0].astype(np.int64, copy=False)
    order = _grouped_positions(codes, time_order)
    keyed = codes[order]
    keyed *= span
    keyed += t[order]
    keyed -= tmin
    return order, keyed


def _customer_windows(s: Stream, spec: FeatureSpec, time_order: np.ndarray | None, tmin: int, span: int,
                      cols: _Columns) -> None:
    """Per-customer count and mean amount over each window, up to and including the row itself."""
    n = len(s)
    order, keyed = _entity_keyed(s.customer, s.t, time_order, tmin, span)
    cs = None
    if s.cents is not None:  # cs[i] = the sum of the first i sorted amounts
        cs = np.empty(n + 1, dtype=np.int64)
        cs[0] = 0
        np.cumsum(s.cents[order], out=cs[1:])
    names = [name for w in spec.windows_days
             for name in [f"customer_nb_tx_{w}d"] + ([f"customer_avg_amount_{w}d"] if cs is not None else [])]
    for a in range(0, n, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, n)
        block = np.empty((b - a, len(names)), dtype=float)
        end = np.arange(a + 1, b + 1)  # one past each sorted row
        j = 0
        for w in spec.windows_days:
            left = np.searchsorted(keyed, keyed[a:b] - w * DAY_S, side="right")
            count = end - left
            block[:, j] = count
            if cs is not None:
                block[:, j + 1] = (cs[a + 1:b + 1] - cs[left]) / count / 100
            j += 2 if cs is not None else 1
        cols.put_rows(names, order[a:b], block)


def _terminal_windows(s: Stream, spec: FeatureSpec, time_order: np.ndarray | None, tmin: int, span: int,
                      cols: _Columns) -> None:
    """Per-terminal count and fraud rate over each window, counting only labels known delay_s before t."""
    n = len(s)
    order, keyed = _entity_keyed(s.terminal, s.t, time_order, tmin, span)
    fraud = np.empty(n + 1, dtype=np.int64)  # fraud[i] = frauds among the first i sorted rows
    fraud[0] = 0
    np.cumsum(s.label[order] == 1, out=fraud[1:])
    names = [name for w in spec.windows_days for name in (f"terminal_nb_tx_{w}d", f"terminal_risk_{w}d")]
    for a in range(0, n, CHUNK_ROWS):
        b = min(a + CHUNK_ROWS, n)
        block = np.empty((b - a, len(names)), dtype=float)
        known = keyed[a:b] - spec.delay_s  # labels of rows up to this key are known
        hi = np.searchsorted(keyed, known, side="right")
        fraud_hi = fraud[hi]
        for j, w in enumerate(spec.windows_days):
            lo = np.searchsorted(keyed, known - w * DAY_S, side="right")
            count = hi - lo
            block[:, 2 * j] = count
            block[:, 2 * j + 1] = np.divide(fraud_hi - fraud[lo], count, out=np.zeros(b - a), where=count > 0)
        cols.put_rows(names, order[a:b], block)


def encode_user_columns(df: pd.DataFrame, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Return the user's numeric columns as floats and categorical ones as codes (NaN = missing/unknown)."""
    out = {}
    for c in spec.numeric:
        if c not in df.columns:
            raise DataError(f"the model needs column {c!r}, which is not in the data", where=c,
                            fix="score data with the same columns as the training data")
        out[f"col:{c}"] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
    for c, cats in spec.categorical.items():
        if c not in df.columns:
            raise DataError(f"the model needs column {c!r}, which is not in the data", where=c,
                            fix="score data with the same columns as the training data")
        text = df[c].astype("string")
        codes = pd.Categorical(text, categories=cats).codes.astype(float)
        codes[codes < 0] = np.nan
        out[f"col:{c}"] = codes
    return out


def make_stream(frame: pd.DataFrame, roles: dict, seconds: np.ndarray | None, labels: np.ndarray | None,
                with_ids: bool = True) -> Stream:
    """Return the feature :class:`Stream` of validated rows (``with_ids``: keep the transaction ids,
    which only the saved online state needs)."""
    amount = roles.get("amount")
    return Stream(
        t=seconds,
        cents=to_cents(pd.to_numeric(frame[amount]).to_numpy(dtype=float)) if amount else None,
        customer=entity_keys(frame[roles["customer"]]) if roles.get("customer") else None,
        terminal=entity_keys(frame[roles["terminal"]]) if roles.get("terminal") else None,
        label=labels.astype(np.int8) if labels is not None else None,
        tx_id=frame[roles["id"]].astype("string").to_numpy() if roles.get("id") and with_ids else None)


def feature_matrix(stream: Stream, user: dict[str, np.ndarray], spec: FeatureSpec, skip: int = 0) -> np.ndarray:
    """Return the (rows, features) float matrix in ``spec.names`` order, leaving out the first
    ``skip`` rows of ``stream`` (prepended history; ``user`` columns hold only the other rows).

    Features are written straight into the matrix's columns: at 1M rows this saves allocating
    and copying 120 MB of per-feature arrays (on a VM, fresh pages are the costly part).
    """
    n = len(stream) - skip if len(stream) else (len(next(iter(user.values()))) if user else 0)
    mat = np.empty((n, len(spec.names)), dtype=float)
    cols = _Columns(mat, spec.names, skip)
    _window_features(stream, spec, cols)
    if spec.has("amount"):
        np.divide(stream.cents[skip:], 100, out=mat[:, cols.where["amount"]])
    for name, values in user.items():
        mat[:, cols.where[name]] = values
    return mat


def history_stream(f: pd.DataFrame) -> Stream:
    """Return a saved state table (:meth:`OnlineState.to_frame`) as a :class:`Stream` of past transactions.

    Customer and terminal histories are separate rows here: a customer row carries no terminal
    (a marker key) and a terminal row no customer, which gives each window the same counts.
    """
    cust = f["kind"].to_numpy() == "customer"
    keys = f["key"].to_numpy().astype(object)
    marker = np.array([HISTORY_MARKER] * len(f), dtype=object)
    return Stream(
        t=f["t"].to_numpy(), cents=np.where(cust, f["value"].to_numpy(), 0),
        customer=np.where(cust, keys, marker), terminal=np.where(~cust, keys, marker),
        label=np.where(cust, 0, f["value"].to_numpy()), tx_id=f["tx_id"].to_numpy())


def concat_streams(a: Stream, b: Stream) -> Stream:
    """Return history ``a`` followed by ``b`` (fields that are None in ``b`` stay None)."""
    def cat(x, y):
        return None if y is None else np.concatenate([x, y]) if x is not None else y

    def keys(x, y):
        if y is None:
            return None
        x, y = align_keys(x, y)
        return np.concatenate([x, y])
    return Stream(cat(a.t, b.t), cat(a.cents, b.cents), keys(a.customer, b.customer), keys(a.terminal, b.terminal),
                  cat(a.label, b.label), None)
