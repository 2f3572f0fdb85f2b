"""``MedicalClassifier``: load a bundle, predict typed results, explain with Grad-CAM, score in batch.

::

    clf = MedicalClassifier.load("medical:latest")        # a registry name, alias or bundle folder
    [res] = clf.predict(["chest.dcm"])                     # Prediction(label, probabilities, decision, …)
    exp = clf.explain("chest.dcm")                         # Explanation(heatmap, overlay, …)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lepton_apps.errors import DataError, LeptonError
from lepton_apps.predictor import Explanation as BaseExplanation
from lepton_apps.predictor import Evaluation, MonitorWindow, PredictRequest, Predictor, Result

from .evaluate import probabilities
from .imageio import prepare, read_image, resize, to_channels


class Prediction(Result):
    """One image's result.

    item:          the item's name (its path, upload name or ``item <i> (<type>)``).
    label:         the predicted class (binary: the positive class when ``decision``; multi-label: the
                   labels at or above their thresholds, joined by ``|``, or "" when none).
    probabilities: calibrated probability per class.
    decision:      binary: P(positive) >= threshold; multi-class: None; multi-label: any label flagged.
    score:         binary: P(positive); otherwise the top probability.
    threshold:     the operating point used (binary), else None.
    model_version: the bundle's name and creation time.
    error:         None, or why the item could not be read (then ``label`` is "", ``probabilities``
                   empty, ``decision`` None and ``score`` NaN — None in ``to_dict()``).
    """

    item: str
    label: str
    probabilities: dict[str, float]
    decision: bool | None
    score: float | None
    threshold: float | None

    audit_private: ClassVar[tuple[str, ...]] = ("item",)  # file names often carry patient ids


class Explanation(BaseExplanation):
    """Grad-CAM for one image: ``heatmap`` (H, W) in [0, 1] at the model's input size, ``overlay`` RGB uint8,
    ``image`` the model's view of the input (uint8, H, W, 3), and the class explained with its probability.
    ``to_dict()`` gives the heatmap as nested lists (3 decimals) and the overlay as a base64 PNG."""

    heatmap: np.ndarray
    overlay: np.ndarray
    image: np.ndarray
    target: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        """Return the explanation as JSON-serialisable data (heatmap lists, overlay as base64 PNG)."""
        import base64
        import io

        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(self.overlay).save(png, format="PNG")
        return {"model_version": self.model_version, "target": self.target, "probability": float(self.probability),
                "heatmap": np.round(self.heatmap.astype(float), 3).tolist(),
                "overlay_png_base64": base64.b64encode(png.getvalue()).decode("ascii")}


class ImageInput(BaseModel):
    """One image in an API request: its bytes (PNG, JPEG or DICOM) in base64, and an optional name."""

    model_config = ConfigDict(extra="forbid")

    data_base64: str = Field(..., description="the file's bytes, base64-encoded (PNG, JPEG or DICOM)")
    name: str = Field("", description="a name for the image in results and errors (e.g. its file name)")

    @field_validator("data_base64")
    @classmethod
    def _is_base64(cls, value: str) -> str:
        import base64
        import binascii

        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("data_base64 is not valid base64; encode the file's bytes with base64") from None
        return value


class MedicalRequest(PredictRequest):
    """API request body: ``{"images": [{"data_base64": "...", "name": "a.png"}], "threshold": null}``."""

    images: list[ImageInput] = Field(..., min_length=1, max_length=256)
    threshold: float | None = Field(None, ge=0, le=1, description="binary operating point (default: the bundle's)")

    def to_items(self) -> tuple[list[Any], dict[str, Any]]:
        """Return the decoded bytes and ``names`` / ``threshold`` for :meth:`MedicalClassifier.predict`."""
        import base64

        items = [base64.b64decode(im.data_base64) for im in self.images]
        names = [im.name or f"image {i}" for i, im in enumerate(self.images)]
        return items, {"names": names, "threshold": self.threshold}


#: the exported graph's input (float32 pixels on the 0-255 scale, N x C x S x S) and the batch ONNX Runtime runs
INPUT_NAME = "pixels"
BATCH = 64


def run_session(session, pixels: np.ndarray, batch: int = BATCH) -> dict[str, np.ndarray]:
    """Return ``{output name: array}`` of an ONNX Runtime session on uint8 ``pixels`` (N, C, S, S), in batches."""
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list] = {n: [] for n in names}
    for i in range(0, len(pixels), batch):
        for n, v in zip(names, session.run(names, {INPUT_NAME: pixels[i:i + batch].astype(np.float32)})):
            parts[n].append(v)
    return {n: np.concatenate(v) for n, v in parts.items()}


class MedicalClassifier(Predictor):
    """A trained medical image classifier loaded from a bundle (the core :class:`~lepton_apps.predictor.Predictor`)."""

    domain = "medical"
    result_type = Prediction
    request_schema = MedicalRequest
    chunk_size = 256

    def __init__(self, bundle, model, policy):
        self.bundle = bundle
        self.model = model
        self.policy = policy
        info = bundle.load_json("model.json")
        self.image_size = int(info["image_size"])
        self.channels = int(info["channels"])
        self.backbone = info["backbone"]
        self.task = bundle.task
        self.label_names = bundle.label_names
        self.calibration = bundle.load_json("calibration.json")
        self.temperature = float(self.calibration["temperature"])
        self.thresholds = list(self.calibration["thresholds"])
        self.bundle_version = f"{bundle.path.name}@{bundle.metadata.get('created', '?')}"
        self.backend, self.export, self.session, self.backend_note = "torch", None, None, None
        self.model_version = f"{self.bundle_version}/torch"

    @classmethod
    def load(cls, ref: str | os.PathLike = "medical:latest", *, home: str | os.PathLike | None = None,
             device: str = "auto", backend: str = "auto", export: str | os.PathLike | None = None) -> MedicalClassifier:
        """Return the classifier stored in a bundle folder, registry name or alias (checksums verified).

        ``backend``: how :meth:`predict` runs the network — "torch" (PyTorch), "onnx" (the fp32 ONNX export, same
        probabilities within 1e-4, several times faster on a CPU), "int8" (the static int8 export, only where it
        passed the accuracy gate; else fp32 with a warning saying by how much it missed) or "auto" (onnx on a CPU
        with onnxruntime installed, else torch). The export is built on first use into the per-machine cache
        (``$LEPTON_CACHE/exports``) or taken from ``export`` (a folder written by ``lepton-apps medical export``
        from this bundle). ``model_version`` ends with the backend that answers (``…/onnx-fp32``). Grad-CAM
        (:meth:`explain`) and monitoring features always run in PyTorch."""
        from lepton_apps.bundle import load_bundle
        from lepton_apps.device import DevicePolicy
        from lepton_apps.registry import Registry

        from .model import MedicalNet, create_backbone

        bundle = load_bundle(Registry(home).resolve(ref, domain="medical"), domain="medical")
        info = bundle.load_json("model.json")
        net = MedicalNet(create_backbone(info["backbone"], int(info["num_classes"])), info["mean"], info["std"])
        net.load_state_dict(bundle.load_torch("model.safetensors"))
        policy = DevicePolicy.resolve(device, "auto")
        clf = cls(bundle, policy.prepare_model(net).eval(), policy)
        clf.use_backend(backend, export)
        return clf

    def use_backend(self, backend: str = "auto", export: str | os.PathLike | None = None) -> str:
        """Switch how :meth:`predict` runs the network (see :meth:`load`); return the backend that answers now
        (also ``self.backend``): ``torch``, ``onnx-fp32`` or ``onnx-int8`` (``-cuda`` with ONNX Runtime on a GPU)."""
        import warnings

        from lepton_apps.export import (ExportError, backend_label, cached_export, choose_backend, export_for,
                                        providers_for)

        asked = backend or "auto"
        chosen = choose_backend(asked, self.policy.device.type)
        self.backend_note = None
        found = None
        if export is not None:
            found = export_for(self.bundle, export, asked)
        elif chosen in ("onnx", "int8"):
            try:
                found = cached_export(self.bundle, "int8" if chosen == "int8" else "fp32")
            except Exception as exc:  # noqa: BLE001 - auto falls back to PyTorch on any export failure
                if chosen != "int8" or not isinstance(exc, ExportError):
                    if asked != "auto":
                        raise
                    self.backend_note = f"predicting with PyTorch: the ONNX export failed ({type(exc).__name__}: {exc})"
                    warnings.warn(self.backend_note, stacklevel=2)
                else:  # the gate refused int8: keep fp32, and say why
                    self.backend_note = f"int8 refused, predicting with fp32 ONNX: {exc.what}"
                    warnings.warn(self.backend_note, stacklevel=2)
                    found = cached_export(self.bundle, "fp32")
        self.export = found
        self.session = None if found is None else found.session(providers_for(self.policy.device.type))
        self.backend = backend_label("torch" if found is None else "onnx", found)
        self.model_version = f"{self.bundle_version}/{self.backend}"
        return self.backend

    @property
    def threshold(self) -> float | None:
        """The binary operating point (P(positive) >= threshold is positive), else None."""
        return self.thresholds[0] if self.task == "binary" else None

    # -- prediction -----------------------------------------------------------------------
    def preprocess(self, item: Any, name: str | None = None) -> np.ndarray:
        """Return ``item`` as the model's uint8 input (C, S, S)."""
        return prepare(item, self.image_size, self.channels, name=name)

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities (n, k) for uint8 model inputs (n, C, S, S)."""
        if self.session is not None:
            return run_session(self.session, pixels)["probabilities"].astype(np.float64)
        from .model import predict_logits

        return probabilities(predict_logits(self.model, pixels, self.policy), self.task, self.temperature)

    def predict(self, items: Any, *, threshold: float | None = None, batch_size: int = 64,
                names: Sequence[str] | None = None) -> Prediction | list[Prediction]:
        """Return a Prediction per item (a single Prediction for a single item).

        Items are paths, bytes, PIL images, numpy arrays or pydicom Datasets. In a list, an
        unreadable item gets a Prediction whose ``error`` says why (the others are scored), so the
        results line up one to one with the items; a single unreadable item raises DataError
        naming it. ``threshold`` overrides the binary operating point; ``names`` label the items
        in results and errors (e.g. the file names of uploaded bytes).
        """
        single = not isinstance(items, (list, tuple))
        seq = [items] if single else list(items)
        names = list(names) if names is not None else [_name(it, i) for i, it in enumerate(seq)]
        if len(names) != len(seq):
            raise DataError(f"got {len(names)} names for {len(seq)} items", where="predict(names=…)",
                            fix="pass one name per item, or no names")
        if single:
            pixels = self.preprocess(seq[0], names[0])[None]
            return self._result(names[0], self.predict_pixels(pixels)[0], threshold)
        pixels = np.zeros((len(seq), self.channels, self.image_size, self.image_size), np.uint8)
        errors: list[str | None] = [None] * len(seq)
        for i, (it, n) in enumerate(zip(seq, names)):
            try:
                pixels[i] = self.preprocess(it, n)
            except LeptonError as exc:
                errors[i] = str(exc)
        good = [i for i, e in enumerate(errors) if e is None]
        results: list[Prediction | None] = [None] * len(seq)
        for start in range(0, len(good), batch_size):
            rows = good[start:start + batch_size]
            for i, p in zip(rows, self.predict_pixels(pixels[rows])):
                results[i] = self._result(names[i], p, threshold)
        for i, e in enumerate(errors):
            if e is not None:
                thr = float(self.threshold if threshold is None else threshold) if self.task == "binary" else None
                results[i] = Prediction(item=names[i], label="", probabilities={}, decision=None, score=float("nan"),
                                        threshold=thr, model_version=self.model_version, error=e)
        return results

    def _result(self, name: str, p: np.ndarray, threshold: float | None) -> Prediction:
        probs = {c: float(v) for c, v in zip(self.label_names, p)}
        if self.task == "binary":
            thr = float(self.threshold if threshold is None else threshold)
            decision = bool(p[1] >= thr)
            return Prediction(item=name, label=self.label_names[int(decision)], probabilities=probs,
                              decision=decision, score=float(p[1]), threshold=thr, model_version=self.model_version)
        if self.task == "multilabel":
            flagged = [c for c, v, t in zip(self.label_names, p, self.thresholds) if v >= t]
            return Prediction(item=name, label="|".join(flagged), probabilities=probs, decision=bool(flagged),
                              score=float(p.max()), threshold=None, model_version=self.model_version)
        return Prediction(item=name, label=self.label_names[int(p.argmax())], probabilities=probs, decision=None,
                          score=float(p.max()), threshold=None, model_version=self.model_version)

    # -- explanation ----------------------------------------------------------------------
    def evaluate(self, data: Any = None, *, out: str | os.PathLike | None = None,
                 split: str | None = None) -> Evaluation:
        """Return AUC (with a bootstrap CI), accuracy, sensitivity / specificity at the bundle's operating point and
        calibration on labelled ``data``; with ``out`` also write report.json and the plots there."""
        from lepton_apps.errors import ConfigError

        from .evaluate import evaluate_classifier, summary

        if data is None:
            raise ConfigError("no data to evaluate on", fix="pass a folder of class folders, a manifest.csv or an .npz")
        report = evaluate_classifier(self, data, split=split, out=out)
        return Evaluation(metrics=report, summary=summary(report), folder=Path(out) if out else None)

    def explain(self, item: Any, target: str | int | None = None, *, name: str | None = None) -> Explanation:
        """Return the Grad-CAM heatmap and overlay for ``item`` (default target: the predicted class,
        or the positive class for binary models)."""
        import torch
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from .model import gradcam_target_layer

        x = self.preprocess(item, name or _name(item, 0))
        probs = self.predict_pixels(x[None])[0]
        if target is None:
            idx = 1 if self.task == "binary" else int(probs.argmax())
        elif isinstance(target, str):
            if target not in self.label_names:
                raise DataError(f"unknown class {target!r}", where="explain(target=…)",
                                fix=f"use one of {self.label_names}")
            idx = self.label_names.index(target)
        else:
            idx = int(target)
        tensor = torch.from_numpy(np.array(x[None], dtype=np.float32)).to(self.policy.device)
        with GradCAM(model=self.model, target_layers=[gradcam_target_layer(self.model, self.image_size)]) as cam:
            heat = cam(input_tensor=tensor, targets=[ClassifierOutputTarget(idx)])[0]
        heat = np.nan_to_num(np.asarray(heat, dtype=np.float32))
        image = np.repeat(x.transpose(1, 2, 0), 3 // x.shape[0], axis=2) if x.shape[0] == 1 else x.transpose(1, 2, 0)
        overlay = show_cam_on_image(image.astype(np.float32) / 255, heat, use_rgb=True, image_weight=0.6)
        return Explanation(heatmap=heat, overlay=overlay, image=np.ascontiguousarray(image),
                           target=self.label_names[idx], probability=float(probs[idx]), model_version=self.model_version)

    # -- monitoring -----------------------------------------------------------------------
    def monitor_window(self, data: Any) -> MonitorWindow:
        """Return what the model sees and says for ``data`` (a folder, a manifest.csv, a MedMNIST .npz, a
        ``path`` table or a list of images): per readable image its statistics (height, width, mode, mean /
        std intensity, shares of saturated and black pixels), the backbone's pooled penultimate-layer
        features and the calibrated probabilities (binary: ``score``; else one ``probabilities.<class>`` column
        per class — a served result's field names), and the count of images that could not be read."""
        from .monitoring import window, window_items

        items, names = window_items(data)
        return window(self.model, self.policy, items, names, size=self.image_size, channels=self.channels,
                      task=self.task, temperature=self.temperature, label_names=self.label_names)

    # -- batch ----------------------------------------------------------------------------
    def predict_file(self, source: str | os.PathLike, output: str | os.PathLike, *, resume: bool = True,
                     progress: bool = True, chunk_size: int | None = None, **options: Any):
        """Score a folder (every file, recursively) or a manifest CSV (``path`` column) into ``output``.

        Returns the core :class:`~lepton_apps.batch.BatchResult`. Resumable: a killed run re-uses
        the finished chunks. One output row per file or manifest row; unreadable files get an ``error``.
        """
        from lepton_apps.batch import run_batch

        source = Path(source)
        if source.is_file() and source.suffix.lower() == ".csv":
            header = pd.read_csv(source, nrows=0).columns
            if "path" not in header:
                raise DataError("the manifest has no 'path' column", where=str(source),
                                fix="add a header with a 'path' column (other columns are carried along)")
            return run_batch(source, output, _ManifestScorer(self, source.parent), resume=resume, progress=progress,
                             chunk_size=chunk_size or self.chunk_size, **options)
        return run_batch(source, output, self.predict_frame, resume=resume, progress=progress,
                         chunk_size=chunk_size or self.chunk_size, file_glob="*", **options)

    def predict_frame(self, frame: pd.DataFrame, base_dir: str | os.PathLike | None = None) -> pd.DataFrame:
        """Return one row per input row of a ``path`` frame: path, prediction, p_<class>, decision,
        threshold, model_version, error.

        A file that cannot be read becomes a row with its ``error`` text; the others are scored.
        Relative paths are resolved against ``base_dir`` (the manifest's folder).
        """
        n = len(frame)
        pixels = np.zeros((n, self.channels, self.image_size, self.image_size), np.uint8)
        errors: list[str | None] = [None] * n
        for i, p in enumerate(frame["path"].astype(str)):
            path = Path(p)
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
            try:
                pixels[i] = self.preprocess(path, name=p)
            except LeptonError as exc:
                errors[i] = str(exc)
        ok = np.array([e is None for e in errors])
        out = pd.DataFrame({"path": frame["path"].astype(str).to_numpy()}, index=range(n))
        out["prediction"] = pd.Series([None] * n, dtype=object)
        for c in self.label_names:
            out[f"p_{c}"] = np.nan
        out["decision"] = pd.Series([None] * n, dtype=object)
        if ok.any():
            probs = self.predict_pixels(pixels[ok])
            rows = [self._result("", p, None) for p in probs]
            idx = np.flatnonzero(ok)
            out.loc[idx, "prediction"] = [r.label for r in rows]
            for j, c in enumerate(self.label_names):
                out.loc[idx, f"p_{c}"] = probs[:, j]
            out.loc[idx, "decision"] = [r.decision for r in rows]
        out["threshold"] = self.threshold if self.threshold is not None else np.nan
        out["model_version"] = self.model_version
        out["error"] = errors
        return out

    score_frame = predict_frame  # the name used before the core predictor contract


class _ManifestScorer:
    """The batch driver's score function for a manifest: paths resolved against the manifest's folder."""

    def __init__(self, clf: MedicalClassifier, base: Path):
        self.clf, self.base = clf, base
        self.__qualname__ = "MedicalClassifier.predict_file"

    def __call__(self, chunk: pd.DataFrame) -> pd.DataFrame:
        return self.clf.predict_frame(chunk, base_dir=self.base)


def _name(item: Any, i: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    return getattr(item, "filename", None) or f"item {i} ({type(item).__name__})"


def predict_source(bundle: str | os.PathLike, source: str | os.PathLike, output: str | os.PathLike, *,
                   resume: bool = True, progress: bool = True, chunk_size: int = 256, home=None):
    """Load ``bundle`` and score ``source`` into ``output`` with :meth:`MedicalClassifier.predict_file`."""
    return MedicalClassifier.load(bundle, home=home).predict_file(source, output, resume=resume, progress=progress,
                                                                  chunk_size=chunk_size)


def display_image(item: Any, name: str | None = None) -> np.ndarray:
    """Return ``item`` as a uint8 image for display (DICOM windowed), downscaled to at most 768 px."""
    img = read_image(item, name=name)
    side = max(img.shape[:2])
    if side > 768:
        scale = 768 / side
        from PIL import Image

        h, w = int(img.shape[0] * scale), int(img.shape[1] * scale)
        img = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BOX))
    return img


__all__ = ["MedicalClassifier", "Prediction", "Explanation", "predict_source", "display_image",
           "resize", "to_channels"]
