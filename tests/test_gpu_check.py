"""bench/gpu_check.py, the GPU readiness check (issue 23 item 3), on a machine without CUDA: it says it needs
CUDA and exits 0 without measuring; its --cpu-smoke run goes through the medical parts and the 2-process
torchrun part at tiny sizes, so the script a GPU machine will run has run end to end here."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check, not these")


def test_without_cuda_it_says_it_needs_cuda_and_exits_0_without_measuring(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "needs a CUDA GPU" in proc.stdout and "--cpu-smoke" in proc.stdout
    result = json.loads(out.read_text())
    assert result["cuda"] is False and result["measured"] is False and "parts" not in result


def test_an_unknown_part_is_refused_by_name(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--parts", "medical_training,gpu_magic"], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert proc.returncode == 2 and "gpu_magic" in proc.stderr


@pytest.mark.slow
def test_cpu_smoke_runs_the_medical_parts_and_torchrun_end_to_end(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-smoke", "--parts",
                           "medical_training,medical_auc,medical_inference,ddp", "--json", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True and result["failed_parts"] == [], json.dumps(result["parts"], default=str)[:3000]
    parts = result["parts"]
    training = parts["medical_training"]
    assert min(training["template_images_per_s"], training["eager_fp32_images_per_s"], training["ceiling_images_per_s"]) > 0
    assert training["goal_train_over_ceiling"].startswith("not judged")
    auc = parts["medical_auc"]
    assert 0 <= auc["gpu_defaults_bf16_compile"]["roc_auc"] <= 1 and 0 <= auc["fp32_eager"]["roc_auc"] <= 1
    infer = parts["medical_inference"]
    assert {"eager_fp32_loop", "template_default", "onnx_runtime_cpu"} <= set(infer["images_per_s"])
    assert max(infer["max_abs_diff_to_eager"].values()) < 1e-4      # every backend gives the same probabilities
    assert parts["ddp"]["world_size"] == 2 and parts["ddp"]["backend"] == "gloo" and parts["ddp"]["images_per_s"] > 0
