"""Readers and validation for knowledge bases, held-out questions and labelled messages.

A knowledge base is a table with ``id, question, answer`` and optional ``paraphrases`` (a list,
or one string split on ``|``), ``category`` and ``url``, read from CSV, JSON (a list of objects
or ``{"records": [...]}``) or JSONL. Files that are not UTF-8 are decoded when their encoding
can be detected; anything else is a :class:`DataError` saying what, where and how to fix it.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from lepton_apps.errors import DataError

KB_REQUIRED = ("id", "question", "answer")
KB_OPTIONAL = ("paraphrases", "category", "url")
SUFFIXES = (".csv", ".json", ".jsonl")
PREFERRED_SINGLE_BYTE = ("cp1252", "latin_1", "iso8859_15")


def decode_bytes(data: bytes, where: str) -> str:
    """Return ``data`` decoded as text: UTF-8 (with or without BOM), UTF-16 with BOM, or a detected encoding."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        raise DataError("the file looks binary (it holds NUL bytes), not text", where=where,
                        fix="save it as UTF-8 CSV, JSON or JSONL")
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    # short texts fit several single-byte code pages equally well; prefer Windows-1252 / Latin-1 then
    for m in matches:
        if best is not None and m.encoding in PREFERRED_SINGLE_BYTE and m.chaos <= best.chaos + 0.05:
            best = m
            break
    if best is None or best.chaos > 0.3:
        raise DataError("the file is not UTF-8 and its encoding could not be detected", where=where,
                        fix="re-save it as UTF-8 (e.g. 'iconv -f <encoding> -t utf-8')")
    return str(best)


