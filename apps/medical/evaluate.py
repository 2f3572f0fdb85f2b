"""The evaluation report: AUCs with bootstrap CIs, operating point, confusion, calibration, plots.

:func:`calibrate` fits the temperature and the operating point on validation logits;
:func:`build_report` applies them to the evaluation set (test, else validation) and returns a
JSON-ready dict; :func:`save_plots` writes the ROC, reliability and confusion PNGs.
``lepton-apps medical evaluate BUNDLE DATA`` runs the same on new data with the bundle's
stored temperature and threshold.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from lepton_apps import metrics as M
from lepton_apps import plots as P
from lepton_apps.errors import DataError


def probabilities(logits: np.ndarray, task: str, temperature: float = 1.0) -> np.ndarray:
    """Return class probabilities (n, k): softmax for binary / multi-class, sigmoid per label for multi-label."""
    return M.apply_temperature(np.asarray(logits, dtype=np.float64), temperature, multilabel=task == "multilabel")


def positive_scores(probs: np.ndarray, task: str) -> np.ndarray:
    """Binary: P(positive class) (n,); otherwise the probabilities unchanged."""
    return probs[:, 1] if task == "binary" else probs


def calibrate(val_logits: np.ndarray, val_y: np.ndarray, task: str, operating_point: str = "youden",
              target_sensitivity: float = 0.95) -> dict[str, Any]:
    """Return ``{temperature, thresholds, operating_point, validation: {…}}`` fitted on validation data.

    Binary: one threshold on P(positive); multi-label: one per label; multi-class: argmax (no threshold).
    The temperature minimises the validation NLL (Guo et al. 2017).
    """
    multilabel = task == "multilabel"
    T = M.fit_temperature(val_logits, val_y, multilabel=multilabel) if len(val_y) else 1.0
    probs = probabilities(val_logits, task, T)
    thresholds: list[float] = []
    columns = [(probs[:, 1], val_y)] if task == "binary" else (
        [(probs[:, j], val_y[:, j]) for j in range(probs.shape[1])] if multilabel else [])
    for score, y in columns:
        if 0 < y.sum() < len(y):
            if operating_point == "sensitivity":
                thresholds.append(M.threshold_for_sensitivity(y, score, target_sensitivity))
            else:
                thresholds.append(M.threshold_youden(y, score))
        else:
            thresholds.append(0.5)
    out: dict[str, Any] = {"temperature": T, "thresholds": thresholds, "operating_point": operating_point,
                           "target_sensitivity": target_sensitivity if operating_point == "sensitivity" else None}
    if task == "binary" and len(val_y):
        out["validation"] = M.json_ready(M.threshold_metrics(val_y, probs[:, 1], thresholds[0]))
    return out


def build_report(logits: np.ndarray, y: np.ndarray, task: str, label_names: list[str], calibration: dict,
                 *, split: str, logits_before: bool = True, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Return the evaluation report of ``logits`` against labels ``y`` using the fitted ``calibration``.

    Keys: split, n, task, per_class_auc {name: [auc, low, high]}, macro_auc, macro_auc_ci, accuracy,
    sensitivity / specificity (binary, at the operating point), per_label operating points
    (multi-label), confusion, ece_before, ece_after, temperature, plus the binary_report keys.
    """
    T = calibration["temperature"]
    raw = probabilities(logits, task, 1.0)
    probs = probabilities(logits, task, T)
    report: dict[str, Any] = {"split": split, "n": int(len(y)), "task": task, "label_names": label_names,
                              "temperature": T, "operating_point": calibration["operating_point"]}
    if task == "binary":
        thr = calibration["thresholds"][0]
        br = M.binary_report(y, probs[:, 1], thr, n_boot=n_boot, seed=seed)
        report.update(br)
        report["per_class_auc"] = {label_names[1]: [br["roc_auc"], *br["roc_auc_ci"]]}
        report["macro_auc"], report["macro_auc_ci"] = br["roc_auc"], br["roc_auc_ci"]
        report["accuracy_argmax"] = float((probs.argmax(1) == y).mean())
        pred = (probs[:, 1] >= thr).astype(int)
        report["confusion"] = M.confusion(y, pred, labels=[0, 1]).tolist()
        report["ece_before"] = M.expected_calibration_error(y, raw[:, 1])
        report["ece_after"] = M.expected_calibration_error(y, probs[:, 1])
    elif task == "multiclass":
        per = {}
        for j, name in enumerate(label_names):
            col = (y == j).astype(int)
            per[name] = _auc_ci(col, probs[:, j], n_boot, seed) if 0 < col.sum() < len(col) else [None, None, None]
        report["per_class_auc"] = per
        macro = M.bootstrap_ci(lambda yy, pp: M.macro_auc(yy, pp), y, probs, n_boot=n_boot, seed=seed, stratify=y)
        report["macro_auc"], report["macro_auc_ci"] = macro[0], [macro[1], macro[2]]
        report["roc_auc"], report["roc_auc_ci"] = report["macro_auc"], report["macro_auc_ci"]
        report["accuracy"] = float((probs.argmax(1) == y).mean())
        report["confusion"] = M.confusion(y, probs.argmax(1), labels=list(range(len(label_names)))).tolist()
        report["ece_before"] = M.expected_calibration_error(y, raw)
        report["ece_after"] = M.expected_calibration_error(y, probs)
    else:
        per, ops = {}, {}
        for j, name in enumerate(label_names):
            col = y[:, j].astype(int)
            per[name] = _auc_ci(col, probs[:, j], n_boot, seed) if 0 < col.sum() < len(col) else [None, None, None]
            tm = M.threshold_metrics(col, probs[:, j], calibration["thresholds"][j])
            ops[name] = M.json_ready({k: tm[k] for k in ("threshold", "sensitivity", "specificity", "accuracy")})
        report["per_class_auc"] = per
        defined = [v[0] for v in per.values() if v[0] is not None]
        report["macro_auc"] = float(np.mean(defined)) if defined else None
        report["macro_auc_ci"] = [float(np.mean([v[1] for v in per.values() if v[0] is not None])),
                                  float(np.mean([v[2] for v in per.values() if v[0] is not None]))] if defined else None
        report["roc_auc"], report["roc_auc_ci"] = report["macro_auc"], report["macro_auc_ci"]
        report["per_label_operating_point"] = ops
        thr = np.asarray(calibration["thresholds"])
        report["accuracy"] = float(((probs >= thr) == (y > 0.5)).mean())  # label-wise accuracy
        flat_y, flat_p = y.reshape(-1), probs.reshape(-1)
        report["ece_before"] = M.expected_calibration_error(flat_y, raw.reshape(-1))
        report["ece_after"] = M.expected_calibration_error(flat_y, flat_p)
    return M.json_ready(report)


