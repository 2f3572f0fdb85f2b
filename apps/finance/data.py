"""Reading and validating transaction tables: the data contract of the fraud template.

A table (CSV or Parquet) plus a :class:`Schema` naming its roles: ``id``, ``timestamp``,
``amount``, ``customer``, ``terminal`` and ``label``. Every role is optional except the label
for training; a role left unset is looked up among common column names (``tx_datetime``,
``Amount``, ``Class``…). Every other column is a user feature (numeric or categorical).

:func:`validate` never drops a row silently: it returns a :class:`Validation` with one problem
text per bad row (unparsable timestamp, NaN / inf / negative amount, duplicate id, missing
entity) and raises :class:`DataError` for table-level faults (missing columns, a label that is
not binary).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError

from .config import Schema

ROLES = ("id", "timestamp", "amount", "customer", "terminal", "label")
CANDIDATES = {
    "id": ("transaction_id", "tx_id", "txn_id", "id"),
    "timestamp": ("timestamp", "tx_datetime", "datetime", "time", "Time", "date"),
    "amount": ("amount", "tx_amount", "Amount", "TX_AMOUNT", "total_claim_amount"),
    "customer": ("customer_id", "customer", "card_id", "CUSTOMER_ID", "account_id"),
    "terminal": ("terminal_id", "merchant_id", "terminal", "merchant", "TERMINAL_ID"),
    "label": ("label", "tx_fraud", "is_fraud", "fraud", "Class", "TX_FRAUD", "fraud_reported"),
}
TRUE_WORDS = {"1", "true", "yes", "y", "fraud", "t"}
FALSE_WORDS = {"0", "false", "no", "n", "legit", "legitimate", "f"}
IGNORED_BY_DEFAULT = ("scenario", "tx_fraud_scenario", "TX_FRAUD_SCENARIO", "Unnamed: 0", "")


@dataclasses.dataclass
class Validation:
    """The outcome of :func:`validate`: resolved roles, parsed arrays and per-row problems."""

    roles: dict[str, Optional[str]]
    user_columns: list[str]
    categorical: list[str]
    n_rows: int
    row_errors: pd.Series            # index aligned with the input; None where the row is valid
    seconds: Optional[np.ndarray]    # int64 epoch seconds (NaN-free where valid), or None
    labels: Optional[np.ndarray]     # int 0/1 (or -1 where missing), or None
    notes: list[str]

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of rows without problems."""
        return self.row_errors.isna().to_numpy()

    @property
    def n_invalid(self) -> int:
        """Number of rows with at least one problem."""
        return int((~self.valid).sum())

    def problem_counts(self) -> dict[str, int]:
        """Return ``{problem kind: rows}`` (the text before the first colon of each problem)."""
        kinds = self.row_errors.dropna().str.split("; ").explode().str.split(":").str[0]
        return {str(k): int(v) for k, v in kinds.value_counts().items()}


