"""Model bundles: a folder of weights and artefacts plus ``bundle.json`` with checksums.

A bundle is everything needed to use a trained model, and nothing that executes code when
loaded: safetensors for torch weights, LightGBM's text format for trees, JSON / Parquet /
NumPy (``allow_pickle=False``) for the rest. ``bundle.json`` records the format version,
domain, task, label names, preprocessing, training config, metrics, library versions, a
fingerprint of the training data, the creation time and the sha256 of every file.

Writing::

    with BundleWriter("out/my-model", domain="medical", task="binary") as w:
        w.save_torch("model.safetensors", model.state_dict())
        w.save_json("thresholds.json", {...})
        w.metadata.update(label_names=["normal", "pneumonia"], metrics={...})

The folder is built under a temporary name and renamed into place when the ``with`` block
ends without error, so a crash never leaves a half-written bundle.

Reading::

    bundle = load_bundle("out/my-model")    # checks version + every checksum
    state = bundle.load_torch("model.safetensors")
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lepton_apps.errors import BundleError
from lepton_apps.io import atomic_write_json, sha256_file

FORMAT_VERSION = 1
MANIFEST = "bundle.json"
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".bin"}
_LIBRARIES = ("lepton-apps", "torch", "torchvision", "timm", "transformers", "sentence-transformers",
              "lightgbm", "scikit-learn", "numpy", "pandas")


def library_versions(names=_LIBRARIES, python: bool = True) -> dict[str, str]:
    """Return the installed versions of ``names`` (by default the libraries a bundle's behaviour depends on),
    with Python's first unless ``python`` is False; a library that is not installed is left out."""
    versions = {"python": platform.python_version()} if python else {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def fingerprint_data(data: Any) -> str:
    """Return a short sha256 fingerprint of training data.

    Accepts a file or folder path (hashes relative names and bytes of every file), a pandas
    DataFrame (row hashes), a numpy array (bytes + shape + dtype), or a list of these.
    """
    h = hashlib.sha256()
    _feed(h, data)
    return "sha256:" + h.hexdigest()[:32]


def _feed(h, data: Any) -> None:
    import numpy as np

    if isinstance(data, (str, os.PathLike)) and Path(data).exists():
        path = Path(data)
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            h.update(str(f.relative_to(path) if f != path else f.name).encode())
            h.update(sha256_file(f).encode())
    elif hasattr(data, "to_numpy") and hasattr(data, "columns"):  # DataFrame
        import pandas as pd

        h.update(json.dumps([str(c) for c in data.columns]).encode())
        h.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    elif isinstance(data, np.ndarray):
        h.update(f"{data.shape}{data.dtype}".encode())
        flat = np.ascontiguousarray(data).reshape(-1)  # no copy when already contiguous (a memmap stays on disk)
        step = max(1, (64 << 20) // max(flat.itemsize, 1))
        for start in range(0, flat.size, step):  # in 64 MB slices: same digest as the whole buffer at once
            h.update(memoryview(flat[start:start + step]).cast("B"))
    elif isinstance(data, (list, tuple)):
        for item in data:
            _feed(h, item)
    else:
        h.update(json.dumps(data, sort_keys=True, default=str).encode())


class BundleWriter:
    """Builds a bundle in a temporary sibling folder and moves it into place on success."""

    def __init__(self, path: str | os.PathLike, *, domain: str, task: str, overwrite: bool = False, **metadata: Any):
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise BundleError(f"a bundle already exists at {self.path}",
                              fix="choose another output path or pass overwrite=True")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self.overwrite = overwrite
        self.metadata: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "domain": domain,
            "task": task,
            "label_names": [],
            "preprocessing": {},
            "training_config": {},
            "metrics": {},
            "data_fingerprint": None,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "libraries": library_versions(),
        }
        self.metadata.update(metadata)

    @property
    def workdir(self) -> Path:
        """The temporary folder being filled (for writers that need a path, e.g. LightGBM)."""
        return self._tmp

    def file(self, name: str) -> Path:
        """Return the path where artefact ``name`` should be written (creates parent folders)."""
        if Path(name).is_absolute() or ".." in Path(name).parts or name == MANIFEST:
            raise BundleError(f"invalid artefact name {name!r}", fix="use a relative name inside the bundle")
        if Path(name).suffix.lower() in PICKLE_SUFFIXES:
            raise BundleError(f"artefact {name!r} has a pickle suffix; bundles never hold pickles",
                              fix="save torch weights with save_torch (safetensors) and other data as JSON/Parquet/NumPy")
        target = self._tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def save_torch(self, name: str, state_dict: dict, metadata: dict[str, str] | None = None) -> Path:
        """Write a torch state dict as safetensors; return the file path."""
        from safetensors.torch import save_file

        if not name.endswith(".safetensors"):
            raise BundleError(f"torch weights must be saved as .safetensors, not {name!r}", fix="rename the artefact")
        tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
        target = self.file(name)
        save_file(_untie(tensors), str(target), metadata=metadata)
        return target

    def save_json(self, name: str, obj: Any) -> Path:
        """Write ``obj`` as JSON; return the file path."""
        target = self.file(name)
        target.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", encoding="utf-8")
        return target

    def save_numpy(self, name: str, array) -> Path:
        """Write a numpy array as ``.npy`` (never with pickled objects); return the file path."""
        import numpy as np

        target = self.file(name)
        with open(target, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
        return target

    def save_parquet(self, name: str, df) -> Path:
        """Write a DataFrame as Parquet; return the file path."""
        target = self.file(name)
        df.to_parquet(target, index=False)
        return target

    def save_text(self, name: str, text: str) -> Path:
        """Write UTF-8 text (e.g. a LightGBM model dump); return the file path."""
        target = self.file(name)
        target.write_text(text, encoding="utf-8")
        return target

    def copy_file(self, src: str | os.PathLike, name: str | None = None) -> Path:
        """Copy an existing file (a PNG plot, a tokenizer file…) into the bundle."""
        target = self.file(name or Path(src).name)
        shutil.copyfile(src, target)
        return target

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        self.finalize()

    def finalize(self) -> Path:
        """Checksum every file, write ``bundle.json``, and move the bundle into place."""
        files = {}
        for f in sorted(p for p in self._tmp.rglob("*") if p.is_file()):
            rel = f.relative_to(self._tmp).as_posix()
            files[rel] = {"sha256": sha256_file(f), "bytes": f.stat().st_size}
        self.metadata["files"] = files
        atomic_write_json(self._tmp / MANIFEST, _jsonable(self.metadata))
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.path)
        return self.path


class Bundle:
    """A verified, loaded bundle: its metadata and typed readers for its artefacts."""

    def __init__(self, path: Path, metadata: dict[str, Any]):
        self.path = path
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, domain={self.domain!r}, task={self.task!r})"

    domain = property(lambda self: self.metadata["domain"])
    task = property(lambda self: self.metadata["task"])
    label_names = property(lambda self: list(self.metadata.get("label_names") or []))
    metrics = property(lambda self: dict(self.metadata.get("metrics") or {}))
    preprocessing = property(lambda self: dict(self.metadata.get("preprocessing") or {}))
    training_config = property(lambda self: dict(self.metadata.get("training_config") or {}))

    def file(self, name: str) -> Path:
        """Return the path of artefact ``name``; BundleError if the bundle has no such file."""
        if name not in self.metadata.get("files", {}):
            raise BundleError(f"the bundle has no file {name!r}", where=str(self.path),
                              fix=f"files present: {', '.join(self.metadata.get('files', {})) or 'none'}")
        return self.path / name

    def has(self, name: str) -> bool:
        """Return True if the bundle holds artefact ``name``."""
        return name in self.metadata.get("files", {})

    def load_torch(self, name: str = "model.safetensors", device: str = "cpu") -> dict:
        """Return the state dict stored in a safetensors artefact."""
        from safetensors.torch import load_file

        return load_file(str(self.file(name)), device=device)

    def load_json(self, name: str) -> Any:
        """Return the parsed JSON artefact ``name``."""
        return json.loads(self.file(name).read_text(encoding="utf-8"))

    def load_numpy(self, name: str):
        """Return the numpy array artefact ``name`` (pickle disabled)."""
        import numpy as np

        return np.load(self.file(name), allow_pickle=False)

    def load_parquet(self, name: str):
        """Return the Parquet artefact ``name`` as a DataFrame."""
        import pandas as pd

        return pd.read_parquet(self.file(name))

    def read_text(self, name: str) -> str:
        """Return the text artefact ``name``."""
        return self.file(name).read_text(encoding="utf-8")


def read_json_card(file: Path, *, fix: str) -> dict[str, Any]:
    """Return the JSON object in ``file`` (a bundle's manifest, an export's card); BundleError naming the file,
    with ``fix``, when it is not valid JSON."""
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file.name} is not valid JSON ({exc})", where=str(file.parent), fix=fix) from None


