"""Export folders: a model converted to ONNX, checked against its source bundle, with checksums.

An export folder is bundle-like: the ONNX model (and any files it needs, e.g. a tokenizer) plus
``export.json``, a card saying how it was produced — format, precision, the source bundle's name,
version and checksum, the producing libraries, the opset, input / output names and shapes, the
domain's feature list or preprocessing, and the check: the outputs of the exported model (run by
ONNX Runtime on the CPU) against the source model's outputs on the same rows, with the tolerance
and the measured max abs difference — and the sha256 of every file.

Writing (a domain converts its model and computes the reference outputs; the core runs the check)::

    path = write_export("out/fraud-onnx", model=onnx_model, source=bundle, precision="fp32",
                        inputs={"input": x}, reference={"probabilities": p}, tolerance=1e-5,
                        check_outputs=lambda outs: {"probabilities": outs["probabilities"][:, 1]},
                        check_data="validation rows of the bundle", card={"features": names})

An export whose outputs differ by more than the tolerance is refused (:class:`ExportError` with the
numbers) and nothing is written at ``out``: the folder is built under a temporary name and renamed
into place only after the check passed.

Reading::

    export = load_export("out/fraud-onnx")     # checks the format and every checksum
    session = export.session()                 # a fresh onnxruntime.InferenceSession

Backends. The medical and support predictors answer with PyTorch (``torch``), the fp32 ONNX export
(``onnx``) or the int8 one (``int8``), chosen by ``load(..., backend=…)`` / ``--backend``;
:func:`choose_backend` resolves ``auto`` (ONNX fp32 on a CPU with onnxruntime installed, measured
faster by bench/export_bench.py; PyTorch on a GPU or without onnxruntime). The export a backend
needs is either a folder the user exported (``export=DIR``, checked to come from the same bundle)
or one built on first use into the per-machine cache by the domain's own ``export`` (same check,
same int8 gate) — :func:`cached_export`. An int8 export the gate refused is remembered with its
numbers, and the predictor keeps fp32 and says why. The backend that answered is part of every
result's ``model_version`` (``bundle@created/onnx-int8``), hence of the audit log and metrics.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from lepton_apps.bundle import Bundle, _json_default, library_versions, read_json_card, verify_files
from lepton_apps.errors import BundleError, LeptonError, require
from lepton_apps.io import sha256_file

FORMAT_VERSION = 1
CARD = "export.json"
MODEL_FILE = "model.onnx"
PRECISIONS = ("fp32", "int8")
#: how a predictor runs its model: PyTorch, the fp32 ONNX export or the int8 one; auto picks (see choose_backend)
BACKENDS = ("auto", "torch", "onnx", "int8")
#: the export precision each ONNX backend runs
PRECISION_OF = {"onnx": "fp32", "int8": "int8"}
_EXPORT_LIBRARIES = ("onnx", "onnxruntime", "onnxmltools", "skl2onnx")


class ExportError(LeptonError):
    """An export was refused: its check failed, or the request cannot be exported as asked."""

    kind = "export error"


def source_info(bundle: Bundle) -> dict[str, Any]:
    """Return the card's ``source`` entry of a bundle: name, version, domain, path and checksum (the
    sha256 of its ``bundle.json``, which lists the sha256 of every bundle file)."""
    name = bundle.path.name
    return {"name": name, "version": f"{name}@{bundle.metadata.get('created', '?')}", "domain": bundle.domain,
            "path": str(bundle.path.resolve()), "checksum": "sha256:" + sha256_file(bundle.path / "bundle.json")}


def max_abs_difference(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Return ``{output name: max |reference - candidate|}``; a NaN in one but not the other counts as inf."""
    out = {}
    for name, ref in reference.items():
        if name not in candidate:
            raise ExportError(f"the exported model gives no output {name!r} to check",
                              fix=f"compare outputs the model has: {', '.join(candidate) or 'none'}")
        a = np.asarray(ref, dtype=np.float64)
        b = np.asarray(candidate[name], dtype=np.float64)
        if a.shape != b.shape:
            raise ExportError(f"output {name!r} has shape {b.shape} in the export but {a.shape} in the source model",
                              fix="export the same outputs the source model gives (a conversion bug)")
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        out[name] = float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
    return out


def no_spinning(options) -> None:
    """Have an ONNX Runtime session's threads sleep when a run ends instead of spinning for the next one.

    A spinning pool keeps the cores busy for a while after each run, and the Python and PyTorch work that
    follows (heads, scoring, the service's request handling) waits for them: on 2 cores each small PyTorch head
    after a support encoder run waited milliseconds (BENCHMARKS.md, "Support under concurrent load")."""
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")


