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

from lepton_apps.domains import DomainSpec

from .cli import cli
from .train import train  # bound eagerly: the submodule of the same name would otherwise shadow it (no torch here)

_LAZY = {
    "MedicalClassifier": ("predict", "MedicalClassifier"),
    "Prediction": ("predict", "Prediction"),
    "Explanation": ("predict", "Explanation"),
    "MedicalConfig": ("config", "MedicalConfig"),
    "AugmentConfig": ("config", "AugmentConfig"),
    "open_data": ("data", "open_data"),
    "check_data": ("check", "check_data"),
    "deidentify": ("deid", "deidentify"),
    "write_demo_data": ("demo", "write_demo_data"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_demo(workdir: Path, registry) -> str:
    """Write synthetic demo data, train the quick demo model, register it; return its name (medical-demo-…)."""
    from .demo import build_demo as _build

    return _build(workdir, registry)


DOMAIN = DomainSpec(
    name="medical",
    title="Medical imaging",
    summary=("Classify medical images (X-ray, ultrasound, dermoscopy…) from PNG, JPEG or DICOM folders, "
             "CSV manifests or MedMNIST files with a timm backbone: probabilities, an operating-point "
             "decision, Grad-CAM overlays, ROC and calibration."),
    cli=cli,
    page=Path(__file__).with_name("page.py"),
    icon=":material/radiology:",
    build_demo=build_demo,
    headline_metrics=("roc_auc", "sensitivity", "specificity"),
)

__all__ = ["MedicalClassifier", "Prediction", "Explanation", "train", "MedicalConfig", "DOMAIN"]
