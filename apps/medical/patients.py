"""Patient ids taken from file names, and a guess at whether file names carry them.

Many image sets name files after the patient (Kermany's chest X-rays: ``person1_bacteria_1.jpeg``,
``IM-0001-0001.jpeg``), so several images of one patient sit side by side. A random split then puts
the same patient in train and validation, validation looks better than it is, and the operating
point chosen on it does not carry over. ``patient_id_pattern`` (a regular expression with a named
group ``patient``, searched in the file name) gives the template the patient id, and the splits
keep each patient's images together.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import PurePath

from lepton_apps.errors import ConfigError

GROUP = "patient"
# The file name without its last number block: person1_bacteria_12.jpeg -> person1_bacteria,
# IM-0001-0002.jpeg -> IM-0001, NORMAL2-IM-0001-0001.jpeg -> NORMAL2-IM-0001.
GENERIC_PATTERN = r"^(?P<patient>.*?\d.*?)[-_ ]\d+\.[A-Za-z0-9]+$"


def compile_pattern(pattern: str, where: str = "patient_id_pattern") -> re.Pattern:
    """Return the compiled ``pattern``; raises ConfigError if it is invalid or lacks the group ``patient``."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression {pattern!r} ({exc})", where=where,
                          fix="write a Python regular expression, e.g. '(?P<patient>person\\d+)'") from None
    if GROUP not in rx.groupindex:
        raise ConfigError(f"the pattern {pattern!r} has no named group 'patient'", where=where,
                          fix="name the part that is the patient id: '(?P<patient>...)', e.g. '(?P<patient>person\\d+)'")
    return rx


def patient_from_name(rx: re.Pattern, path: str) -> str | None:
    """Return the patient id that ``rx`` finds in the file name of ``path``, or None when it does not match."""
    m = rx.search(PurePath(path).name)
    value = m.group(GROUP) if m else None
    return value or None


def suggest_pattern(paths: list[str], min_match: float = 0.9, max_distinct: float = 0.8) -> dict | None:
    """Return ``{"pattern", "matched", "patients", "example"}`` when file names look like they carry patient ids.

    They do when :data:`GENERIC_PATTERN` (the name without its last number block, which must hold a
    digit) matches at least ``min_match`` of the files and the matched files fall into at most
    ``max_distinct`` as many groups as files (so groups hold several images). Else None.
    """
    if len(paths) < 4:
        return None
    rx = re.compile(GENERIC_PATTERN)
    ids = [patient_from_name(rx, p) for p in paths]
    matched = [i for i in ids if i is not None]
    if len(matched) < min_match * len(paths):
        return None
    groups = Counter(matched)
    if len(groups) > max_distinct * len(matched):
        return None
    example = next(p for p, i in zip(paths, ids) if i is not None and groups[i] > 1)
    return {"pattern": GENERIC_PATTERN, "matched": len(matched), "patients": len(groups),
            "example": f"{PurePath(example).name} -> {patient_from_name(rx, example)}"}
