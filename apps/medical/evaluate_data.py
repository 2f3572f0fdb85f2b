"""Evaluate a stored bundle on labelled data (``lepton-apps medical evaluate``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lepton_apps.errors import DataError

from .data import load_pixels, open_data
from .evaluate import build_report, save_plots


def evaluate_bundle(bundle: str | os.PathLike, data: str | os.PathLike, *, split: str | None = None,
                    out: str | os.PathLike | None = None, home=None, n_boot: int = 1000) -> dict[str, Any]:
    """Return the evaluation report of ``bundle`` on ``data`` (see :func:`evaluate_classifier`)."""
    from .predict import MedicalClassifier

    return evaluate_classifier(MedicalClassifier.load(bundle, home=home), data, split=split, out=out, n_boot=n_boot)


def model_pixels(clf, md, where: str, verb: str):
    """Return ``load_pixels`` of labelled data ``md`` as the classifier ``clf`` sees it (its size and channels, its
    class order); DataError naming ``where`` when a label is not one of the model's classes (what ``verb`` needs)."""
    unknown = sorted({n for lab in md.table["label"] for n in str(lab).split("|") if n} - set(clf.label_names))
    if unknown:
        raise DataError(f"labels {unknown[:5]} are not classes of the model {clf.label_names}", where=where,
                        fix=f"{verb} on data with the model's classes")
    md.label_names = clf.label_names
    return load_pixels(md, clf.image_size, clf.channels)


def evaluate_classifier(clf, data: str | os.PathLike, *, split: str | None = None,
                        out: str | os.PathLike | None = None, n_boot: int = 1000) -> dict[str, Any]:
    """Return the evaluation report of a loaded classifier on ``data`` (optionally one split); write it
    (``report.json``) and the plots to ``out``.

    The bundle's temperature and operating point are used as stored (fitted on its validation
    data), so the numbers say how the deployed model behaves. Unreadable images are refused.
    """
    from lepton_apps.io import atomic_write_json

    from .predict import predict_logits

    md = open_data(data)
    if split:
        keep = (md.table["split"] == split).to_numpy()
        md.table = md.table[keep].reset_index(drop=True)
        if md.arrays is not None:
            md.arrays = md.arrays[keep]
        if md.table.empty:
            raise DataError(f"no rows in split {split!r}", where=str(data), fix="use train, val or test")
    pixels, errors = model_pixels(clf, md, str(data), "evaluate")
    if errors:
        raise DataError(f"{len(errors)} images cannot be read: {list(errors.values())[0]}", where=str(data),
                        fix="run 'lepton-apps medical check' and remove or repair them")
    y = md.targets()
    logits = predict_logits(clf.model, pixels, clf.policy)
    calibration = clf.calibration
    report = build_report(logits, y, clf.task, clf.label_names, calibration, split=split or "all", n_boot=n_boot)
    report["model_version"] = clf.model_version
    if out:
        out = Path(out)
        save_plots(logits, y, clf.task, clf.label_names, calibration, out)
        atomic_write_json(out / "report.json", report)
    return report


def summary(r: dict) -> str:
    """Return one line with the headline numbers of a report (AUC with its CI, the operating point, ECE)."""
    ci = r.get("roc_auc_ci") or [float("nan")] * 2
    text = f"{r['split']} (n={r['n']}): AUC {r['roc_auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    if r["task"] == "binary":
        text += (f", accuracy {r['accuracy']:.3f}, sensitivity {r['sensitivity']:.3f}, "
                 f"specificity {r['specificity']:.3f} at threshold {r['threshold']:.3f} ({r['operating_point']})")
    else:
        text += f", accuracy {r['accuracy']:.3f}"
    return text + f"; ECE {r['ece_before']:.3f} -> {r['ece_after']:.3f} after temperature scaling"
