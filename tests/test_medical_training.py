"""The training defaults of the medical template and the Trainer features they use: a schedule sized in
optimizer steps, lower learning rates for a pretrained backbone than for its head, weight averaging
(EMA), model selection that does not trust a tiny validation set, and the input size from the images."""
import numpy as np
import pytest
import torch

from lepton_apps.training import Trainer, TrainConfig, lr_multiplier, planned_steps
from test_training import _data as toy_data, _model


def _data(n, seed=0):
    return toy_data(n, seed)  # the core Trainer tests' toy problem


def _cfg(**kw):
    base = dict(epochs=1, batch_size=8, lr=1e-2, seed=3, progress=False, device="cpu", patience=None)
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- step-sized schedule

def test_planned_steps_raise_small_sets_and_cap_large_ones():
    assert planned_steps(7, 5, min_steps=300, max_steps=4000) == (300, 43)      # 200 images, batch 32
    assert planned_steps(148, 5, min_steps=300, max_steps=4000) == (740, 5)     # 4,708 images: plain 5 epochs
    assert planned_steps(3125, 5, min_steps=300, max_steps=4000) == (4000, 2)   # 100,000 images: capped
    assert planned_steps(7, 5) == (35, 5)                                       # unset: epochs decide


def test_min_steps_trains_that_many_optimizer_steps_on_a_tiny_set(tmp_path):
    steps = []
    # 40 images, batch 8 -> 5 steps per epoch; 1 epoch asked, 12 steps at least -> 3 epochs, the last partial
    result = Trainer(_model(), _data(40), _data(16, 1), _cfg(min_steps=12), run_dir=tmp_path / "a",
                     callback=lambda e: steps.append(e) if e["event"] == "step" else None).fit()
    assert result.global_step == 12 and result.epochs_run == 3
    assert [e["step"] for e in steps] == list(range(1, 13)) and {e["total_steps"] for e in steps} == {12}
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # the cosine reached its end exactly

    capped = Trainer(_model(), _data(40), _data(16, 1), _cfg(epochs=10, max_steps=7), run_dir=tmp_path / "b").fit()
    assert capped.global_step == 7 and capped.epochs_run == 2
    with pytest.raises(ValueError, match="min_steps=9 is above max_steps=3"):
        _cfg(min_steps=9, max_steps=3)


# --------------------------------------------------------------------------- learning-rate groups

def test_lr_multiplier_takes_the_longest_matching_prefix():
    mult = {"backbone": 0.3, "backbone.classifier": 1.0}
    assert lr_multiplier("backbone.conv_stem.weight", mult) == 0.3
    assert lr_multiplier("backbone.classifier.weight", mult) == 1.0
    assert lr_multiplier("backbone.classifier2.weight", mult) == 0.3   # a prefix is a whole name part
    assert lr_multiplier("mean", mult) == 1.0


def test_backbone_and_head_get_their_own_learning_rates_and_the_frozen_rate_really_applies(tmp_path):
    trainer = Trainer(_model(), _data(40), _data(16, 1), _cfg(lr_mult={"0": 0.1, "2": 1.0}, warmup_fraction=0.0),
                      run_dir=tmp_path)
    by_param = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert by_param[id(trainer.model[0].weight)] == pytest.approx(1e-3)
    assert by_param[id(trainer.model[2].weight)] == pytest.approx(1e-2)
    decay = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert decay[id(trainer.model[0].bias)] == 0.0 and decay[id(trainer.model[0].weight)] == 0.01
    # a near-zero multiplier leaves that layer almost where it started, the other one moves
    start = _model().state_dict()
    frozen = Trainer(_model(), _data(40), None, _cfg(lr_mult={"0": 1e-6}, monitor="train_loss"), run_dir=tmp_path / "f")
    assert frozen.fit().global_step == 5
    assert (frozen.model[0].weight - start["0.weight"]).abs().max() < 1e-6
    assert (frozen.model[2].weight - start["2.weight"]).abs().max() > 1e-3


# --------------------------------------------------------------------------- EMA and model selection

