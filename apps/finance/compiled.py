"""LightGBM models compiled to native code with ``lleaves`` (LLVM), for fast batch and online scoring.

LightGBM walks its trees through a generic interpreter; ``lleaves`` turns the same model text into
machine code for this CPU and gives the same scores (to float rounding). On the 2-core benchmark
machine that scores 1M rows × 175 trees about 7× faster (see the finance README). Compiling takes
seconds, so the shared library is cached per model and per machine under
``$LEPTON_CACHE/finance-compiled`` (default ``~/.cache/lepton-apps``); bundles stay portable
(the compiled file is never written into a bundle).

``lleaves`` is optional (``pip install 'lepton-apps[fast]'``); without it scoring uses LightGBM.
"""
from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np

from lepton_apps.errors import DependencyError
from lepton_apps.io import cache_dir

MODES = ("auto", "yes", "no")
#: with ``compiled="auto"`` a batch at least this large compiles the model (when not cached yet):
#: compiling costs about as much as LightGBM scoring 1M rows once, and the result is cached.
AUTO_COMPILE_ROWS = 250_000


def available() -> str | None:
    """Return None when models can be compiled here, else the reason they cannot."""
    try:
        import lleaves  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except Exception as exc:  # ImportError, or a broken llvmlite build
        return f"lleaves is not usable ({type(exc).__name__}: {exc})"
    return None


def _cache_file(model_text: str) -> Path:
    import lleaves
    import llvmlite
    import llvmlite.binding as llvm

    key = hashlib.sha256()
    for part in (model_text, platform.machine(), llvm.get_host_cpu_name(), llvmlite.__version__,
                 getattr(lleaves, "__version__", "?")):
        key.update(part.encode())
        key.update(b"\0")
    return cache_dir("finance-compiled") / f"{key.hexdigest()[:32]}.so"


def is_cached(model_text: str) -> bool:
    """True when this model's compiled library is already in the cache (loading it is cheap)."""
    return available() is None and _cache_file(model_text).is_file()


class CompiledModel:
    """A compiled LightGBM model: ``predict(x, threads)`` gives the booster's probabilities."""

    def __init__(self, model, path: Path, seconds: float):
        self._model = model
        self.path = path
        self.compile_seconds = seconds

    def predict(self, x: np.ndarray, threads: int = 0) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64)
        return self._model.predict(x, n_jobs=threads or (os.cpu_count() or 1))


def compile_model(model_text: str) -> CompiledModel:
    """Return the compiled model of LightGBM ``model_text``, from the cache or compiled now (and cached).

    Raises DependencyError when lleaves is not installed or cannot compile.
    """
    import time

    reason = available()
    if reason:
        raise DependencyError(f"cannot compile the fraud model: {reason}",
                              fix="pip install 'lepton-apps[fast]' (lleaves + llvmlite<0.45), "
                                  "or score with compiled='no' (LightGBM, slower)")
    import lleaves

    target = _cache_file(model_text)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model_file = Path(tmp) / "model.txt"
        model_file.write_text(model_text)
        model = lleaves.Model(model_file=str(model_file))
        try:
            if target.is_file():
                model.compile(cache=str(target))
            else:
                partial = Path(tmp) / "model.so"
                model.compile(cache=str(partial))
                os.replace(partial, target)  # atomic: a concurrent process sees no half-written library
        except Exception as exc:
            raise DependencyError(f"lleaves could not compile the fraud model ({type(exc).__name__}: {exc})",
                                  where=str(target),
                                  fix="check that llvmlite<0.45 is installed (newer llvmlite dropped the API "
                                      "lleaves uses), or score with compiled='no'") from exc
    return CompiledModel(model, target, time.perf_counter() - t0)


def try_compile(model_text: str) -> tuple[CompiledModel | None, str]:
    """Return (compiled model or None, a one-line status for reports); warn instead of failing."""
    try:
        model = compile_model(model_text)
    except DependencyError as exc:
        warnings.warn(f"scoring with LightGBM instead of compiled code: {exc.what}", stacklevel=3)
        return None, f"LightGBM (compiled scoring unavailable: {exc.what})"
    return model, f"compiled with lleaves ({model.compile_seconds:.1f}s to load or compile)"