def _auc_ci(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> list[float]:
    point, low, high = M.bootstrap_ci(M.roc_auc, y, s, n_boot=n_boot, seed=seed, stratify=y)
    return [point, low, high]


def save_plots(logits: np.ndarray, y: np.ndarray, task: str, label_names: list[str], calibration: dict,
               folder: Path) -> dict[str, Path]:
    """Write roc.png, calibration.png and confusion.png into ``folder``; return ``{name: path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    T = calibration["temperature"]
    raw, probs = probabilities(logits, task, 1.0), probabilities(logits, task, T)
    out = {}
    if task == "binary":
        thr = calibration["thresholds"][0]
        out["roc"] = P.save_figure(P.plot_roc(y, probs[:, 1], threshold=thr, title=f"ROC: {label_names[1]}"),
                                   folder / "roc.png")
        out["calibration"] = P.save_figure(
            P.plot_calibration(y, raw[:, 1], y_prob_after=probs[:, 1], title="Reliability (before / after T)"),
            folder / "calibration.png")
        pred = (probs[:, 1] >= thr).astype(int)
        out["confusion"] = P.save_figure(P.plot_confusion(M.confusion(y, pred, labels=[0, 1]), label_names),
                                         folder / "confusion.png")
    else:
        onehot = y if task == "multilabel" else np.eye(len(label_names), dtype=int)[y]
        scores = {name: probs[:, j] for j, name in enumerate(label_names) if 0 < onehot[:, j].sum() < len(onehot)}
        truth = {name: onehot[:, j] for j, name in enumerate(label_names)}
        fig = _multi_roc(truth, scores)
        out["roc"] = P.save_figure(fig, folder / "roc.png")
        if task == "multiclass":
            out["calibration"] = P.save_figure(
                P.plot_calibration(y, raw, y_prob_after=probs, title="Top-label reliability (before / after T)"),
                folder / "calibration.png")
            out["confusion"] = P.save_figure(
                P.plot_confusion(M.confusion(y, probs.argmax(1), labels=list(range(len(label_names)))), label_names),
                folder / "confusion.png")
        else:
            out["calibration"] = P.save_figure(
                P.plot_calibration(y.reshape(-1), raw.reshape(-1), y_prob_after=probs.reshape(-1),
                                   title="Label-wise reliability (before / after T)"), folder / "calibration.png")
    return out


def _multi_roc(truth: dict[str, np.ndarray], scores: dict[str, np.ndarray]):
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(5.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(truth[name], s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {M.roc_auc(truth[name], s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC per class (one-vs-rest)")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """Return the few metrics shown in the registry and the hub (roc_auc, its CI, accuracy, sens/spec, ECE)."""
    keys = ("roc_auc", "roc_auc_ci", "accuracy", "sensitivity", "specificity", "ece_after", "split", "n")
    return {k: report[k] for k in keys if k in report}


def live_metrics(items) -> dict[str, Any]:
    """Return one window's live metrics from served items (``probabilities``, ``decision``, ``score``,
    predicted ``label``) and the reads returned for them (``label`` of the outcome = the true class): binary —
    ROC-AUC of P(positive), sensitivity and specificity at the served operating point; otherwise accuracy.
    Raises DataError for a read naming a class the model does not know."""
    from lepton_apps.errors import DataError

    out: dict[str, Any] = {}
    if "probabilities" not in items or not len(items):
        return out
    lab = items[items["label"].notna() & items["probabilities"].map(lambda p: isinstance(p, dict) and bool(p))]
    if not len(lab):
        return out
    classes = list(lab["probabilities"].iloc[0])
    truth = lab["label"].astype(str).str.strip()
    unknown = sorted(set(truth) - set(classes))
    if unknown:
        raise DataError(f"outcome labels {unknown[:5]} are not classes of the model {classes}",
                        where="medical outcomes", fix="return the read as one of the model's class names")
    if len(classes) == 2:
        y = (truth == classes[1]).to_numpy().astype(int)
        score = lab["score"].to_numpy(dtype=float)
        flagged = lab["decision"].fillna(False).astype(bool).to_numpy()
        out["roc_auc"] = M.roc_auc(y, score) if 0 < y.sum() < len(y) else float("nan")
        out["sensitivity"] = float(flagged[y == 1].mean()) if y.any() else float("nan")
        out["specificity"] = float((~flagged[y == 0]).mean()) if (y == 0).any() else float("nan")
    else:
        predicted = lab["probabilities"].map(lambda p: max(p, key=p.get))
        out["accuracy"] = float((predicted.to_numpy() == truth.to_numpy()).mean())
    return out


def evaluate_classifier(clf, data: str | os.PathLike, *, split: str | None = None,
                        out: str | os.PathLike | None = None, n_boot: int = 1000) -> dict[str, Any]:
    """Return the evaluation report of a loaded classifier on ``data`` (optionally one split); write it
    (``report.json``) and the plots to ``out``.

    The bundle's temperature and operating point are used as stored (fitted on its validation
    data), so the numbers say how the deployed model behaves. Unreadable images are refused.
    """
    from lepton_apps.io import atomic_write_json

    from .data import model_pixels, open_data
    from .model import predict_logits

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
