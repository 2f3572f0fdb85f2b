"""Multi-class and multi-label training end to end on tiny MedMNIST-style .npz files: train -> bundle -> predict."""
import numpy as np
import pytest

from lepton_apps.bundle import load_bundle


def write_npz(path, *, k, multilabel, n=(36, 18, 18), size=16, seed=0):
    """Write a learnable MedMNIST-style .npz: class j (or label j) brightens band j of the image."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, m in zip(("train", "val", "test"), n):
        if multilabel:
            y = (rng.random((m, k)) < 0.5).astype(np.uint8)
            y[:k] = np.eye(k, dtype=np.uint8)  # every label is present in some rows and absent in others
        else:
            y = (np.arange(m) % k).astype(np.uint8)[:, None]
        x = rng.integers(0, 60, (m, size, size), dtype=np.uint8)
        band = size // k
        for i in range(m):
            on = np.flatnonzero(y[i]) if multilabel else [int(y[i, 0])]
            for j in on:
                x[i, j * band:(j + 1) * band] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    np.savez(path, **arrays)
    return path


def train_npz(tmp_path, name, *, k, multilabel):
    from lepton_apps.medical import train

    data = write_npz(tmp_path / name, k=k, multilabel=multilabel)
    cfg = {"data": str(data), "out": str(tmp_path / "bundle"), "image_size": 28, "epochs": 1, "batch_size": 12,
           "pretrained": False, "n_boot": 20, "progress": False, "patience": None, "augment": {"enabled": False}}
    return train(cfg), data


def test_multiclass_npz_trains_and_predicts_a_softmax(tmp_path):
    from lepton_apps.medical import MedicalClassifier

    bundle_path, data = train_npz(tmp_path, "organmnist_tiny.npz", k=3, multilabel=False)
    b = load_bundle(bundle_path, domain="medical")
    assert b.task == "multiclass" and b.label_names == ["0", "1", "2"]
    report = b.load_json("report.json")
    assert report["split"] == "test" and report["n"] == 18
    assert set(report["per_class_auc"]) == {"0", "1", "2"}
    aucs = [v[0] for v in report["per_class_auc"].values()]
    assert all(0 <= a <= 1 for a in aucs)
    assert report["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    assert np.array(report["confusion"]).shape == (3, 3) and np.array(report["confusion"]).sum() == 18
    clf = MedicalClassifier.load(bundle_path)
    images = np.load(data)["test_images"][:5]
    results = clf.predict(list(images))
    assert len(results) == 5
    for r in results:
        assert list(r.probabilities) == ["0", "1", "2"]
        assert sum(r.probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert r.label == max(r.probabilities, key=r.probabilities.get)
        assert r.decision is None and r.threshold is None and r.score == pytest.approx(max(r.probabilities.values()))
    probs = clf.predict_pixels(np.stack([clf.preprocess(a) for a in images]))
    assert probs.shape == (5, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_multilabel_npz_trains_and_predicts_independent_sigmoids(tmp_path):
    from lepton_apps.medical import MedicalClassifier

    bundle_path, data = train_npz(tmp_path, "chestmnist_tiny.npz", k=3, multilabel=True)
    b = load_bundle(bundle_path, domain="medical")
    assert b.task == "multilabel" and b.label_names == ["atelectasis", "cardiomegaly", "effusion"]
    report = b.load_json("report.json")
    assert set(report["per_class_auc"]) == set(b.label_names)
    aucs = [v[0] for v in report["per_class_auc"].values()]
    assert all(a is not None and 0 <= a <= 1 for a in aucs)
    assert report["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-9)
    cal = b.load_json("calibration.json")
    assert len(cal["thresholds"]) == 3 and all(0 <= t <= 1 + 1e-9 for t in cal["thresholds"])
    clf = MedicalClassifier.load(bundle_path)
    images = np.load(data)["test_images"][:6]
    pixels = np.stack([clf.preprocess(a) for a in images])
    probs = clf.predict_pixels(pixels)
    assert probs.shape == (6, 3) and ((probs >= 0) & (probs <= 1)).all()
    logits = __import__("lepton_apps.medical.model", fromlist=["predict_logits"]).predict_logits(
        clf.model, pixels, clf.policy)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits / clf.temperature)), atol=1e-5)  # sigmoids, not softmax
    results = clf.predict(list(images))
    for r, p in zip(results, probs):
        flagged = [n for n, v, t in zip(clf.label_names, p, clf.thresholds) if v >= t]
        assert r.label == "|".join(flagged) and r.decision == bool(flagged)
        assert list(r.probabilities) == clf.label_names
