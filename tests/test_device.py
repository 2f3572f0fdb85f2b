"""Device and precision policy on a CPU-only machine."""
import random

import numpy as np
import pytest
import torch

from lepton_apps.device import DevicePolicy, detect_device, rng_state, seed_everything, set_rng_state
from lepton_apps.errors import ConfigError

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallbacks")


@needs_no_gpu
def test_auto_on_cpu_is_fp32_without_scaler_or_compile(monkeypatch):
    monkeypatch.delenv("LEPTON_DEVICE", raising=False)
    p = DevicePolicy.resolve()
    assert detect_device() in ("cpu", "mps")
    if p.device.type == "cpu":
        assert p.amp_dtype is None and p.precision == "fp32"
        assert not p.use_grad_scaler and not p.grad_scaler().is_enabled()
        assert not p.channels_last and not p.compile
    assert p.describe()["precision"] == p.precision


def test_env_overrides_auto_device(monkeypatch):
    monkeypatch.setenv("LEPTON_DEVICE", "cpu")
    assert DevicePolicy.resolve("auto").device.type == "cpu"


@needs_no_gpu
def test_impossible_requests_are_clear_errors():
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        DevicePolicy.resolve("cuda")
    with pytest.raises(ConfigError, match="fp16 autocast is not supported on the CPU"):
        DevicePolicy.resolve("cpu", "fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        DevicePolicy.resolve("cpu", "int8")
    with pytest.raises(ConfigError, match="unsupported device"):
        DevicePolicy.resolve("xla")


def test_bf16_autocast_on_cpu_changes_matmul_dtype():
    p = DevicePolicy.resolve("cpu", "bf16")
    a = torch.randn(4, 4)
    with p.autocast():
        assert (a @ a).dtype == torch.bfloat16
    with DevicePolicy.resolve("cpu", "fp32").autocast():
        assert (a @ a).dtype == torch.float32


def test_channels_last_and_nested_to_device():
    p = DevicePolicy.resolve("cpu", channels_last=True)
    model = p.prepare_model(torch.nn.Conv2d(3, 4, 3))
    assert model.weight.is_contiguous(memory_format=torch.channels_last)
    batch = p.to_device({"x": torch.randn(2, 3, 8, 8), "ids": [torch.arange(3)], "name": "a"})
    assert batch["x"].is_contiguous(memory_format=torch.channels_last)
    assert batch["ids"][0].tolist() == [0, 1, 2] and batch["name"] == "a"


def test_seeding_is_reproducible_and_rng_state_round_trips(tmp_path):
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a

    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(3).tolist())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))  # no pickle needed
    assert (random.random(), np.random.rand(), torch.rand(3).tolist()) == expected
