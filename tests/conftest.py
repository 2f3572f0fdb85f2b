"""Shared test setup: offline, CPU-only, a temporary model registry per test."""
import os
import socket
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LEPTON_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).parent / "workers"
PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _isolated_registry(tmp_path, monkeypatch):
    """Every test gets its own empty $LEPTON_HOME, so none touches ./lepton_models."""
    monkeypatch.setenv("LEPTON_HOME", str(tmp_path / "lepton_home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_finish(session):
    """An empty selection is a failure, never a silent green run."""
    if not session.items and not session.config.option.collectonly:
        raise pytest.UsageError("no tests were collected: check the test paths and -k/-m filters")
