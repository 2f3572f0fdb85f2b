"""Errors that tell the user what is wrong, where, and what to do about it.

Every error raised on purpose by Lepton Apps is a :class:`LeptonError`. The CLI prints
``str(error)`` as one line and exits non-zero; the Streamlit pages show it with
``st.error``. Only ``--debug`` shows a traceback.
"""
from __future__ import annotations


class LeptonError(Exception):
    """Base class: ``what`` went wrong, ``where`` (file, column, key…), and ``fix``."""

    exit_code = 2
    kind = "error"

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line message: ``what [where: …] — fix``."""
        text = self.what.rstrip(".")
        if self.where:
            text += f" (in {self.where})"
        if self.fix:
            text += f". Fix: {self.fix.rstrip('.')}."
        else:
            text += "."
        return text

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class DataError(LeptonError):
    """The user's data is unreadable, malformed or inconsistent."""

    kind = "data error"


class ConfigError(LeptonError):
    """A configuration value or key is wrong or unknown."""

    kind = "config error"


class BundleError(LeptonError):
    """A model bundle is missing, tampered with, of an unknown version or unsafe to load."""

    kind = "model bundle error"


class UnavailableError(LeptonError):
    """A server the request needs (the online-state Redis, a database) does not answer; retrying later may work
    (the HTTP service answers 503)."""

    kind = "service unavailable"


class DependencyError(LeptonError):
    """An optional library that the requested feature needs is not installed."""

    kind = "missing dependency"


class OfflineError(DependencyError):
    """A file would have to be downloaded, but Lepton Apps runs offline."""

    kind = "offline"


def require(module: str, *, feature: str, extra: str | None = None):
    """Import and return ``module``, or raise :class:`DependencyError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip_name = extra and f"'lepton-apps[{extra}]'" or module.split(".")[0]
        raise DependencyError(
            f"{feature} needs the Python package '{module.split('.')[0]}', which is not installed ({exc})",
            fix=f"pip install {pip_name}",
        ) from exc
