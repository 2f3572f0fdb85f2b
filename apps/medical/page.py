"""Streamlit page of the medical template (mounted by the hub; also ``streamlit run apps/medical/page.py``).

Predict: upload PNG / JPEG / DICOM files, see each image (DICOM windowed), the probabilities,
the decision at an adjustable operating point with the validation sensitivity / specificity it
implies, and a Grad-CAM overlay. Model card: metrics with CIs, ROC, calibration, data summary.
Train: check a data folder, train with a live progress bar, register the bundle.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from lepton_apps.errors import DataError
from lepton_apps.registry import Registry
from lepton_apps.ui.common import backend_picker, cached_bundle, cached_predictor, guarded, show_backend, show_error

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
UPLOAD_TYPES = ["png", "jpg", "jpeg", "dcm", "dicom"]

def classifier_for(path: Path, backend: str | None = None):
    """Return the MedicalClassifier of the bundle at ``path`` (run by ``backend``) from the hub's shared model cache."""
    return cached_predictor(path, "medical", backend)


def operating_table(val_probs: np.ndarray, val_labels: np.ndarray, threshold: float) -> dict:
    """Return validation sensitivity / specificity / accuracy at ``threshold`` (binary)."""
    from lepton_apps.metrics import threshold_metrics

    return threshold_metrics(val_labels, val_probs[:, 1], threshold)


def show_prediction_tab(path: Path, bundle, backend: str | None = None) -> None:
    """Uploads -> image, probabilities, decision at the chosen operating point, optional Grad-CAM.

    The network (torch, timm) is loaded only once a file is uploaded, so the page opens fast.
    """
    calibration = bundle.load_json("calibration.json")
    labels = bundle.label_names
    threshold = None
    if bundle.task == "binary":
        val_probs, val_labels = bundle.load_numpy("val_probs.npy"), bundle.load_numpy("val_labels.npy")
        threshold = st.slider(f"Operating point: flag '{labels[1]}' when its probability ≥",
                              0.0, 1.0, float(round(calibration["thresholds"][0], 3)), 0.005, key="medical_threshold",
                              help="Chosen on validation data when the model was trained; move it to trade "
                                   "sensitivity against specificity.")
        op = operating_table(val_probs, val_labels, threshold)
        c1, c2, c3 = st.columns(3)
        c1.metric("Validation sensitivity", f"{op['sensitivity']:.3f}")
        c2.metric("Validation specificity", f"{op['specificity']:.3f}")
        c3.metric("Validation accuracy", f"{op['accuracy']:.3f}")
    show_cam = st.toggle("Show Grad-CAM overlay", value=False, key="medical_gradcam")
    files = st.file_uploader("Upload PNG, JPEG or DICOM images", type=UPLOAD_TYPES, accept_multiple_files=True,
                             key="medical_upload")
    if files:
        clf = classifier_for(path, backend)
        show_backend(clf, "probabilities computed by")
        for f in files:
            with st.container(border=True):
                with guarded(f.name):
                    show_one(clf, f.name, f.getvalue(), threshold, show_cam)


def show_one(clf, name: str, data: bytes, threshold: float | None, show_cam: bool) -> None:
    """Render one uploaded file: image, probabilities bar chart, decision, Grad-CAM."""
    from lepton_apps.medical.predict import display_image

    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"the file is {len(data) / 1e6:.0f} MB, more than the {MAX_UPLOAD_BYTES // 2**20} MB allowed",
                        where=name, fix="downscale or crop the image")
    image = display_image(data, name=name)
    res = clf.predict([data], names=[name], threshold=threshold)[0]
    left, right = st.columns([1, 1])
    left.image(image, caption=name, clamp=True, width="stretch")
    with right:
        st.markdown(f"**{name}** — prediction: **{res.label or 'no finding'}**")
        if res.decision is not None and clf.task == "binary":
            verdict = f"flagged as {clf.label_names[1]}" if res.decision else f"not flagged ({clf.label_names[0]})"
            st.markdown(f"Decision at threshold {res.threshold:.3f}: **{verdict}** (P = {res.score:.3f})")
        probs = pd.DataFrame({"class": list(res.probabilities), "probability": list(res.probabilities.values())})
        st.bar_chart(probs, x="class", y="probability", horizontal=True, height=60 + 30 * len(probs))
        st.caption(f"model {res.model_version}")
    if show_cam:
        exp = clf.explain(data, name=name)
        st.image(exp.overlay, caption=f"Grad-CAM for '{exp.target}' (P = {exp.probability:.3f})", width=320)


