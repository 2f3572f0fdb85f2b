"""Export a medical bundle's CNN to ONNX (fp32, or static int8 behind an AUC gate), checked against PyTorch.

The graph takes the pixels exactly as :class:`MedicalClassifier` feeds its network — float32
``pixels`` (N, C, S, S) on the 0–255 scale (the uint8 values of the image decoded, converted to the
bundle's channels and resized to S×S as :func:`imageio.prepare` does), batch size dynamic, C and S
fixed by the bundle — and does the rest inside: gray repeated to three channels, ``(x - mean) / std``
with the bundle's mean / std, the backbone, then the bundle's temperature and softmax (sigmoid per
label for multi-label). Outputs: ``logits`` and ``probabilities`` (the calibrated probabilities
``MedicalClassifier.predict`` reports).

Check data, in this order: labelled data the caller passes (``data``: its ``val`` split when it has
one, else every row; calibration from its ``train`` split); the bundle's validation split, rebuilt
from its training data when that is still at the recorded path and decodes to the recorded pixel
fingerprint (calibration: a seeded sample of the training split); otherwise a synthetic sample of
seeded images (fp32 only — the int8 gate needs labelled images). The card says which.

Tolerance (fp32): ONNX Runtime and PyTorch run the same float32 arithmetic in a different order
(convolution + batch-norm folded by the exporter, other kernels), so probabilities differ by float32
rounding: measured 2.1e-5 at most on the demo bundle (99 validation images) and 7e-9 on the test
bundle; 1e-4 leaves room for deeper backbones and larger inputs while still catching a wrong normalisation, channel order or
missing temperature, each of which moves probabilities by 1e-2 or more.

int8: ONNX Runtime static quantisation — ``quant_pre_process`` (shape inference and graph
optimisation, which folds the remaining batch-norms), then ``quantize_static`` in QDQ format with
int8 per-channel weights and uint8 activations whose ranges (MinMax) come from the calibration
images; the first three convolutions and the classifier stay fp32 (:func:`kept_fp32` has the measurements). The gate: the int8 model's AUC on the check images (binary: ROC AUC of P(positive), else
macro AUC) may be at most ``max_auc_drop`` below the fp32 ONNX model's; otherwise nothing is written
and :class:`ExportError` says by how much it missed and to export fp32 (without ``--quantize``).
A second gate: at most ``max_decisions_changed`` (default 2 %) of the check images may get another
decision at the bundle's operating threshold than with fp32 — on a small validation set AUC is noisy,
and a model can keep its AUC while its calibrated threshold no longer means the same sensitivity (the
demo bundle's first int8 model passed the AUC gate, 0.826 vs 0.787 on 99 images, while flipping 23 %
of the decisions). The card records how far the int8 probabilities moved from fp32 as well.
Refusing is clearer than writing fp32 under an int8 request: a folder never holds another precision
than the one asked for, and the fp32 export is one command away.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lepton_apps.errors import ConfigError, DataError, require
from lepton_apps.export import ExportError, inference_session, write_export

from .data import model_pixels
from .predict import INPUT_NAME, MedicalClassifier, run_session

#: max abs difference in probabilities between the fp32 ONNX model and PyTorch (see the module docstring)
TOLERANCE = 1e-4
#: the int8 model may lose at most this much validation AUC against the fp32 ONNX model
MAX_AUC_DROP = 0.005
MAX_DECISIONS_CHANGED = 0.02   # share of check images whose decision at the operating threshold int8 may flip
#: calibration images for int8 (a seeded sample of the training split)
CALIBRATION_IMAGES = 200
SYNTHETIC_IMAGES = 64
OPSET = 17
OUTPUTS = ("logits", "probabilities")


def exportable_module(clf):
    """Return the torch module the export traces: float 0–255 pixels -> (logits, calibrated probabilities)."""
    import torch

    net = clf.model.float().eval()
    temperature, multilabel = float(clf.temperature), clf.task == "multilabel"

    class ExportedNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            logits = self.net.backbone(self.net.normalise(pixels))  # normalise: gray -> 3 channels, (x - mean) / std
            z = logits / temperature
            return logits, (torch.sigmoid(z) if multilabel else torch.softmax(z, dim=1))

    return ExportedNet().eval()


def convert(clf) -> bytes:
    """Return the fp32 ONNX model (serialised) of a loaded :class:`MedicalClassifier` (opset 17, dynamic batch)."""
    import torch

    require("onnx", feature="ONNX export of the medical model", extra="fast")
    example = torch.zeros(2, clf.channels, clf.image_size, clf.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.inference_mode(), warnings.catch_warnings():
            # the gray/RGB branch is fixed per bundle (TracerWarning); the TorchScript exporter's deprecation notes
            # are for us, not for someone predicting with the backend
            warnings.simplefilter("ignore")
            torch.onnx.export(exportable_module(clf), (example,), str(path), input_names=[INPUT_NAME],
                              output_names=list(OUTPUTS), opset_version=OPSET, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}},
                              dynamo=False)
        return path.read_bytes()


def decisions_changed(clf, a: np.ndarray, b: np.ndarray) -> float:
    """Return the share of images whose decision differs between probabilities ``a`` and ``b``: at the bundle's
    operating threshold (binary), at each label's threshold (multi-label, any label), or the argmax class."""
    if clf.task == "binary":
        return float(((a[:, 1] >= clf.threshold) != (b[:, 1] >= clf.threshold)).mean())
    if clf.task == "multilabel":
        thr = np.asarray(clf.thresholds)
        return float(((a >= thr) != (b >= thr)).any(axis=1).mean())
    return float((a.argmax(1) != b.argmax(1)).mean())


