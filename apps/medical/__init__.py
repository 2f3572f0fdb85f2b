"""Medical image classification template (``lepton-apps medical …``).

The domain's verbs (train, evaluate, predict, check, demo-data) are added by the medical
template issue; this package already plugs into the suite through :data:`DOMAIN`.
"""
import typer

from lepton_apps.domains import DomainSpec

cli = typer.Typer(help="Medical image classification: PNG/JPEG/DICOM folders, CSV manifests, MedMNIST .npz.",
                  no_args_is_help=True)

DOMAIN = DomainSpec(
    name="medical",
    title="Medical imaging",
    summary=("Classify medical images (X-ray, ultrasound, dermoscopy…) from PNG, JPEG or DICOM folders, "
             "CSV manifests or MedMNIST files with a timm backbone: probabilities, an operating-point "
             "decision, Grad-CAM overlays, ROC and calibration."),
    cli=cli,
    icon=":material/radiology:",
    headline_metrics=("roc_auc", "sensitivity", "specificity"),
)