def show_model_card(bundle) -> None:
    """Metrics with CIs, plots, data summary and training settings of a bundle."""
    report = bundle.load_json("report.json")
    ci = report.get("roc_auc_ci") or [None, None]
    cols = st.columns(4)
    cols[0].metric(f"ROC AUC ({report['split']}, n={report['n']})", f"{report['roc_auc']:.3f}",
                   help=f"95% bootstrap CI {ci[0]:.3f}–{ci[1]:.3f}" if ci[0] is not None else None)
    cols[0].caption(f"95% CI {ci[0]:.3f}–{ci[1]:.3f}" if ci[0] is not None else "")
    cols[1].metric("Accuracy", f"{report['accuracy']:.3f}")
    if report["task"] == "binary":
        cols[2].metric("Sensitivity", f"{report['sensitivity']:.3f}")
        cols[3].metric("Specificity", f"{report['specificity']:.3f}")
    st.caption(f"Operating point: {report['operating_point']} on validation (threshold "
               f"{report.get('threshold', float('nan')):.3f}); ECE {report['ece_before']:.3f} → "
               f"{report['ece_after']:.3f} after temperature scaling (T = {report['temperature']:.2f}).")
    per = pd.DataFrame([{"class": k, "AUC": v[0], "CI low": v[1], "CI high": v[2]}
                        for k, v in report["per_class_auc"].items()])
    st.dataframe(per, hide_index=True)
    plots = [p for p in ("plots/roc.png", "plots/calibration.png", "plots/confusion.png") if bundle.has(p)]
    for col, p in zip(st.columns(max(1, len(plots))), plots):
        col.image(str(bundle.file(p)), width="stretch")
    summary = bundle.load_json("data_summary.json")
    level = ("yes" if summary["patient_level_split"] else
             "no — patients cross splits" if summary.get("patients_in_two_splits") else "no patient ids")
    st.markdown(f"**Training data** ({summary['kind']}, {summary['task']}; patient-level split: {level})")
    if summary.get("split_method"):
        st.caption(f"Splits: {summary['split_method']}"
                   + (f"; patient ids from {summary['patient_ids']}" if summary.get("patient_ids") else ""))
    st.dataframe(pd.DataFrame(summary["counts"]).fillna(0).astype(int))
    info = bundle.load_json("model.json")
    st.caption(f"Backbone {info['backbone']} at {info['image_size']} px, {info['channels']} channel(s), "
               f"initial weights: {info['initial_weights']}.")


def show_train_tab(registry: Registry) -> None:
    """Pick a data folder, check it, train with a live progress bar, register the bundle."""
    data = st.text_input("Data: folder root/<class>/*, manifest.csv or MedMNIST .npz", key="medical_data")
    if st.button("Check data", key="medical_check") and data:
        with guarded("Data check"):
            from lepton_apps.medical.check import check_data, has_blocking_issues

            r = check_data(data)
            st.session_state["medical_check_report"] = r
            (st.warning if has_blocking_issues(r) else st.success)(
                f"{r['n_images']} images, {len(r['label_names'])} classes ({r['task']}); "
                f"{r['n_unreadable']} unreadable; {r['duplicate_images']} duplicates "
                f"({r['duplicates_across_splits']} across splits)"
                + (f"; {r['patients_across_splits']} patients in more than one split" if "patients" in r else ""))
    report = st.session_state.get("medical_check_report")
    if report and report["source"] == data:
        st.dataframe(pd.DataFrame(report["counts"]).fillna(0).astype(int))
        if report["unreadable"]:
            st.dataframe(pd.DataFrame(report["unreadable"]), hide_index=True)
        for p in report["problems"]:
            st.warning(p)
    c1, c2, c3, c4 = st.columns(4)
    backbone = c1.text_input("Backbone (timm)", "efficientnet_lite0", key="medical_backbone")
    epochs = c2.number_input("Epochs", 1, 200, 5, key="medical_epochs")
    size = c3.number_input("Image size", 28, 512, 64, key="medical_size")
    pretrained = c4.checkbox("ImageNet weights", True, key="medical_pretrained")
    name = st.text_input("Register as", "", placeholder="medical-<task>-<time> when empty", key="medical_name")
    if st.button("Train", type="primary", key="medical_train") and data:
        with guarded("Training"):
            from lepton_apps.medical import train

            bar = st.progress(0.0, text="Decoding images…")

            def progress(ev: dict) -> None:
                if ev["event"] == "decode":
                    bar.progress(ev["done"] / max(1, ev["total"]), text=f"Decoding images {ev['done']}/{ev['total']}")
                elif ev["event"] == "step":
                    bar.progress(min(1.0, ev["step"] / max(1, ev["total_steps"])),
                                 text=f"Training: step {ev['step']}/{ev['total_steps']}, loss {ev['loss']:.3f}")
                elif ev["event"] == "evaluate":
                    bar.progress(1.0, text="Evaluating and writing the bundle…")

            bundle_path = train({"data": data, "backbone": backbone, "epochs": int(epochs), "image_size": int(size),
                                 "pretrained": bool(pretrained), "progress": False},
                                callback=progress)
            entry = registry.register(bundle_path, name or None)
            st.success(f"Registered {entry.name}. Pick it above to use it.")


def main() -> None:
    """Render the page."""
    st.header("Medical imaging", divider="gray")
    st.caption("Image classification from PNG / JPEG / DICOM with a timm backbone: probabilities, an "
               "operating-point decision, Grad-CAM, ROC and calibration. Not a medical device.")
    registry = Registry()
    entries = []
    with guarded("Reading the model registry"):
        entries = registry.list("medical")
    predict_tab, card_tab, train_tab = st.tabs(["Predict", "Model card", "Train"])
    chosen = None
    if entries:
        labels = {f"{e.name}" + (f"  ({', '.join(e.aliases)})" if e.aliases else ""): e for e in entries}
        chosen = labels[st.sidebar.selectbox("Medical model", list(labels), key="medical_model")]
    backend = backend_picker("medical_backend")
    with predict_tab:
        if chosen is None:
            st.info("No medical model yet: run `lepton-apps demo --domain medical`, or train one in the Train tab.")
        else:
            with guarded("Prediction"):
                bundle = cached_bundle(str(chosen.path), domain="medical")
                show_prediction_tab(chosen.path, bundle, backend)
    with card_tab:
        if chosen is not None:
            with guarded("Model card"):
                show_model_card(cached_bundle(str(chosen.path), domain="medical"))
    with train_tab:
        show_train_tab(registry)


try:
    main()
except Exception as exc:  # noqa: BLE001 - the page never shows a traceback
    from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

    if isinstance(exc, ScriptControlException):
        raise
    show_error(exc, "Medical page")