def auc(y: np.ndarray, probs: np.ndarray, task: str) -> float:
    """Return the gate's metric: ROC AUC of P(positive) (binary), else the macro AUC over classes / labels."""
    from lepton_apps import metrics as M

    return float(M.roc_auc(y, probs[:, 1]) if task == "binary" else M.macro_auc(y, probs))


# --------------------------------------------------------------------------- check and calibration images

def _from_training_data(clf) -> dict[str, Any] | None:
    """Return the bundle's validation and training pixels rebuilt from its training data, or None when that
    data is not at the recorded path or does not decode to the recorded fingerprint."""
    from lepton_apps.bundle import fingerprint_data

    from .config import MedicalConfig
    from .data import load_pixels, open_for_training, usable_split

    bundle = clf.bundle
    data = bundle.training_config.get("data")
    if not data or not Path(data).exists():
        return None
    try:
        cfg = MedicalConfig.from_dict(bundle.training_config)
        md, split, channels, size = open_for_training(cfg)
    except (ConfigError, DataError):  # a config of another version, or data that no longer opens
        return None
    if (channels, size) != (clf.channels, clf.image_size):
        return None
    pixels, errors = load_pixels(md, size, channels, cache_dir=cfg.cache_dir)
    if fingerprint_data(pixels) != bundle.metadata.get("data_fingerprint"):
        return None
    split = usable_split(md, split, errors, cfg)
    y = md.targets()
    val, train = np.flatnonzero(split == "val"), np.flatnonzero(split == "train")
    return {"pixels": pixels[val], "y": y[val], "train": pixels[train],
            "data": f"the bundle's validation split, rebuilt from its training data {data} ({len(val):,} images)",
            "train_data": f"the training split of {data}"}


def _from_labelled_data(clf, data) -> dict[str, Any]:
    """Return the check pixels (the ``val`` split of ``data``, else every row) and calibration pixels (its
    ``train`` split, possibly empty) of labelled data passed in."""
    from .data import open_data

    md = open_data(data)
    pixels, errors = model_pixels(clf, md, str(data), "check the export")
    ok = np.ones(len(md.table), bool)
    ok[list(errors)] = False
    split = md.table["split"].to_numpy(dtype=object)
    has_val = bool((split == "val").any())
    rows = np.flatnonzero(ok & (split == "val")) if has_val else np.flatnonzero(ok)
    train = np.flatnonzero(ok & (split == "train"))
    if len(rows) == 0:
        raise DataError("no readable image to check the export on", where=str(data),
                        fix="run 'lepton-apps medical check' and repair the images")
    what = "its val split" if has_val else "all its rows"
    skipped = f"; {len(errors)} unreadable image(s) skipped" if errors else ""
    return {"pixels": pixels[rows], "y": md.targets()[rows], "train": pixels[train],
            "data": f"{what} of {data} ({len(rows):,} images{skipped})", "train_data": f"the train split of {data}"}


