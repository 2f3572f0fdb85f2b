"""Helpers shared by the hub and the domain pages: cached bundles and models, errors without tracebacks.

A page wraps each section in :func:`guarded` so that bad input, a damaged bundle or a bug shows
up as one ``st.error`` line, and the rest of the page still renders::

    with guarded("Scoring the file"):
        bundle = cached_bundle(path, domain="finance")
        ...
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from lepton_apps.bundle import MANIFEST, Bundle, load_bundle
from lepton_apps.domains import DomainSpec
from lepton_apps.errors import LeptonError

log = logging.getLogger("lepton_apps.ui")


def cached_bundle(path_str: str, domain: str | None = None) -> Bundle:
    """Return the verified bundle at ``path_str``, loaded once per process.

    The cache key includes the modification time of ``bundle.json``, so a bundle retrained in
    place is verified and loaded again. Raises BundleError (not cached) for a damaged bundle.
    """
    path = Path(path_str).expanduser().resolve()
    manifest = path / MANIFEST
    mtime_ns = manifest.stat().st_mtime_ns if manifest.is_file() else 0
    return _load_bundle_cached(str(path), mtime_ns, domain)


@st.cache_resource(show_spinner="Verifying the model bundle…", max_entries=32)
def _load_bundle_cached(path_str: str, mtime_ns: int, domain: str | None) -> Bundle:
    # mtime_ns is only part of the cache key (Streamlit would skip it if it began with '_').
    return load_bundle(path_str, domain=domain)


def cached_predictor(path_str: str | Path, domain: str, backend: str | None = None):
    """Return the :class:`~lepton_apps.predictor.Predictor` of the bundle at ``path_str``, loaded once per
    process for every page (keyed by the bundle's path, ``bundle.json`` modification time — so a bundle
    retrained in place is loaded again — and ``backend``, for the domains that have one: see
    :func:`backend_picker`). Raises BundleError (not cached) for a damaged bundle or one of another domain."""
    path = Path(path_str).expanduser().resolve()
    manifest = path / MANIFEST
    mtime_ns = manifest.stat().st_mtime_ns if manifest.is_file() else 0
    return _load_predictor_cached(str(path), mtime_ns, domain, backend)


@st.cache_resource(show_spinner="Loading the model…", max_entries=12)
def _load_predictor_cached(path_str: str, mtime_ns: int, domain: str, backend: str | None = None):
    from lepton_apps.predictor import load

    return load(path_str, domain=domain, backend=backend)


def backend_picker(key: str, label: str = "Backend", help_text: str | None = None) -> str:
    """Sidebar: how the model runs (auto, torch, onnx, int8; see :func:`lepton_apps.export.choose_backend`);
    return the choice (kept per page in the session under ``key``)."""
    from lepton_apps.export import BACKENDS

    return st.sidebar.selectbox(label, list(BACKENDS), key=key, help=help_text or (
        "auto: ONNX Runtime fp32 on a CPU (same results, faster), else PyTorch. int8: the quantised model, only "
        "where it passed the accuracy gate for this bundle (else fp32, with the reason). The first use of an "
        "ONNX backend exports the model once into this machine's cache."))


def show_backend(predictor, label: str = "answered by") -> None:
    """Show which backend answers (``predictor.backend``) and, when the asked one was refused, why."""
    note = getattr(predictor, "backend_note", None)
    st.caption(f"{label} {getattr(predictor, 'backend', 'torch')}")
    if note:
        st.warning(note, icon=":material/info:")


def show_error(exc: BaseException, context: str | None = None) -> None:
    """Show ``exc`` as one ``st.error`` line, never a traceback.

    A LeptonError already says what, where and how to fix it, so its message is shown as is.
    Anything else is a bug or an unforeseen input: the user sees its type and first line, and
    the full traceback goes to the server log.
    """
    prefix = f"{context}: " if context else ""
    if isinstance(exc, LeptonError):
        st.error(prefix + str(exc), icon=":material/error:")
        return
    log.error("unexpected error in the Lepton Apps UI", exc_info=exc)
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    st.error(f"{prefix}unexpected {type(exc).__name__}" + (f" ({detail})" if detail else "")
             + ". The details are in the server log; please report it if it persists.", icon=":material/error:")


@contextlib.contextmanager
def guarded(context: str | None = None) -> Iterator[None]:
    """Run a page section; turn any exception into :func:`show_error` instead of a traceback.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, ``st.switch_page``) passes through.
    Code after the ``with`` block still runs, so give the variables it needs a default first.
    """
    try:
        yield
    except ScriptControlException:
        raise
    except Exception as exc:  # noqa: BLE001 - the point is to catch everything
        show_error(exc, context)


def page_path(spec: DomainSpec) -> Path | None:
    """Return the absolute path of the domain's page script, or None if it has none on disk."""
    if spec.page is None:
        return None
    path = Path(spec.page).expanduser().resolve()
    return path if path.is_file() else None