def inference_session(model: Path | bytes, providers: list[str] | None = None):
    """Return an onnxruntime.InferenceSession (CPU unless ``providers``) of an ONNX file or its bytes."""
    ort = require("onnxruntime", feature="ONNX export", extra="fast")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings such as the declared-vs-actual shape notes are not errors here
    no_spinning(opts)
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def _tensor_info(values) -> list[dict[str, Any]]:
    return [{"name": v.name, "shape": [d if isinstance(d, int) else (d or None) for d in v.shape], "type": v.type}
            for v in values]


def write_export(out: str | os.PathLike, *, model, source: Bundle, precision: str,
                 inputs: Mapping[str, np.ndarray] | Callable[[Any], dict[str, np.ndarray]],
                 reference: Mapping[str, np.ndarray], tolerance: float,
                 check_data: str, check_outputs: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
                 card: Mapping[str, Any] | None = None, files: Mapping[str, str | os.PathLike] | None = None,
                 overwrite: bool = False) -> Path:
    """Write, check and move an export folder into place; return its path.

    ``model``: an ``onnx.ModelProto`` (or its bytes), saved as ``model.onnx``; ``files``: other files to
    copy in (``{name in the export: source path}``); ``card``: the domain's entries (features,
    preprocessing…). The check runs the saved model in a fresh ONNX Runtime CPU session on ``inputs``
    (``{input name: array}``, or a function of the session returning ``{output name: array}``, e.g. to
    run in batches) and compares its outputs (passed through ``check_outputs``, e.g. to pick one column)
    with ``reference``, the source model's outputs on the same rows described by ``check_data``.
    Raises :class:`ExportError` with the numbers, writing nothing at ``out``, when a difference
    exceeds ``tolerance``.
    """
    out = Path(out)
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}", fix=f"use one of {', '.join(PRECISIONS)}")
    if out.exists() and not overwrite:
        raise ExportError(f"something already exists at {out}", fix="choose another --out folder or pass overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # readable like any folder (mkdtemp makes it private), e.g. by a model server
    try:
        data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        (tmp / MODEL_FILE).write_bytes(data)
        for name, src in (files or {}).items():
            if Path(name).is_absolute() or ".." in Path(name).parts or name in (CARD, MODEL_FILE):
                raise ExportError(f"invalid file name {name!r} for an export", fix="use a relative name inside the folder")
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / name)
        session = inference_session(tmp / MODEL_FILE)
        if callable(inputs):
            got = inputs(session)
        else:
            got = dict(zip([o.name for o in session.get_outputs()], session.run(None, dict(inputs))))
        if check_outputs is not None:
            got = check_outputs(got)
        diffs = max_abs_difference(reference, got)
        worst = max(diffs.values()) if diffs else 0.0
        rows = int(len(next(iter(reference.values())))) if reference else 0
        if not worst <= tolerance:
            raise ExportError(
                f"the exported model's outputs differ from the source model's by up to {worst:.3g} "
                f"(per output: {', '.join(f'{k} {v:.3g}' for k, v in diffs.items())}), more than the tolerance "
                f"{tolerance:.3g}, on {rows:,} rows ({check_data}); nothing was written",
                where=str(out), fix="report this conversion problem; keep using the source bundle")
        opsets = _opsets(data)
        files_meta = {f.relative_to(tmp).as_posix(): {"sha256": sha256_file(f), "bytes": f.stat().st_size}
                      for f in sorted(p for p in tmp.rglob("*") if p.is_file())}
        meta = {
            "format": "onnx", "format_version": FORMAT_VERSION, "precision": precision, "model_file": MODEL_FILE,
            "source": source_info(source),
            "producer": {**library_versions(), **_export_library_versions()},
            "opset": opsets,
            "inputs": _tensor_info(session.get_inputs()), "outputs": _tensor_info(session.get_outputs()),
            **dict(card or {}),
            "check": {"data": check_data, "rows": rows, "outputs": list(reference), "tolerance": tolerance,
                      "max_abs_diff": worst, "max_abs_diff_per_output": diffs,
                      "runtime": "onnxruntime CPUExecutionProvider"},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files_meta,
        }
        (tmp / CARD).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n", encoding="utf-8")
        if out.exists():  # overwrite: swap the old folder aside, then remove it
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class Export:
    """A verified export folder: its card and a factory of ONNX Runtime sessions."""

    def __init__(self, path: Path, card: dict[str, Any]):
        self.path = path
        self.card = card
        self.providers: list[str] = ["CPUExecutionProvider"]  # of the last session() made

    def __repr__(self) -> str:
        return f"Export({str(self.path)!r}, precision={self.card.get('precision')!r})"

    @property
    def model_path(self) -> Path:
        """The ONNX model file."""
        return self.path / self.card.get("model_file", MODEL_FILE)

    def session(self, providers: list[str] | None = None):
        """Return a new ``onnxruntime.InferenceSession`` of the model (CPU unless ``providers`` says otherwise)."""
        session = inference_session(self.model_path, providers)
        self.providers = list(session.get_providers())
        return session


