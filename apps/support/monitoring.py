"""What the support monitor watches (:meth:`SupportAssistant.monitor_window`): per question its length, its
writing system (:func:`script_of`) and intent, the confidence and hand-off of each answer, the question
embeddings."""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lepton_apps.predictor import MonitorWindow


SCRIPTS = ("latin", "cjk", "cyrillic", "arabic", "greek", "hebrew", "devanagari", "thai", "hangul")


def script_of(text: str) -> str:
    """Return the writing system most of ``text``'s letters are in: one of :data:`SCRIPTS`, "other", or
    "none" (no letters) — a cheap, honest stand-in for a language: it tells English from Chinese or Russian,
    not English from French. Read from the Unicode character names (``unicodedata``)."""
    counts: dict[str, int] = {}
    for ch in text:
        if not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        if name.startswith("LATIN"):
            kind = "latin"
        elif name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH KATAKANA")):
            kind = "cjk"
        elif name.startswith("HANGUL"):
            kind = "hangul"
        else:
            first = name.split(" ")[0].lower()
            kind = first if first in SCRIPTS else "other"
        counts[kind] = counts.get(kind, 0) + 1
    return max(counts, key=counts.get) if counts else "none"


def monitor_texts(data: Any) -> list[Any]:
    """Return the messages of ``data``: a list of messages, a table or a questions file (``question`` or
    ``text`` column)."""
    from lepton_apps.errors import DataError

    if isinstance(data, (list, tuple)):
        return list(data)
    if isinstance(data, pd.Series):
        return data.tolist()
    if isinstance(data, (str, Path)):
        from .data import read_table

        data = read_table(data, what="questions")
    if isinstance(data, pd.DataFrame):
        col = "question" if "question" in data.columns else "text" if "text" in data.columns else None
        if col is None:
            raise DataError("the table has no 'question' (or 'text') column", where="monitor_window",
                            fix=f"name the question column 'question'; found: {', '.join(map(str, data.columns))}")
        return data[col].tolist()
    raise DataError(f"cannot read questions from a {type(data).__name__}", where="monitor_window",
                    fix="pass a questions file, a table with a 'question' column or a list of messages")


def question_window(assistant, replies: Sequence[Any], embs: np.ndarray,
                    unreadable: int = 0) -> MonitorWindow:
    """Return the :class:`~lepton_apps.predictor.MonitorWindow` of answered questions (``replies``, the
    :class:`~.predict.Answer` list of a :class:`~.predict.SupportAssistant` ``assistant``, and their embeddings
    ``embs``, in the same order)."""
    questions = [r.question for r in replies]
    features = pd.DataFrame({"length_chars": [len(q) for q in questions],
                             "length_words": [len(q.split()) for q in questions],
                             "script": [script_of(q) for q in questions]})
    if assistant.intent_labels:
        features["intent"] = [r.intent for r in replies]
    scores = {"confidence": np.array([r.confidence for r in replies], dtype=float),
              "handoff": np.array([float(r.handoff) for r in replies], dtype=float)}
    return MonitorWindow(features=features, scores=scores, embeddings=np.asarray(embs, dtype=np.float32),
                         unreadable=int(unreadable))