def load_bundle(path: str | os.PathLike, *, domain: str | None = None, verify: bool = True) -> Bundle:
    """Load and verify a bundle folder; return a :class:`Bundle`.

    Checks that ``bundle.json`` exists and parses, that the format version is one this
    version reads, that ``domain`` matches when given, and (``verify=True``) that every
    listed file exists with the recorded size and sha256. Refuses pickled models.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise BundleError(_pickle_refusal(path))
    if not path.exists():
        raise BundleError(f"no model bundle at {path}", fix="pass the folder written by 'train', or a registry name (see 'lepton-apps models list')")
    if not path.is_dir():
        raise BundleError(f"{path} is a file, not a bundle folder", fix="pass the bundle folder that holds bundle.json")
    manifest = path / MANIFEST
    if not manifest.is_file():
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise BundleError(_pickle_refusal(path / pickles[0]))
        raise BundleError(f"{path} has no {MANIFEST}, so it is not a Lepton Apps bundle",
                          fix="pass a folder written by 'lepton-apps <domain> train'")
    metadata = read_json_card(manifest, fix="the bundle is damaged; retrain it or restore it from a copy")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle format version {version!r} is not supported (this lepton-apps reads version {FORMAT_VERSION})",
                          where=str(manifest), fix="retrain the model with this version, or install the lepton-apps version that wrote it")
    if domain is not None and metadata.get("domain") != domain:
        raise BundleError(f"this is a {metadata.get('domain')!r} bundle, not a {domain!r} one", where=str(path),
                          fix=f"pass a bundle trained by 'lepton-apps {domain} train'")
    if verify:
        verify_files(path, metadata)
    return Bundle(path, metadata)


def verify_files(path: Path, metadata: dict[str, Any]) -> None:
    """Raise BundleError naming the first missing, truncated, tampered or unlisted file."""
    files = metadata.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{MANIFEST} lists no files", where=str(path), fix="the bundle is damaged; retrain it")
    for name, info in files.items():
        f = path / name
        if not f.is_file():
            raise BundleError(f"file {name!r} listed in {MANIFEST} is missing", where=str(path),
                              fix="restore the complete bundle folder or retrain")
        size = f.stat().st_size
        if size != info.get("bytes"):
            raise BundleError(f"file {name!r} is {size} bytes but {info.get('bytes')} were written (truncated or replaced)",
                              where=str(path), fix="restore the complete bundle folder or retrain")
        if sha256_file(f) != info.get("sha256"):
            raise BundleError(f"file {name!r} does not match its sha256 checksum (modified after training)",
                              where=str(path), fix="restore the original file or retrain; never edit bundle files by hand")
    for f in path.rglob("*"):
        rel = f.relative_to(path).as_posix()
        if f.is_file() and rel != MANIFEST and rel not in files and f.suffix.lower() in PICKLE_SUFFIXES:
            raise BundleError(f"unlisted pickle file {rel!r} found in the bundle", where=str(path),
                              fix="remove it; bundles never load pickles")


def _pickle_refusal(path: Path) -> str:
    return (f"refusing to load {path.name}: '{path.suffix}' files are Python pickles, which can run arbitrary code "
            f"when loaded ({path}). Convert it once in a trusted session: "
            "state = torch.load(path, weights_only=True); safetensors.torch.save_file(state, 'model.safetensors'), "
            "then build a bundle with the domain's 'train' or BundleWriter")


def _untie(tensors: dict) -> dict:
    """Clone tensors that share storage (tied weights), which safetensors refuses to save."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else id(v)
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out


def _json_default(obj: Any):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))
