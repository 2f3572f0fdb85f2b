"""The core Trainer: schedule, accumulation, early stopping, kill -9 + resume, DDP on gloo."""
import json
import math
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import PYTHON, ROOT, WORKERS, free_port
from lepton_apps.errors import ConfigError, DependencyError
from lepton_apps.training import (BEST, METRICS_LOG, Trainer, TrainConfig, balanced_class_weights, make_loss,
                                  warmup_cosine)


def _data(n, seed):
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(123))
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(x, (x @ w).argmax(1))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _cfg(**kw):
    base = dict(epochs=3, batch_size=32, lr=1e-2, seed=3, progress=False, device="cpu", patience=None)
    base.update(kw)
    return TrainConfig(**base)


def _run_worker(run_dir, *args, timeout=180):
    out = subprocess.run([PYTHON, str(WORKERS / "train_worker.py"), str(run_dir), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_warmup_then_cosine_to_min_ratio():
    f = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1)            # first warmup step
    assert f(9) == pytest.approx(1.0)            # end of warmup
    assert f(10) == pytest.approx(1.0)           # cosine starts at the peak
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway down
    assert f(100) == pytest.approx(0.1)          # ends at the floor
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def test_balanced_class_weights_and_weighted_loss():
    w = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    assert w == pytest.approx([4 / 9, 4 / 3, 1.0])
    loss = make_loss("cross_entropy", class_weights=[1.0, 3.0])
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    plain = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 1]))
    assert loss(logits, torch.tensor([1, 1])) == pytest.approx(plain.item())  # same class -> weights cancel
    mixed = loss(logits, torch.tensor([0, 1]))
    per = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]), reduction="none")
    assert mixed.item() == pytest.approx(((per[0] * 1 + per[1] * 3) / 4).item())
    with pytest.raises(ConfigError, match="unknown loss"):
        make_loss("hinge")


def test_training_learns_and_keeps_best_weights(tmp_path):
    trainer = Trainer(_model(), _data(256, 0), _data(128, 1), _cfg(epochs=4, lr=5e-2, monitor="val_acc", mode="max"),
                      run_dir=tmp_path, metric_fn=lambda o, t: {"acc": float((o.argmax(1) == t).mean())})
    result = trainer.fit()
    accs = [h["val_acc"] for h in result.history]
    assert result.best_metric == max(accs) and result.best_epoch == accs.index(max(accs)) + 1
    assert result.best_metric > 0.8  # a linear rule; chance is 1/3
    assert result.global_step == 4 * 8
    lines = [json.loads(x) for x in (tmp_path / METRICS_LOG).read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
    from safetensors.torch import load_file
    best = load_file(str(tmp_path / BEST))
    for k, v in trainer.model.state_dict().items():  # the model returned holds the best weights
        assert torch.equal(v, best[k])


def test_gradient_accumulation_matches_large_batch(tmp_path):
    a = Trainer(_model(), _data(256, 0), None, _cfg(batch_size=32, monitor="train_loss"), run_dir=tmp_path / "a")
    b = Trainer(_model(), _data(256, 0), None, _cfg(batch_size=16, grad_accum_steps=2, monitor="train_loss"),
                run_dir=tmp_path / "b")
    a.fit(), b.fit()
    assert a.global_step == b.global_step == 24
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k


def test_early_stopping_stops_after_patience(tmp_path):
    # lr so high that validation loss gets worse after the first epoch
    trainer = Trainer(_model(), _data(256, 0), _data(64, 1),
                      _cfg(epochs=30, lr=5.0, patience=2, warmup_fraction=0.0, max_grad_norm=None), run_dir=tmp_path)
    result = trainer.fit()
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 2
    assert result.epochs_run < 30
    # resuming a run that already stopped early does not train any further
    again = Trainer(_model(), _data(256, 0), _data(64, 1),
                    _cfg(epochs=30, lr=5.0, patience=2, warmup_fraction=0.0, max_grad_norm=None, resume=True),
                    run_dir=tmp_path).fit()
    assert again.stopped_early and again.epochs_run == result.epochs_run and again.global_step == result.global_step


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="'lr'"):
        TrainConfig.from_dict({"lr": -1})
    with pytest.raises(ConfigError, match="use mode='min'"):
        TrainConfig.from_dict({"monitor": "val_loss", "mode": "max"})
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("epochs: 2\nbatch_size: 8\nmonitor: val_auc\nmode: max\n")
    cfg = TrainConfig.from_yaml(cfg_file)
    assert (cfg.epochs, cfg.batch_size, cfg.monitor) == (2, 8, "val_auc")
    assert TrainConfig.from_dict(__import__("yaml").safe_load(cfg.to_yaml())) == cfg
    with pytest.raises(ConfigError, match="val_auc.*not among the computed metrics"):
        Trainer(_model(), _data(64, 0), _data(32, 1), _cfg(monitor="val_auc", mode="max"), run_dir=tmp_path / "r").fit()
    with pytest.raises(ConfigError, match="needs validation data"):
        Trainer(_model(), _data(64, 0), None, _cfg(), run_dir=tmp_path / "r2")