def load_export(path: str | os.PathLike) -> Export:
    """Load and verify an export folder; return an :class:`Export` (card + session factory).

    Raises BundleError when the folder or its card is missing, of another format version, or when
    any listed file is missing or differs from its recorded sha256 (the message names the file).
    """
    path = Path(path)
    card_file = path / CARD
    if not card_file.is_file():
        raise BundleError(f"{path} has no {CARD}, so it is not an export folder",
                          fix="pass a folder written by 'lepton-apps <domain> export'")
    card = read_json_card(card_file, fix="the export is damaged; export the bundle again")
    if card.get("format") != "onnx" or card.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"export format {card.get('format')!r} version {card.get('format_version')!r} is not supported "
                          f"(this lepton-apps reads onnx version {FORMAT_VERSION})", where=str(card_file),
                          fix="export the bundle again with this version")
    try:
        verify_files(path, card)
    except BundleError as exc:
        what = exc.what.replace("after training", "after export").replace("bundle.json", CARD)
        raise BundleError(what,
                          where=str(path), fix="export the bundle again with 'lepton-apps <domain> export'; "
                                               "never edit export files by hand") from None
    return Export(path, card)


def _opsets(data: bytes) -> dict[str, int]:
    onnx = require("onnx", feature="ONNX export", extra="fast")
    return {(o.domain or "ai.onnx"): int(o.version) for o in onnx.load_from_string(data).opset_import}


def _export_library_versions() -> dict[str, str]:
    return library_versions(_EXPORT_LIBRARIES, python=False)


# --------------------------------------------------------------------------- backends

def onnxruntime_missing() -> str | None:
    """Return None when ONNX Runtime can be imported here, else why not (for messages and fallbacks)."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as exc:  # ImportError, or a broken build
        return f"onnxruntime is not usable ({type(exc).__name__}: {exc})"
    return None


def choose_backend(requested: str | None, device_type: str, *, where: str = "--backend") -> str:
    """Return the backend to run: ``torch``, ``onnx`` or ``int8``.

    ``auto`` (or None): ``onnx`` on a CPU when onnxruntime is importable — fp32 ONNX Runtime gives the same
    outputs (within 1e-4) at several times eager PyTorch's speed (bench/export_bench.py) — else ``torch``;
    on a GPU ``torch`` (PyTorch's CUDA kernels; ask for ``onnx`` to run ONNX Runtime's CUDA provider).
    ``int8`` is not an automatic choice: it must pass the accuracy gate per bundle and is asked for explicitly.
    Raises ConfigError for an unknown name or int8 on a GPU, DependencyError when onnxruntime is missing.
    """
    from lepton_apps.errors import ConfigError, DependencyError

    requested = requested or "auto"
    if requested not in BACKENDS:
        raise ConfigError(f"unknown backend {requested!r}", where=where,
                          fix=f"use one of {', '.join(BACKENDS)} (auto: ONNX on CPU when onnxruntime is installed)")
    missing = onnxruntime_missing()
    if requested == "auto":
        return "onnx" if device_type == "cpu" and missing is None else "torch"
    if requested != "torch" and missing:
        raise DependencyError(f"the {requested} backend runs ONNX Runtime: {missing}", where=where,
                              fix="pip install 'lepton-apps[fast]' (onnxruntime), or use --backend torch")
    if requested == "int8" and device_type != "cpu":
        raise ConfigError(f"the int8 backend runs on the CPU only (device {device_type})", where=where,
                          fix="use --backend onnx or torch on a GPU, or --device cpu for int8")
    return requested


def backend_label(backend: str, export: "Export | None" = None) -> str:
    """Return how a result names its backend: ``torch``, ``onnx-fp32`` or ``onnx-int8`` (+ ``-cuda`` on a GPU)."""
    if backend == "torch" or export is None:
        return "torch"
    label = f"onnx-{export.card.get('precision', 'fp32')}"
    return label + ("-cuda" if export.providers and export.providers[0] != "CPUExecutionProvider" else "")


def providers_for(device_type: str) -> list[str]:
    """Return the ONNX Runtime execution providers for a device: CPU, or TensorRT / CUDA (then CPU) on a GPU.

    Raises DependencyError when a GPU is asked for and this onnxruntime build has no CUDA provider."""
    from lepton_apps.errors import DependencyError

    if device_type == "cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DependencyError(f"this onnxruntime ({ort.__version__}) has no CUDA provider (it has "
                              f"{', '.join(available)})", where="--backend onnx on a GPU",
                              fix="pip install onnxruntime-gpu in place of onnxruntime, or use --backend torch")
    return [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + ["CPUExecutionProvider"]


def _backend_exporter(bundle: Bundle) -> Callable[..., Any]:
    """Return the ``backend_export`` function of the domain that made ``bundle``; ExportError when it has none."""
    from lepton_apps.domains import available_domains

    spec = available_domains().get(bundle.domain)
    build = spec.backend_exporter() if spec is not None else None
    if build is None:
        raise ExportError(f"the {bundle.domain!r} domain has no ONNX export for its backends", where=str(bundle.path),
                          fix="use the torch backend")
    return build


def bundle_checksum(bundle: Bundle) -> str:
    """Return the checksum an export's card records for its source bundle (sha256 of bundle.json)."""
    return "sha256:" + sha256_file(bundle.path / "bundle.json")