def read_table(source: str | Path | pd.DataFrame | list, *, what: str) -> pd.DataFrame:
    """Return a DataFrame read from a CSV / JSON / JSONL file, a DataFrame or a list of dicts."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if isinstance(source, list):
        return pd.DataFrame(source)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}", fix="check the path")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"unsupported {what} format {suffix or '(no suffix)'!r}", where=str(path),
                        fix=f"use one of: {', '.join(SUFFIXES)}")
    text = decode_bytes(path.read_bytes(), str(path))
    try:
        if suffix == ".csv":
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        if suffix == ".jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"line {n} is not valid JSON ({exc.msg})", where=str(path),
                                        fix="write one JSON object per line") from None
            return pd.DataFrame(rows)
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc.msg} at line {exc.lineno})", where=str(path),
                        fix="correct the JSON syntax") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed CSV ({str(exc).strip()})", where=str(path),
                        fix="check the quoting and the number of fields per line") from None
    if isinstance(obj, dict) and isinstance(obj.get("records"), list):
        obj = obj["records"]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError("JSON must be a list of objects or {\"records\": [...]}", where=str(path),
                        fix="write the rows as a JSON list of objects")
    return pd.DataFrame(obj)


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _paraphrases(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        items = value
    elif hasattr(value, "tolist"):
        items = value.tolist()
    else:
        items = _text(value).split("|")
    return [p for p in (_text(i) for i in items) if p]


def read_kb(source: str | Path | pd.DataFrame | list) -> pd.DataFrame:
    """Return the validated KB with columns id, question, answer, paraphrases (list), category, url.

    Raises DataError on missing columns, empty ids / questions / answers and duplicate ids,
    naming the rows at fault.
    """
    where = str(source) if isinstance(source, (str, Path)) else "knowledge base"
    df = read_table(source, what="knowledge base")
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in KB_REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"the knowledge base lacks the column(s) {', '.join(missing)}", where=where,
                        fix=f"provide columns {', '.join(KB_REQUIRED)} (optional: {', '.join(KB_OPTIONAL)}); "
                            f"found: {', '.join(map(str, df.columns)) or 'none'}")
    if df.empty:
        raise DataError("the knowledge base has no entries", where=where, fix="add at least one FAQ row")
    out = pd.DataFrame({c: df[c].map(_text) for c in KB_REQUIRED})
    for col in ("id", "question", "answer"):
        bad = (out[col] == "").to_numpy().nonzero()[0]
        if len(bad):
            raise DataError(f"{len(bad)} entr{'y has' if len(bad) == 1 else 'ies have'} an empty {col!r} "
                            f"(row(s) {', '.join(str(i + 1) for i in bad[:10])})", where=where,
                            fix=f"fill in every {col} or remove those rows")
    dup = out["id"][out["id"].duplicated()].unique().tolist()
    if dup:
        raise DataError(f"duplicate FAQ id(s): {', '.join(map(str, dup[:10]))}", where=where,
                        fix="give every entry a unique id")
    out["paraphrases"] = (df["paraphrases"].map(_paraphrases) if "paraphrases" in df.columns
                          else [[] for _ in range(len(out))])
    out["category"] = df["category"].map(_text) if "category" in df.columns else ""
    out["url"] = df["url"].map(_text) if "url" in df.columns else ""
    return out.reset_index(drop=True)


def read_questions(source: str | Path | pd.DataFrame | list, kb_ids: set[str] | None = None) -> pd.DataFrame:
    """Return held-out questions with columns question, faq_id ('' = out of scope), split, intent.

    Accepts ``question`` or ``text`` for the question and ``faq_id`` or ``id`` for the answer;
    raises DataError when a faq_id is not in the KB (when ``kb_ids`` is given).
    """
    where = str(source) if isinstance(source, (str, Path)) else "questions"
    df = read_table(source, what="questions")
    df.columns = [str(c).strip().lower() for c in df.columns]
    qcol = next((c for c in ("question", "text") if c in df.columns), None)
    if qcol is None:
        raise DataError("the questions table needs a 'question' (or 'text') column", where=where,
                        fix=f"rename the column; found: {', '.join(map(str, df.columns)) or 'none'}")
    fcol = next((c for c in ("faq_id", "id") if c in df.columns), None)
    out = pd.DataFrame({"question": df[qcol].map(_text)})
    out["faq_id"] = df[fcol].map(_text) if fcol else ""
    out["split"] = df["split"].map(_text) if "split" in df.columns else ""
    out["intent"] = df["intent"].map(_text) if "intent" in df.columns else ""
    if kb_ids is not None:
        unknown = sorted(set(out["faq_id"]) - set(kb_ids) - {""})
        if unknown:
            raise DataError(f"{len(unknown)} faq_id(s) are not in the knowledge base: {', '.join(unknown[:10])}",
                            where=where, fix="use ids from the KB, or leave faq_id empty for out-of-scope questions")
    return out[out["question"] != ""].reset_index(drop=True)


def read_labelled(source: str | Path | pd.DataFrame | list, label_column: str, *, what: str) -> pd.DataFrame:
    """Return a table with columns text, label (and split if present) from ``text,<label_column>`` data."""
    where = str(source) if isinstance(source, (str, Path)) else what
    df = read_table(source, what=what)
    df.columns = [str(c).strip().lower() for c in df.columns]
    label_col = next((c for c in (label_column, "label", "category") if c in df.columns), None)
    if "text" not in df.columns or label_col is None:
        raise DataError(f"{what} needs columns 'text' and '{label_column}'", where=where,
                        fix=f"rename the columns; found: {', '.join(map(str, df.columns)) or 'none'}")
    out = pd.DataFrame({"text": df["text"].map(_text), "label": df[label_col].map(_text)})
    if "split" in df.columns:
        out["split"] = df["split"].map(_text)
    out = out[(out["text"] != "") & (out["label"] != "")].reset_index(drop=True)
    if out["label"].nunique() < 2:
        raise DataError(f"{what} needs at least two different labels, found {out['label'].nunique()}", where=where,
                        fix="add labelled examples of every class")
    return out


def kb_texts(kb: pd.DataFrame) -> tuple[list[str], list[int]]:
    """Return every searchable text (question + paraphrases) and the KB row index each belongs to, grouped by row."""
    texts, owner = [], []
    for i, row in enumerate(kb.itertuples(index=False)):
        for t in dict.fromkeys([row.question, *row.paraphrases]):
            texts.append(t)
            owner.append(i)
    return texts, owner


def read_labelled_pairs(path: str | Path) -> list[tuple[str, str, int]]:
    """Return (question, question, label) pairs from a JSONL or CSV file of labelled question pairs.

    Columns ``question1, question2, label`` (or AFQMC / LCQMC's ``sentence1, sentence2, label``); label 1 =
    same meaning, 0 = different. Raises DataError naming the file, the row and the fix for a bad row."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"labelled pair file {path} does not exist", where="finetune_pairs",
                        fix="give a JSONL or CSV file with question1, question2, label (1 = same meaning)")
    df = (pd.read_json(path, lines=True, dtype=False) if path.suffix.lower() in (".jsonl", ".json")
          else pd.read_csv(path, dtype=str, keep_default_na=False))
    df = df.rename(columns={"sentence1": "question1", "sentence2": "question2"})
    missing = [c for c in ("question1", "question2", "label") if c not in df.columns]
    if missing:
        raise DataError(f"{path} has no column {', '.join(missing)} (columns: {', '.join(map(str, df.columns))})",
                        where=str(path), fix="name the columns question1, question2, label (or sentence1, sentence2, "
                                             "label)")
    pairs = []
    for i, (a, b, y) in enumerate(zip(df["question1"], df["question2"], df["label"])):
        label = str(y).strip()
        if label not in ("0", "1") or not str(a).strip() or not str(b).strip():
            raise DataError(f"row {i + 1} of {path} is not a labelled pair (label {label!r})", where=f"{path}:{i + 1}",
                            fix="give two non-empty questions and a label 0 or 1 on every row")
        pairs.append((str(a), str(b), int(label)))
    if len({p[2] for p in pairs}) < 2:
        raise DataError(f"{path} has only label {pairs[0][2] if pairs else '(no rows)'}", where=str(path),
                        fix="give matching (1) and non-matching (0) pairs: the loss ranks one against the other")
    return pairs