def test_reusing_a_run_folder_needs_resume(tmp_path):
    Trainer(_model(), _data(64, 0), _data(32, 1), _cfg(epochs=1), run_dir=tmp_path).fit()
    with pytest.raises(ConfigError, match="resume=True"):
        Trainer(_model(), _data(64, 0), _data(32, 1), _cfg(epochs=2), run_dir=tmp_path).fit()
    result = Trainer(_model(), _data(64, 0), _data(32, 1), _cfg(epochs=2, resume=True), run_dir=tmp_path).fit()
    assert result.epochs_run == 2 and len(result.history) == 2


def test_mlflow_only_when_tracking_uri_set(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    try:
        import mlflow  # noqa: F401
        pytest.skip("mlflow is installed here; the missing-dependency path cannot be shown")
    except ImportError:
        pass
    Trainer(_model(), _data(64, 0), _data(32, 1), _cfg(epochs=1), run_dir=tmp_path / "a").fit()  # no URI: fine
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    with pytest.raises(DependencyError, match="pip install 'lepton-apps\\[mlflow\\]'"):
        Trainer(_model(), _data(64, 0), _data(32, 1), _cfg(epochs=1), run_dir=tmp_path / "b").fit()


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_matches_uninterrupted_run(tmp_path):
    reference = _run_worker(tmp_path / "ref")

    run = tmp_path / "killed"
    pointer = run / "checkpoints" / "latest.json"
    proc = subprocess.Popen([PYTHON, str(WORKERS / "train_worker.py"), str(run), "--step-delay", "0.08"],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:
        if pointer.exists() and json.loads(pointer.read_text())["epoch"] >= 2:
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    time.sleep(0.3)  # now mid-way through epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = json.loads(pointer.read_text())["epoch"]
    assert 2 <= done < 6, "the kill must land before the run finished"

    resumed = _run_worker(run, "--resume")
    assert resumed["global_step"] == reference["global_step"] == 48
    assert resumed["epochs_run"] == 6
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], abs=1e-6)
    assert resumed["val_acc"] == reference["val_acc"]
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-6)
    for k, v in reference["weights"].items():
        assert np.allclose(resumed["weights"][k], v, atol=1e-6), k
    epochs = [json.loads(x)["epoch"] for x in (run / METRICS_LOG).read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]  # no duplicate line for the epoch that was killed


@pytest.mark.slow
def test_ddp_two_processes_gloo_matches_single_process(tmp_path):
    single = _run_worker(tmp_path / "single", "--dropout", "0", "--epochs", "3")
    cmd = [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
           f"--master_port={free_port()}", "--master_addr=127.0.0.1",
           str(WORKERS / "train_worker.py"), str(tmp_path / "ddp"), "--dropout", "0", "--epochs", "3"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    ddp = json.loads(out.stdout.strip().splitlines()[-1])
    assert ddp["global_step"] == single["global_step"] == 24
    assert ddp["val_loss"] == pytest.approx(single["val_loss"], rel=1e-4)
    assert ddp["val_acc"] == pytest.approx(single["val_acc"], abs=1 / 128)
    for k, v in single["weights"].items():
        assert np.allclose(ddp["weights"][k], v, atol=1e-4), k
    # only rank 0 wrote files
    assert len((tmp_path / "ddp" / METRICS_LOG).read_text().splitlines()) == 3