def export_for(bundle: Bundle, path: str | os.PathLike, backend: str | None = None) -> Export:
    """Load an export folder the user passed and check it was made from ``bundle`` (BundleError otherwise) and,
    when ``backend`` is given, that it is what that backend runs (ConfigError: torch runs no export; onnx an fp32
    one, int8 an int8 one; auto / None take the folder's precision)."""
    from lepton_apps.errors import ConfigError

    if backend == "torch":
        raise ConfigError("--export names an ONNX export, but --backend torch asks for PyTorch", where="--export",
                          fix="leave --backend out (the export's precision decides), or drop --export")
    export = load_export(path)
    precision, wanted = export.card.get("precision"), PRECISION_OF.get(backend or "auto")
    if wanted is not None and wanted != precision:
        raise ConfigError(f"--backend {backend} asks for {wanted}, but the export at {path} is {precision}",
                          where="--export", fix=f"pass a {wanted} export, or leave --backend out")
    made_from = (export.card.get("source") or {}).get("checksum")
    if made_from != bundle_checksum(bundle):
        raise BundleError(f"the export at {path} was made from another bundle "
                          f"({(export.card.get('source') or {}).get('version', '?')}) than {bundle.path.name}",
                          where=str(path), fix=f"export {bundle.path.name} again, or load the bundle it was made from")
    return export


def cached_export(bundle: Bundle, precision: str) -> Export:
    """Return the ``precision`` export of ``bundle`` from the per-machine cache, building it on first use.

    The build is the domain's ``backend_export`` (:class:`~lepton_apps.domains.DomainSpec`) writing to the
    cache folder; its check and, for int8, its accuracy gate apply as for the ``export`` command. A refusal
    (ExportError) is remembered beside the folder with its message and raised again on later loads without
    re-measuring; delete the ``.refused.json`` file (or the cache) to try again."""
    from lepton_apps.io import cache_dir

    key = f"{bundle.domain}-{bundle_checksum(bundle).split(':')[1][:24]}-{precision}"
    folder = cache_dir("exports") / key
    refused = folder.with_name(key + ".refused.json")
    if folder.is_dir():
        try:
            return export_for(bundle, folder)
        except BundleError:
            pass  # damaged or foreign: build it again below
    if refused.is_file():
        record = json.loads(refused.read_text(encoding="utf-8"))
        raise ExportError(record["message"] + f" (measured {record.get('created', '?')}; delete {refused} to measure "
                          "again)", where=str(bundle.path), fix=record.get("fix") or "use the fp32 backend")
    build = _backend_exporter(bundle)
    try:
        build(bundle.path, folder, precision)
    except ExportError as exc:
        refused.write_text(json.dumps({"message": exc.what, "fix": exc.fix, "created": _dt.datetime.now(
            _dt.timezone.utc).isoformat(timespec="seconds"), "libraries": _export_library_versions()}, indent=2) + "\n",
            encoding="utf-8")
        raise
    return export_for(bundle, folder)
