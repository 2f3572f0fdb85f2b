"""Patient ids from file names, patient-level splits, the data check's warnings and problems, and the
model card's account of how the data was split."""
import json

import numpy as np
import pytest
from PIL import Image

from lepton_apps.cli import main
from lepton_apps.errors import ConfigError
from lepton_apps.medical.check import check_data, has_blocking_issues
from lepton_apps.medical.data import assign_splits, open_data
from lepton_apps.medical.patients import GENERIC_PATTERN, compile_pattern, patient_from_name, suggest_pattern

KERMANY = r"(?P<patient>person\d+|(?:NORMAL2-)?IM-\d+)"


def kermany_like(root, n_patients=24, per_patient=3, size=16):
    """Write root/NORMAL/IM-000P-000k.jpeg and root/PNEUMONIA/personP_bacteria_k.jpeg; return root."""
    rng = np.random.default_rng(0)
    for p in range(n_patients):
        pneumonia = p % 3 != 0
        folder = root / ("PNEUMONIA" if pneumonia else "NORMAL")
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_patient):
            name = f"person{p}_{'virus' if p % 2 else 'bacteria'}_{p * 10 + k}.jpeg" if pneumonia else \
                f"{'NORMAL2-' if p % 2 else ''}IM-{p:04d}-{k + 1:04d}.jpeg"
            arr = rng.integers(0, 255, (size, size), dtype=np.uint8) // (2 if pneumonia else 1)
            Image.fromarray(arr).save(folder / name)
    return root


def test_pattern_must_compile_and_name_the_patient_group():
    rx = compile_pattern(KERMANY)
    assert patient_from_name(rx, "/x/PNEUMONIA/person1234_bacteria_3229.jpeg") == "person1234"
    assert patient_from_name(rx, "NORMAL2-IM-0012-0001.jpeg") == "NORMAL2-IM-0012"
    assert patient_from_name(rx, "IM-0012-0001.jpeg") == "IM-0012"
    assert patient_from_name(rx, "scan.png") is None
    with pytest.raises(ConfigError, match="no named group 'patient'"):
        compile_pattern(r"person\d+")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        compile_pattern(r"(?P<patient>person\d+")


def test_the_suggested_pattern_groups_kermany_names_by_patient_and_ignores_plain_counters():
    names = ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person2_virus_3.jpeg", "person2_virus_4.jpeg",
             "IM-0001-0001.jpeg", "IM-0001-0002.jpeg", "NORMAL2-IM-0007-0001.jpeg", "NORMAL2-IM-0007-0002.jpeg"]
    hint = suggest_pattern(names)
    assert hint["pattern"] == GENERIC_PATTERN and hint["matched"] == 8 and hint["patients"] == 4
    assert hint["example"] == "person1_bacteria_1.jpeg -> person1_bacteria"
    assert suggest_pattern([f"{i:04d}.png" for i in range(20)]) is None          # no id part
    assert suggest_pattern([f"img_{i}.png" for i in range(20)]) is None          # prefix without a digit
    assert suggest_pattern([f"case{i}_1.png" for i in range(20)]) is None        # one image per "patient"


def test_folder_with_a_patient_pattern_splits_by_patient(tmp_path):
    root = kermany_like(tmp_path / "xr")
    plain = open_data(root)
    assert not plain.has_patients
    md = open_data(root, KERMANY)
    assert md.table["patient_id"].notna().all() and md.table["patient_id"].nunique() == 24
    assert "patient_id_pattern" in md.patient_source
    for seed in range(3):
        split = assign_splits(md, 0.2, 0.2, seed)
        owners = md.table.assign(split=split).groupby("patient_id")["split"].nunique()
        assert (owners == 1).all() and set(split) == {"train", "val", "test"}
    partial = open_data(root, r"(?P<patient>person\d+)")   # normal names do not match: each its own patient
    assert partial.table["patient_id"].isna().sum() == 24
    assert any("24 of 72 file names do not match" in p for p in partial.problems)
    with pytest.raises(ConfigError, match="needs file names"):
        np.savez(tmp_path / "a.npz", train_images=np.zeros((2, 8, 8), np.uint8), train_labels=np.array([[0], [1]]))
        open_data(tmp_path / "a.npz", KERMANY)


def test_check_warns_about_patient_like_names_without_a_pattern(tmp_path, capsys):
    root = kermany_like(tmp_path / "xr")
    r = check_data(str(root))
    assert r["suggested_patient_pattern"] == GENERIC_PATTERN and len(r["warnings"]) == 1
    assert "look like they carry patient ids" in r["warnings"][0] and not has_blocking_issues(r)
    with_pattern = check_data(str(root), patient_id_pattern=KERMANY)
    assert with_pattern["warnings"] == [] and with_pattern["patients"] == 24
    # the suggestion itself keeps every patient whole
    md = open_data(root, r["suggested_patient_pattern"])
    assert md.table["patient_id"].nunique() == 24
    assert main(["medical", "check", str(root)]) == 0
    assert "Warning: file names look like they carry patient ids" in capsys.readouterr().out


