"""Medical image classification template (``lepton-apps medical …``).

Public API (imported lazily, so importing this package stays light)::

    from lepton_apps.medical import MedicalClassifier, train, MedicalConfig

    bundle_dir = train(MedicalConfig(data="xrays/", backbone="resnet18", epochs=10))
    clf = MedicalClassifier.load(bundle_dir)
    clf.predict(["a.png", "b.dcm"])
    clf.explain("a.png")
"""
from __future__ import annotations

from pathlib import Path

from lepton_apps.domains import DomainSpec, EvaluateOption, EvaluateSpec, lazy_exports

from .cli import cli

_LAZY = {
    "train": "training",
    "MedicalClassifier": "predict",
    "Prediction": "predict",
    "Explanation": "predict",
    "MedicalConfig": "config",
    "AugmentConfig": "config",
    "open_data": "data",
    "check_data": "check",
    "deidentify": "deid",
    "write_demo_data": "demo",
    "build_demo": "demo",
}
__getattr__ = lazy_exports(__name__, _LAZY)


DOMAIN = DomainSpec(
    name="medical",
    title="Medical imaging",
    summary=("Classify medical images (X-ray, ultrasound, dermoscopy…) from PNG, JPEG or DICOM folders, "
             "CSV manifests or MedMNIST files with a timm backbone: probabilities, an operating-point "
             "decision, Grad-CAM overlays, ROC and calibration."),
    cli=cli,
    page=Path(__file__).with_name("page.py"),
    icon=":material/radiology:",
    build_demo="lepton_apps.medical.demo:build_demo",
    predictor="lepton_apps.medical.predict:MedicalClassifier",
    backend_export="lepton_apps.medical.export:backend_export",
    headline_metrics=("roc_auc", "sensitivity", "specificity"),
    live_metrics="lepton_apps.medical.evaluate:live_metrics",
    primary_metric="roc_auc",
    evaluate=EvaluateSpec(data_help="Labelled images: a folder of class folders, manifest.csv or a MedMNIST .npz.",
                          options=(EvaluateOption("split", str, None, "Only rows of this split (train, val or test); "
                                                                      "default all."),)),
)

__all__ = ["MedicalClassifier", "Prediction", "Explanation", "train", "MedicalConfig", "DOMAIN"]
