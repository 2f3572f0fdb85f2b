"""Lepton Apps: vertical AI solution templates on a shared PyTorch core.

The core (this package) holds the device policy, Trainer, model bundles and registry, the
batch-scoring driver, metrics, errors, the CLI and the Streamlit hub. The templates live in
``lepton_apps.medical``, ``lepton_apps.finance`` and ``lepton_apps.support``.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lepton-apps")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