def read_table(path: str | Path, missing_values: list[str] | None = None, id_column: str | None = None) -> pd.DataFrame:
    """Return the CSV or Parquet table at ``path`` (``?`` and blanks read as missing).

    A CSV ``id_column`` is read as text, so ids such as "00123" survive; it becomes an integer
    column only when every id is a canonical integer.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}", fix="check the path")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() in (".gz", ".bz2", ".zip", ".xz") else path.suffix.lower()
    na = missing_values if missing_values is not None else Schema().missing_values
    try:
        if suffix.startswith(".csv") or suffix == ".txt":
            dtype = {id_column: "string"} if id_column else None
            df = pd.read_csv(path, na_values=na, keep_default_na=True, low_memory=False, dtype=dtype)
            if id_column and id_column in df.columns:
                ids = df[id_column]
                if ids.notna().all() and ids.str.fullmatch(r"-?(0|[1-9][0-9]{0,17})").all():
                    df[id_column] = ids.astype("int64")
            return df
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
            obj = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])]
            return df.replace({c: {v: np.nan for v in na} for c in obj}) if obj else df
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", where=str(path),
                        fix="pass a UTF-8 CSV with a header row, or a Parquet file") from None
    raise DataError(f"unsupported file type {path.suffix!r}", where=str(path), fix="use a .csv or .parquet file")


def resolve_roles(df: pd.DataFrame, schema: Schema, *, need_label: bool) -> dict[str, Optional[str]]:
    """Return ``{role: column or None}``; DataError if a named column is missing or no label is found."""
    roles: dict[str, Optional[str]] = {}
    for role in ROLES:
        given = getattr(schema, role)
        if given == "":
            roles[role] = None
        elif given is not None:
            if given not in df.columns:
                raise DataError(f"the {role} column {given!r} is not in the table", where=f"schema.{role}",
                                fix=f"choose one of: {', '.join(map(str, df.columns[:30]))}")
            roles[role] = given
        else:
            roles[role] = next((c for c in CANDIDATES[role] if c in df.columns), None)
    if need_label and roles["label"] is None:
        raise DataError("no label column found (looked for " + ", ".join(CANDIDATES["label"]) + ")",
                        where="schema.label", fix="name it with --label COLUMN (1 = fraud, 0 = legitimate)")
    used = [c for c in roles.values() if c]
    if len(used) != len(set(used)):
        raise DataError(f"one column plays two roles: {roles}", where="schema", fix="give each role its own column")
    return roles


def parse_labels(values: pd.Series, column: str) -> np.ndarray:
    """Return labels as int8 0/1 with -1 where missing; DataError if the column is not binary."""
    s = values
    if pd.api.types.is_bool_dtype(s):
        return s.astype("float").fillna(-1).astype(np.int8).to_numpy()
    if pd.api.types.is_numeric_dtype(s):
        bad = s.notna() & ~s.isin([0, 1])
        if bad.any():
            examples = sorted(pd.unique(s[bad]).tolist())[:5]
            raise DataError(f"the label column {column!r} is not binary: found values {examples} besides 0 and 1",
                            where=column, fix="use 1 for fraud and 0 for legitimate (or pick another --label column)")
        return s.fillna(-1).astype(np.int8).to_numpy()
    text = s.astype("string").str.strip().str.lower()
    out = np.full(len(s), -1, dtype=np.int8)
    out[text.isin(TRUE_WORDS).fillna(False).to_numpy()] = 1
    out[text.isin(FALSE_WORDS).fillna(False).to_numpy()] = 0
    bad = text.notna().to_numpy() & (out == -1)
    if bad.any():
        examples = sorted(pd.unique(s[bad]).astype(str))[:5]
        raise DataError(f"the label column {column!r} is not binary: found values {examples}", where=column,
                        fix="use 1/0, true/false or yes/no (1 = fraud)")
    return out


def parse_label(value: Any) -> int:
    """Return one transaction's label: 1 (fraud), 0, or -1 when missing or not understood (never raises,
    unlike :func:`parse_labels`)."""
    text = str(value).strip().lower() if value is not None else ""
    return 1 if text in ("1", "1.0", "true", "yes", "fraud") else 0 if text in ("0", "0.0", "false", "no") else -1


def parse_timestamps(values: pd.Series) -> np.ndarray:
    """Return int64 epoch seconds (numbers are taken as seconds) with INT64_MIN where unparsable."""
    nat = np.iinfo(np.int64).min
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        v = values.to_numpy(dtype=float)
        out = np.full(len(v), nat, dtype=np.int64)
        ok = np.isfinite(v)
        out[ok] = np.floor(v[ok]).astype(np.int64)
        return out
    if pd.api.types.is_datetime64_any_dtype(values):
        ns = _utc_ns(values)
    else:
        try:
            ns = _utc_ns(pd.to_datetime(values, errors="coerce"))
        except (ValueError, TypeError):  # e.g. mixed time zones
            ns = np.full(len(values), nat, dtype=np.int64)
        retry = (ns == nat) & values.notna().to_numpy()
        if retry.any():  # rows the inferred format missed: parse them one by one, any format, to UTC
            ns[retry] = _utc_ns(pd.to_datetime(values[retry], errors="coerce", utc=True, format="mixed"))
    return np.where(ns == nat, nat, ns // 1_000_000_000)


def parse_timestamp(raw: Any, column: str) -> int:
    """Return epoch seconds of one timestamp (scalar twin of :func:`parse_timestamps`; DataError when missing or
    unparsable), with fast paths for numbers, datetimes and ISO text."""
    import datetime as dt

    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        raise DataError("missing timestamp", where=column, fix="pass the transaction time")
    if isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, bool):
        if not math.isfinite(float(raw)):
            raise DataError(f"unparsable timestamp: {raw!r}", where=column)
        return int(math.floor(float(raw)))
    if isinstance(raw, pd.Timestamp):
        raw = raw.tz_convert("UTC").tz_localize(None) if raw.tzinfo else raw
        return int(raw.value // 1_000_000_000)
    if isinstance(raw, str):
        try:
            raw = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            pass
    if isinstance(raw, dt.datetime):
        if raw.tzinfo is not None:
            raw = raw.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return (raw - dt.datetime(1970, 1, 1)) // dt.timedelta(seconds=1)
    t = int(parse_timestamps(pd.Series([raw]))[0])
    if t == np.iinfo(np.int64).min:  # parse_timestamps' unparsable marker
        raise DataError(f"unparsable timestamp: {raw!r}", where=column, fix="use ISO format, e.g. 2024-05-01 13:45:00")
    return t


def _utc_ns(parsed: pd.Series) -> np.ndarray:
    """Return datetimes as int64 UTC nanoseconds (naive times are taken as UTC; NaT -> INT64_MIN)."""
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]").to_numpy().astype(np.int64)


def validate(df: pd.DataFrame, schema: Schema | None = None, *, need_label: bool = True) -> Validation:
    """Check ``df`` against the data contract; return a :class:`Validation` with per-row problems.

    Raises DataError for an empty table, a missing named column, no label column (when
    ``need_label``) or a label column that is not binary.
    """
    schema = schema or Schema()
    if len(df.columns) == 0 or len(df) == 0:
        raise DataError("the table is empty", fix="pass a table with a header row and at least one transaction")
    roles = resolve_roles(df, schema, need_label=need_label)
    problems: list[pd.Series] = []
    notes: list[str] = []

    def flag(mask: np.ndarray, what: str, values: pd.Series | None = None) -> None:
        """Record ``what: value`` for the rows in ``mask`` (texts are built for those rows only)."""
        if mask.any():
            s = pd.Series(None, index=df.index, dtype="object")
            shown = values[mask].astype("string").fillna("").to_numpy() if values is not None else "empty"
            s[mask] = np.char.add(f"{what}: ", np.asarray(shown, dtype=str)) if values is not None else f"{what}: empty"
            problems.append(s)

    seconds = None
    if roles["timestamp"]:
        col = df[roles["timestamp"]]
        seconds = parse_timestamps(col)
        bad = seconds == np.iinfo(np.int64).min
        flag(bad & col.notna().to_numpy(), "unparsable timestamp", col)
        flag(bad & col.isna().to_numpy(), "missing timestamp")
    if roles["amount"]:
        col = df[roles["amount"]]
        amt = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
        flag(np.isnan(amt) & col.notna().to_numpy(), "amount is not a number", col)
        flag(col.isna().to_numpy(), "missing amount")
        flag(np.isinf(amt), "amount is infinite", col)
        flag(amt < 0, "negative amount", col)
    for role in ("customer", "terminal"):
        if roles[role]:
            flag(df[roles[role]].isna().to_numpy(), f"missing {role} id")
    if roles["id"]:
        ids = df[roles["id"]]
        dup = ids.duplicated(keep="first").to_numpy() & ids.notna().to_numpy()
        flag(dup, "duplicate id", ids)
        flag(ids.isna().to_numpy(), "missing id")
    labels = None
    if roles["label"]:
        labels = parse_labels(df[roles["label"]], roles["label"])
        if need_label:
            flag(labels == -1, "missing label")
            positives = int((labels == 1).sum())
            if positives == 0 or positives == int((labels >= 0).sum()):
                raise DataError(f"the label column {roles['label']!r} has only one class "
                                f"({positives} fraud rows of {len(df)})", where=roles["label"],
                                fix="training needs both fraud (1) and legitimate (0) examples")

    row_errors = pd.Series(None, index=df.index, dtype="object")
    for p in problems:
        hit = p.notna().to_numpy()
        both = hit & row_errors.notna().to_numpy()
        row_errors[hit & ~both] = p[hit & ~both]
        row_errors[both] = row_errors[both].astype(str) + "; " + p[both].astype(str)
    user = [c for c in df.columns if c not in roles.values() and c not in schema.exclude
            and str(c) not in IGNORED_BY_DEFAULT]
    categorical = schema.categorical if schema.categorical is not None else [
        c for c in user if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    absent = [c for c in categorical if c not in df.columns]
    if absent:
        raise DataError(f"categorical column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} "
                        f"{'are' if len(absent) > 1 else 'is'} not in the table; its columns are: "
                        f"{_column_list(df.columns)}", where="schema.categorical",
                        fix="add the missing column to the data, or leave it out of 'categorical' (--categorical)"
                            + (f"; the user columns that could be categorical are: {', '.join(map(str, user))}"
                               if user else ""))
    if not roles["timestamp"]:
        notes.append("no timestamp column: no time or window features, and a stratified (not time-based) split")
    for role in ("customer", "terminal"):
        if not roles[role]:
            notes.append(f"no {role} column: no per-{role} window features")
    return Validation(roles, user, list(categorical), len(df), row_errors, seconds, labels, notes)


def _column_list(columns, limit: int = 30) -> str:
    """Return the first ``limit`` column names joined by commas (with a count of the rest)."""
    names = [str(c) for c in columns]
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "(none)"


def label_problems(v: Validation) -> list[str]:
    """Return table-level problems of the label column that make training impossible (no fraud rows,
    no legitimate rows, no labelled rows), each with what to do; [] when there is no label column."""
    if v.labels is None:
        return []
    col = v.roles["label"]
    known = int((v.labels >= 0).sum())
    fraud = int((v.labels == 1).sum())
    if known == 0:
        return [f"the label column {col!r} has no labelled rows: give each transaction 1 (fraud) or 0 "
                "(legitimate), or name another column with --label"]
    if fraud == 0:
        return [f"the label column {col!r} has no fraud rows (all {known:,} labelled rows are 0): a fraud model "
                "needs both classes; add labelled fraud cases (1 = fraud), or check that --label names the "
                "fraud flag"]
    if fraud == known:
        return [f"the label column {col!r} has no legitimate rows (all {known:,} labelled rows are 1): a fraud "
                "model needs both classes; add legitimate transactions (0), or check the label's coding "
                "(1 = fraud)"]
    return []


def summary(df: pd.DataFrame, v: Validation) -> dict[str, Any]:
    """Return the data check summary: rows, fraud rate, time span, entities, problems, roles."""
    out: dict[str, Any] = {"rows": v.n_rows, "valid_rows": v.n_rows - v.n_invalid, "invalid_rows": v.n_invalid,
                           "roles": v.roles, "user_columns": v.user_columns, "categorical": v.categorical}
    if v.labels is not None:
        known = v.labels >= 0
        out["fraud_rows"] = int((v.labels == 1).sum())
        out["fraud_rate"] = float((v.labels[known] == 1).mean()) if known.any() else float("nan")
    if v.seconds is not None:
        ok = v.seconds != np.iinfo(np.int64).min
        if ok.any():
            lo, hi = v.seconds[ok].min(), v.seconds[ok].max()
            out["time_span"] = {"start": str(pd.Timestamp(lo, unit="s")), "end": str(pd.Timestamp(hi, unit="s")),
                                "days": round((hi - lo) / 86400, 2)}
    for role in ("customer", "terminal"):
        if v.roles[role]:
            out[f"{role}s"] = int(df[v.roles[role]].nunique())
    out["problems"] = v.problem_counts()
    out["table_problems"] = label_problems(v)
    bad_rows = np.flatnonzero(~v.valid)[:5]
    out["first_problem_rows"] = {int(i): str(v.row_errors.iloc[i]) for i in bad_rows}
    out["notes"] = v.notes
    return out