def test_check_fails_on_a_single_class_folder(tmp_path, capsys):
    for i in range(4):
        (tmp_path / "one" / "normal").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "one" / "normal" / f"{i}.png")
    r = check_data(str(tmp_path / "one"))
    assert r["problems"][0].startswith("only one class (normal)") and has_blocking_issues(r)
    assert main(["medical", "check", str(tmp_path / "one")]) == 1
    assert "Problem: only one class (normal) was found" in capsys.readouterr().out


def test_model_card_states_the_split_and_that_it_was_patient_level(tmp_path):
    from lepton_apps.medical import train

    root = kermany_like(tmp_path / "xr", n_patients=30)
    bundle = train({"data": str(root), "out": str(tmp_path / "b"), "patient_id_pattern": KERMANY,
                    "backbone": "test_efficientnet", "pretrained": False, "image_size": 32, "epochs": 1, "batch_size": 16,
                    "n_boot": 20, "progress": False, "val_fraction": 0.25, "test_fraction": 0.25})
    summary = json.loads((bundle / "data_summary.json").read_text())
    assert summary["patient_level_split"] is True and summary["patients_in_two_splits"] == 0
    assert summary["split_method"].startswith("made by the template: stratified, patient-level")
    assert "patient_id_pattern" in summary["patient_ids"]
    assert sum(summary["patients"].values()) == 30
    text = json.dumps(summary)
    assert not [p for p in open_data(root, KERMANY).table["patient_id"].unique() if f'"{p}"' in text or f"{p}_" in text]
    hist = json.loads((bundle / "history.json").read_text())
    assert hist["optimizer_steps"] == hist["epochs_run"] * -(-hist["train_images"] // 16) and hist["kept"] == "last"
    assert hist["policy"]["channels_last"] is True and hist["policy"]["device"] == "cpu"   # NHWC on a CPU too
    cfg = json.loads((bundle / "bundle.json").read_text())["training_config"]
    assert cfg["image_size"] == 32 and cfg["patient_id_pattern"] == KERMANY

    npz = tmp_path / "p.npz"
    rng = np.random.default_rng(1)
    np.savez(npz, **{f"{s}_images": rng.integers(0, 255, (n, 28, 28), dtype=np.uint8) for s, n in
                     (("train", 24), ("val", 12), ("test", 12))},
             **{f"{s}_labels": (np.arange(n) % 2)[:, None] for s, n in (("train", 24), ("val", 12), ("test", 12))})
    from lepton_apps.medical.training import data_summary

    md = open_data(npz)
    summary = data_summary(md, assign_splits(md, seed=0))
    assert summary["split_method"].startswith("the data's own splits") and summary["patient_level_split"] is False
    assert summary["patient_ids"] is None and summary["validation_images"] == 12
    leaky = open_data(root, KERMANY)
    split = assign_splits(leaky, 0.25, 0.25, seed=0)
    first = leaky.table["patient_id"].iloc[0]
    split[np.flatnonzero(leaky.table["patient_id"] == first)[0]] = "test" if split[0] != "test" else "train"
    leaked = data_summary(leaky, split)
    assert leaked["patients_in_two_splits"] == 1 and leaked["patient_level_split"] is False


# --------------------------------------------------------------------------- the robustness bench's protocol

def _bench():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("robust_medical", ROOT / "bench" / "robust_medical.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_subsamples_train_and_val_stratified_and_keeps_the_whole_test_split(tmp_path):
    bench = _bench()
    rng = np.random.default_rng(0)
    counts = {"train": 1000, "val": 110, "test": 90}
    arrays = {}
    for s, n in counts.items():
        arrays[f"{s}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{s}_labels"] = (np.arange(n) % 4 != 0).astype(np.int64)[:, None]   # 25 % negatives
    np.savez(tmp_path / "src.npz", **arrays)
    out = np.load(bench.subsample_npz(tmp_path / "src.npz", tmp_path / "s.npz", 200, seed=1))
    assert len(out["train_labels"]) == 200 and out["train_labels"].mean() == pytest.approx(0.75)
    assert len(out["val_labels"]) == 22 and 0 < out["val_labels"].mean() < 1
    assert np.array_equal(out["test_images"], arrays["test_images"])
    other = np.load(bench.subsample_npz(tmp_path / "src.npz", tmp_path / "t.npz", 200, seed=2))
    assert not np.array_equal(other["train_images"], out["train_images"])           # the seed draws the sample
    assert bench.subsample_npz(tmp_path / "src.npz", tmp_path / "u.npz", "all", seed=1) == tmp_path / "src.npz"


def test_bench_kermany_test_split_is_patient_level(tmp_path):
    import pandas as pd

    bench = _bench()
    root = kermany_like(tmp_path / "xr", n_patients=30)
    m = pd.read_csv(bench.kermany_manifest(root, tmp_path / "m.csv"), keep_default_na=False)
    test = m["split"] == "test"
    assert 0.1 < test.mean() < 0.3 and set(m["label"][test]) == {"NORMAL", "PNEUMONIA"}
    assert not set(m["patient_id"][test]) & set(m["patient_id"][~test])
    md = open_data(tmp_path / "m.csv")
    split = assign_splits(md, 0.15, 0.15, seed=0)                  # what the template does with the rest
    owners = md.table.assign(split=split).groupby("patient_id")["split"].nunique()
    assert (owners == 1).all() and (split == "test").sum() == test.sum()
