"""``check_data(DATA)``: what a careful person would look at before training on an image set.

Counts per class and split, unreadable files with the reason, exact duplicates (sha256 of the
file bytes, or of the pixels for .npz) and whether any cross splits, patients whose images sit
in more than one split, and image size / mode statistics. No patient identifier is reported:
patients are counted, not named. A set with a single class is a problem (nothing to classify), and
file names that look like they carry patient ids while none are known get a warning with a
``patient_id_pattern`` to use (several images of one patient must not cross splits).
"""
from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lepton_apps.errors import DataError

from .data import open_data
from .imageio import read_image
from .patients import suggest_pattern


def _inspect(item: str) -> dict[str, Any]:
    path = Path(item)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"error": f"cannot open the file ({exc.strerror or exc})"}
    digest = hashlib.sha256(data).hexdigest()
    try:
        img = read_image(data, name=path.name)
    except DataError as exc:
        return {"error": exc.what, "sha256": digest}
    mode = "rgb" if img.ndim == 3 else "gray"
    kind = "dicom" if data[128:132] == b"DICM" else path.suffix.lower().lstrip(".")
    return {"sha256": digest, "height": img.shape[0], "width": img.shape[1], "mode": mode, "format": kind}


def check_data(data: str, max_listed: int = 50, patient_id_pattern: str | None = None) -> dict[str, Any]:
    """Return the data-check report of ``data`` (folder, manifest or .npz) as a JSON-ready dict.

    Keys: source, kind, task, label_names, counts {split: {class: n}}, n_images, unreadable
    [{item, reason}], duplicate_groups, duplicates_across_splits, patients, patients_across_splits,
    patient_ids (where they came from), suggested_patient_pattern, sizes {height/width: min,
    median, max}, modes, formats, problems (blocking ones first: single class, empty folders),
    warnings.
    """
    md = open_data(data, patient_id_pattern)
    table = md.table
    split = table["split"].fillna("(unsplit)").to_numpy()
    infos: list[dict[str, Any]]
    if md.arrays is not None:
        infos = [{"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "height": a.shape[0], "width": a.shape[1],
                  "mode": "rgb" if a.ndim == 3 else "gray", "format": "npz"} for a in md.arrays]
    else:
        with ThreadPoolExecutor(max_workers=4) as pool:
            infos = list(pool.map(_inspect, table["item"]))
    counts: dict[str, Counter] = defaultdict(Counter)
    for s, label in zip(split, table["label"]):
        for name in (label.split("|") if md.task == "multilabel" else [label]):
            counts[s][name or "(no finding)"] += 1
    unreadable = [{"item": _short(it, md.source), "reason": inf["error"]}
                  for it, inf in zip(table["item"], infos) if "error" in inf]
    by_hash: dict[str, list[int]] = defaultdict(list)
    for i, inf in enumerate(infos):
        if "sha256" in inf:
            by_hash[inf["sha256"]].append(i)
    groups = [rows for rows in by_hash.values() if len(rows) > 1]
    across = [rows for rows in groups if len(set(split[rows])) > 1]
    report: dict[str, Any] = {
        "source": md.source, "kind": md.kind, "task": md.task, "label_names": md.label_names,
        "n_images": int(len(table)), "counts": {s: dict(c) for s, c in sorted(counts.items())},
        "unreadable": unreadable[:max_listed], "n_unreadable": len(unreadable),
        "duplicate_groups": len(groups), "duplicate_images": int(sum(len(g) - 1 for g in groups)),
        "duplicates_across_splits": len(across),
        "duplicate_examples": [[_short(table["item"].iat[i], md.source) + f" [{split[i]}]" for i in g]
                               for g in (across or groups)[:5]],
        "problems": list(md.problems), "warnings": [],
        "patient_ids": md.patient_source, "suggested_patient_pattern": None,
    }
    if len(md.label_names) < 2:
        report["problems"].insert(0, f"only one class ({', '.join(md.label_names) or 'none'}) was found: a "
                                     "classifier needs at least two (add the other class's images)")
    if not md.has_patients and md.kind != "npz":
        hint = suggest_pattern(table["item"].tolist())
        if hint:
            report["suggested_patient_pattern"] = hint["pattern"]
            report["warnings"].append(
                f"file names look like they carry patient ids ({hint['matched']} of {len(table)} names fall into "
                f"{hint['patients']} groups, e.g. {hint['example']}) but no patient id is set, so images of one "
                f"patient can land in train and validation; set patient_id_pattern (e.g. "
                f"--patient-id-pattern '{hint['pattern']}', or a pattern for your naming such as "
                f"'(?P<patient>person\\d+)') or add a patient_id column to a manifest")
    if md.has_patients:
        pid = table["patient_id"].to_numpy(dtype=object)
        per_patient: dict[Any, set] = defaultdict(set)
        for p, s in zip(pid, split):
            if p is not None and p == p:
                per_patient[p].add(s)
        leaking = [p for p, ss in per_patient.items() if len(ss - {"(unsplit)"}) > 1]
        report["patients"] = len(per_patient)
        report["patients_across_splits"] = len(leaking)
    ok = [inf for inf in infos if "height" in inf]
    if ok:
        h = np.array([inf["height"] for inf in ok])
        w = np.array([inf["width"] for inf in ok])
        report["sizes"] = {"height": [int(h.min()), float(np.median(h)), int(h.max())],
                           "width": [int(w.min()), float(np.median(w)), int(w.max())]}
        report["modes"] = dict(Counter(inf["mode"] for inf in ok))
        report["formats"] = dict(Counter(inf["format"] for inf in ok))
    return report


def _short(item: str, source: str) -> str:
    try:
        base = Path(source) if Path(source).is_dir() else Path(source).parent
        return str(Path(item).relative_to(base))
    except ValueError:
        return str(item)


def format_report(r: dict[str, Any]) -> str:
    """Return the data-check report as readable text (what the CLI prints)."""
    lines = [f"Data check: {r['source']} ({r['kind']}, {r['task']}, {r['n_images']} images)",
             "Counts per split and class:"]
    for s, c in r["counts"].items():
        lines.append(f"  {s:<10} " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
    if "sizes" in r:
        sz = r["sizes"]
        lines.append(f"Image size: height min/median/max {sz['height'][0]}/{sz['height'][1]:g}/{sz['height'][2]}, "
                     f"width {sz['width'][0]}/{sz['width'][1]:g}/{sz['width'][2]}; modes {r['modes']}; "
                     f"formats {r['formats']}")
    lines.append(f"Unreadable files: {r['n_unreadable']}")
    lines += [f"  {u['item']}: {u['reason']}" for u in r["unreadable"]]
    lines.append(f"Exact duplicates: {r['duplicate_images']} extra copies in {r['duplicate_groups']} group(s); "
                 f"{r['duplicates_across_splits']} group(s) cross splits")
    lines += ["  " + " = ".join(g) for g in r["duplicate_examples"]]
    if "patients" in r:
        lines.append(f"Patients: {r['patients']}; in more than one split: {r['patients_across_splits']}")
    if r.get("patient_ids"):
        lines.append(f"Patient ids from: {r['patient_ids']}")
    lines += [f"Problem: {p}" for p in r["problems"]]
    lines += [f"Warning: {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)


def has_blocking_issues(r: dict[str, Any]) -> bool:
    """True when training would fail or leak: unreadable files, cross-split duplicates or patients, empty
    folders, a single class."""
    return bool(r["n_unreadable"] or r["duplicates_across_splits"] or r.get("patients_across_splits")
                or any("holds no" in p or "only one class" in p for p in r["problems"]))