def test_ema_weights_are_the_warmed_up_moving_average_and_are_what_is_kept(tmp_path):
    raw = []
    holder = {}

    def record(event):
        if event["event"] == "step":
            raw.append({k: v.detach().clone() for k, v in holder["t"].model.state_dict().items()})

    decay = 0.9
    t = Trainer(_model(), _data(40), _data(16, 1), _cfg(epochs=2, ema_decay=decay, keep="last"),
                run_dir=tmp_path, callback=record)
    holder["t"] = t
    start = {k: v.clone() for k, v in _model().state_dict().items()}
    t.fit()
    expected = start
    for step, weights in enumerate(raw, start=1):
        d = min(decay, (1 + step) / (10 + step))
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in weights}
    final = t.model.state_dict()
    for k in final:
        assert torch.allclose(final[k], expected[k], atol=1e-6), k
    assert not torch.allclose(final["0.weight"], raw[-1]["0.weight"], atol=1e-4)  # not the raw weights


def test_validation_scores_the_averaged_weights(tmp_path):
    val = _data(16, 1)
    t = Trainer(_model(), _data(40), val, _cfg(epochs=1, ema_decay=0.5, keep="last"), run_dir=tmp_path)
    result = t.fit()
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(t.model(val.tensors[0]), val.tensors[1]).item()
    assert result.history[-1]["val_loss"] == pytest.approx(loss, rel=1e-5)


def test_keep_best_or_last(tmp_path):
    kw = dict(epochs=4, lr=0.5, monitor="val_loss", mode="min")
    last_t = Trainer(_model(), _data(40), _data(16, 1), _cfg(keep="last", **kw), run_dir=tmp_path / "l")
    last = last_t.fit()
    best_t = Trainer(_model(), _data(40), _data(16, 1), _cfg(**kw), run_dir=tmp_path / "b")
    best = best_t.fit()
    assert [h["val_loss"] for h in best.history] == pytest.approx([h["val_loss"] for h in last.history])
    val = _data(16, 1)
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(last_t.model(val.tensors[0]), val.tensors[1]).item()
        kept = torch.nn.functional.cross_entropy(best_t.model(val.tensors[0]), val.tensors[1]).item()
    assert final == pytest.approx(last.history[-1]["val_loss"], rel=1e-5)
    assert kept == pytest.approx(min(h["val_loss"] for h in best.history), rel=1e-5)


# --------------------------------------------------------------------------- the medical schedule

def test_medical_schedule_adapts_to_the_data():
    from lepton_apps.medical import MedicalConfig
    from lepton_apps.medical.training import schedule

    cfg = MedicalConfig(data="x.npz")
    small = schedule(cfg, 200, [6, 16])
    assert small["total_steps"] == 300 and small["keep"] == "last"
    assert small["lr_mult"] == {"backbone": 0.3, "backbone.classifier": 1.0}
    assert small["ema_decay"] == pytest.approx(1 - 1 / 30)
    full = schedule(cfg, 4708, [135, 389], head="backbone.fc")
    assert full["total_steps"] == 1480 and full["keep"] == "best" and "backbone.fc" in full["lr_mult"]   # 10 epochs
    huge = schedule(cfg, 100_000, [5000, 5000])
    assert huge["total_steps"] == 4000 and huge["ema_decay"] == pytest.approx(0.9975)
    fixed = schedule(cfg.model_copy(update={"epochs": 2, "ema": False, "model_selection": "best"}), 200, [6, 16])
    assert fixed["total_steps"] == 14 and fixed["min_steps"] is None and fixed["ema_decay"] is None
    assert fixed["keep"] == "best"
    assert schedule(cfg.model_copy(update={"pretrained": False}), 200, [6, 16])["lr_mult"] == {}


def test_input_size_follows_the_images(tmp_path):
    from PIL import Image

    from lepton_apps.medical.data import auto_image_size, open_data

    np.savez(tmp_path / "tiny.npz", train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.array([[0], [1]] * 2))
    assert auto_image_size(open_data(tmp_path / "tiny.npz")) == 64
    for i, side in enumerate((200, 224, 240)):
        for c in ("normal", "lesion"):
            (tmp_path / "f" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((side, side + 40), 9 * i, np.uint8)).save(tmp_path / "f" / c / f"{i}.png")
    assert auto_image_size(open_data(tmp_path / "f")) == 96
    for i in range(4):
        Image.fromarray(np.full((80, 90), 9 * i, np.uint8)).save(tmp_path / "f" / "normal" / f"s{i}.png")
        Image.fromarray(np.full((80, 90), 9 * i, np.uint8)).save(tmp_path / "f" / "lesion" / f"s{i}.png")
    assert auto_image_size(open_data(tmp_path / "f")) == 80  # most images are 80 px: kept