def synthetic_pixels(channels: int, size: int, n: int = SYNTHETIC_IMAGES, seed: int = 0) -> np.ndarray:
    """Return ``n`` seeded uint8 images (n, C, S, S): half uniform noise, half smooth blobs on gradients."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(n // 2, channels, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    smooth = []
    for _ in range(n - n // 2):
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3)
        img = 60 + 120 * (rng.uniform() * xx + rng.uniform() * yy) / 2 + 100 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
        smooth.append(np.repeat(img[None], channels, axis=0))
    return np.concatenate([noise, np.clip(np.stack(smooth), 0, 255).astype(np.uint8)])


def check_images(clf, data=None, seed: int = 0, synthetic: bool = False) -> dict[str, Any]:
    """Return ``{pixels, y, train, data, train_data}``: the uint8 images to check the export on (with labels,
    or ``y`` None for the synthetic fallback), candidate calibration images and descriptions of both.
    ``synthetic``: skip the training data (a quick conversion check, e.g. of the fp32 backend built at load)."""
    if data is not None:
        return _from_labelled_data(clf, data)
    found = None if synthetic else _from_training_data(clf)
    if found is not None:
        return found
    pixels = synthetic_pixels(clf.channels, clf.image_size, seed=seed)
    why = ("a quick conversion check when the backend was first built" if synthetic else
           "the bundle keeps no images and its training data is not at the recorded path "
           f"({clf.bundle.training_config.get('data')}) or has changed; pass --data LABELLED_IMAGES to check on "
           "real images")
    return {"pixels": pixels, "y": None, "train": pixels[:0],
            "data": (f"synthetic sample ({len(pixels)} images, seed {seed}: half uniform noise, half blobs on "
                     f"gradients): {why}"), "train_data": None}


def calibration_sample(train: np.ndarray, n: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """Return a seeded sample of at most ``n`` of the training images ``train`` (kept in their order)."""
    if len(train) <= n:
        return train
    return train[np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))]


# --------------------------------------------------------------------------- quantisation

def quantize_int8(fp32: bytes, calibration: np.ndarray, workdir: Path) -> bytes:
    """Return the static int8 (QDQ, per-channel weights) ONNX model of ``fp32``, calibrated on uint8 images."""
    ort_q = require("onnxruntime.quantization", feature="int8 quantisation of the medical model", extra="fast")

    class Reader(ort_q.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: calibration[i:i + 16].astype(np.float32)}
                                 for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    src, pre, dst = workdir / "fp32.onnx", workdir / "pre.onnx", workdir / "int8.onnx"
    src.write_bytes(fp32)
    ort_q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    ort_q.quantize_static(str(pre), str(dst), Reader(), quant_format=ort_q.QuantFormat.QDQ, per_channel=True,
                          activation_type=ort_q.QuantType.QUInt8, weight_type=ort_q.QuantType.QInt8,
                          nodes_to_exclude=kept_fp32(pre), calibrate_method=ort_q.CalibrationMethod.MinMax)
    return dst.read_bytes()


#: the first convolutions stay fp32 (see kept_fp32)
FP32_FIRST_CONVS = 3


def kept_fp32(model_path: Path) -> list[str]:
    """Return the nodes int8 leaves in fp32: the first ``FP32_FIRST_CONVS`` convolutions (they see the raw image
    and its widest value ranges) and the classifier (Gemm / MatMul: the logits the calibrated threshold reads).

    Measured on three bundles (efficientnet_lite0 at 64 px on PneumoniaMNIST, at 224 px on Kermany, resnet18 at
    64 px; 200 test images each), against quantising every node: decisions changed at the operating threshold
    15.5 % -> 5.0 %, 7.5 % -> 1.5 %, 2.5 % -> 0 %, max probability shift 0.83 -> 0.32, 0.82 -> 0.28, 0.19 -> 0.05,
    at the same speed (bench/export_bench.py has the held-out run). Activations are uint8 (U8S8): ONNX Runtime's
    fast path on x86 CPUs without VNNI, 1.7-2.6x the speed of int8 activations at the same fidelity there."""
    onnx = require("onnx", feature="int8 quantisation of the medical model", extra="fast")
    nodes = onnx.load(str(model_path)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"][:FP32_FIRST_CONVS]
    return convs + [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]




# --------------------------------------------------------------------------- export

def _fmt(threshold) -> str:
    """Return a threshold (a number, or a list per label) for a message: 3 decimals."""
    if isinstance(threshold, (list, tuple)):
        return "[" + ", ".join(f"{float(t):.3f}" for t in threshold) + "]"
    return f"{float(threshold):.3f}" if threshold is not None else "(none)"


def backend_export(bundle: str | Path, out: str | Path, precision: str) -> Path:
    """Write the export the ONNX backend of :meth:`MedicalClassifier.load` uses (the domain's ``backend_export``,
    cached by :func:`lepton_apps.export.cached_export`): fp32 checked on seeded synthetic images (the quick check of
    a first load), int8 gated on labelled images as :func:`export`."""
    return export(bundle, out, quantize=precision, synthetic_check=precision == "fp32", overwrite=True)


def export(bundle: str | Path, out: str | Path, *, quantize: str | None = None, data: Any = None,
           max_auc_drop: float = MAX_AUC_DROP, max_decisions_changed: float = MAX_DECISIONS_CHANGED,
           calibration_images: int = CALIBRATION_IMAGES,
           calibration: np.ndarray | None = None, tolerance: float = TOLERANCE, overwrite: bool = False,
           synthetic_check: bool = False, home=None) -> Path:
    """Export a medical bundle's network to an ONNX export folder (fp32, or int8 with ``quantize="int8"``);
    return its path.

    ``data``: labelled images to check on instead of the bundle's rebuilt validation split;
    ``calibration``: uint8 images (N, C, S, S) to calibrate int8 on instead of the training images;
    ``synthetic_check``: check fp32 on seeded synthetic images instead of rebuilding the validation split (the
    quick check of the fp32 backend built on first load; int8 is always gated on labelled images).
    Raises ExportError when the fp32 probabilities differ from PyTorch's by more than ``tolerance``, when
    the int8 model loses more than ``max_auc_drop`` AUC or flips more than ``max_decisions_changed`` of the
    decisions at the operating threshold (nothing written; the message has the numbers) or
    when int8 has no labelled images to be gated on; DataError / BundleError for bad data or bundles.
    """
    if quantize not in (None, "none", "fp32", "int8"):
        raise ExportError(f"unknown --quantize {quantize!r}", where="medical export", fix="use --quantize int8, or leave it out")
    int8 = quantize == "int8"
    if not 0 <= max_auc_drop < 1:
        raise ExportError(f"max_auc_drop must be in [0, 1), got {max_auc_drop}", where="--max-auc-drop",
                          fix="pass an AUC difference such as 0.005")
    if not 0 <= max_decisions_changed <= 1:
        raise ExportError(f"max_decisions_changed must be in [0, 1], got {max_decisions_changed}",
                          where="--max-decisions-changed", fix="pass a share of images such as 0.02")
    if int8 and calibration is None and calibration_images < 1:
        raise ExportError(f"calibration_images must be at least 1, got {calibration_images}", where="--calibration-images",
                          fix="calibrate on a few hundred training images at most, e.g. 200 (the default)")
    clf = MedicalClassifier.load(bundle, home=home, device="cpu", backend="torch")
    images = check_images(clf, data, synthetic=synthetic_check and not int8)
    pixels, y = images["pixels"], images["y"]
    reference = clf.predict_pixels(pixels)
    fp32 = convert(clf)
    card: dict[str, Any] = {
        "task": clf.task, "label_names": clf.label_names, "threshold": clf.threshold, "thresholds": clf.thresholds,
        "operating_point": clf.calibration.get("operating_point"), "temperature": clf.temperature,
        "backbone": clf.backbone,
        "preprocessing": {
            "input": f"float32 '{INPUT_NAME}' [batch, {clf.channels}, {clf.image_size}, {clf.image_size}] (NCHW), "
                     "pixel values 0-255 (uint8 values as float, not scaled to 0-1)",
            "layout": "NCHW", "channels": clf.channels, "image_size": clf.image_size, "scale": "0-255",
            "before_the_graph": (f"decode (PNG/JPEG/DICOM as lepton_apps.medical.imageio.prepare: DICOM modality/VOI "
                                 f"LUT windowing to 8 bit, MONOCHROME1 inverted), convert to "
                                 f"{'grayscale' if clf.channels == 1 else 'RGB'}, resize to "
                                 f"{clf.image_size}x{clf.image_size} (square, box/bilinear)"),
            "in_the_graph": "gray repeated to 3 channels, (x - mean*255) / (std*255), backbone, logits / temperature, "
                            + ("sigmoid per label" if clf.task == "multilabel" else "softmax"),
            "normalisation": {"mean": list(clf.bundle.load_json("model.json")["mean"]),
                              "std": list(clf.bundle.load_json("model.json")["std"])},
        },
        "score_output": ("probabilities[:, 1] = P(" + clf.label_names[1] + "); positive when >= threshold")
        if clf.task == "binary" else "probabilities (calibrated)",
        "converter": f"torch.onnx.export (TorchScript exporter, opset {OPSET}, eval mode: conv + batch-norm folded)",
    }
    check_outputs = lambda outs: {"probabilities": outs["probabilities"]}  # noqa: E731
    inputs = lambda session: run_session(session, pixels)  # noqa: E731
    if not int8:
        return write_export(out, model=fp32, source=clf.bundle, precision="fp32", inputs=inputs,
                            reference={"probabilities": reference}, check_outputs=check_outputs,
                            tolerance=tolerance, check_data=images["data"], card=card, overwrite=overwrite)
    if y is None:
        raise ExportError("int8 needs labelled validation images for its AUC gate, and none were found",
                          where=str(clf.bundle.path),
                          fix=f"restore the training data at {clf.bundle.training_config.get('data')} or pass --data "
                              "with labelled images (val split to gate on, train split to calibrate on); or export fp32")
    if calibration is None:
        calibration = calibration_sample(images["train"], calibration_images)
        calib_what = f"{len(calibration)} images, a seeded sample of {images['train_data']}"
    else:
        calib_what = f"{len(calibration)} images passed in (calibration=)"
    if len(calibration) == 0:
        raise ExportError("int8 needs calibration images from the training data, and none were found",
                          where=str(data or clf.bundle.path),
                          fix="pass --data with a train split, or restore the bundle's training data")
    fp32_probs = run_session(inference_session(fp32), pixels)["probabilities"]
    fp32_diff = float(np.abs(fp32_probs - reference).max())
    if fp32_diff > tolerance:
        raise ExportError(f"the fp32 ONNX model differs from PyTorch by up to {fp32_diff:.3g}, more than the tolerance "
                          f"{tolerance:.3g}, so it cannot be quantised; nothing was written", where=str(out),
                          fix="report this conversion problem; keep using the source bundle")
    with tempfile.TemporaryDirectory() as tmp:
        int8_model = quantize_int8(fp32, np.ascontiguousarray(calibration), Path(tmp))
    int8_probs = run_session(inference_session(int8_model), pixels)["probabilities"]
    auc32, auc8 = auc(y, fp32_probs, clf.task), auc(y, int8_probs, clf.task)
    drop = auc32 - auc8
    gate = {"metric": "roc_auc" if clf.task == "binary" else "macro_auc", "data": images["data"],
            "fp32_auc": auc32, "int8_auc": auc8, "drop": drop, "max_drop": max_auc_drop,
            # not gated, recorded: how far the int8 probabilities moved and how many decisions they flip
            "probability_abs_diff_to_fp32": {"max": float(np.abs(int8_probs - fp32_probs).max()),
                                             "mean": float(np.abs(int8_probs - fp32_probs).mean())},
            "decisions_changed": decisions_changed(clf, fp32_probs, int8_probs),
            "max_decisions_changed": max_decisions_changed}
    gate["passed"] = bool(drop <= max_auc_drop and gate["decisions_changed"] <= max_decisions_changed)
    if not drop <= max_auc_drop:
        raise ExportError(
            f"the int8 model misses the accuracy gate: validation AUC {auc8:.4f} against {auc32:.4f} for fp32, a drop "
            f"of {drop:.4f}, {drop - max_auc_drop:.4f} more than the allowed {max_auc_drop:.4f} (on {images['data']}; "
            f"calibrated on {calib_what}); nothing was written",
            where=str(out), fix="export fp32 instead (the same command without --quantize), or calibrate on more "
                                "representative training images")
    if gate["decisions_changed"] > max_decisions_changed:
        raise ExportError(
            f"the int8 model misses the decision gate: it changes {gate['decisions_changed']:.1%} of the decisions at "
            f"the operating threshold {_fmt(clf.threshold)} against fp32, more than the allowed {max_decisions_changed:.1%} "
            f"(AUC {auc8:.4f} vs {auc32:.4f}; on {images['data']}; calibrated on {calib_what}); nothing was written",
            where=str(out), fix="export fp32 instead (the same command without --quantize), or calibrate on more "
                                "representative training images")
    card["quantization"] = {"tool": "onnxruntime.quantization.quantize_static after quant_pre_process",
                            "format": "QDQ", "weights": "int8, per channel", "activations": "uint8, per tensor",
                            "kept_fp32": f"the first {FP32_FIRST_CONVS} convolutions and the classifier",
                            "calibration_method": "MinMax", "calibration": calib_what}
    card["gate"] = gate
    # for int8 the AUC gate is the criterion; the max abs difference to PyTorch is recorded, not bounded
    return write_export(out, model=int8_model, source=clf.bundle, precision="int8", inputs=inputs,
                        reference={"probabilities": reference}, check_outputs=check_outputs, tolerance=1.0,
                        check_data=images["data"], card=card, overwrite=overwrite)
