"""Robustness of the medical template's defaults: sizes x seeds x data sets, against a plain baseline.

``run(quick, seeds, data_root)`` returns one row per (dataset, size, method, seed) with ``auc``
(test ROC-AUC), ``acc`` (test accuracy at argmax, the MedMNIST convention), ``acc_op`` (test
accuracy at the Youden operating point chosen on validation) and ``seconds``.

Methods, both measured in the same run on the same rows:

* ``default``: ``lepton_apps.medical.training`` with only ``data``, ``out``, ``seed``, ``progress=False``
  and ``n_boot=50`` set — every training choice is the template's default;
* ``baseline``: the MedMNIST recipe — timm ``resnet18`` from scratch, 1 input channel at 28 px,
  Adam lr 1e-3 (x0.1 at epochs 50 and 75), batch 128, 100 epochs, cross-entropy, no augmentation,
  the epoch with the best validation AUC kept — evaluated with the template's own evaluation
  (temperature and Youden threshold fitted on validation, metrics on test).

Data sets (under ``data_root/medical``; a missing one is skipped with a note):

* ``pneumoniamnist``: the official file. For a size n, a MedMNIST-style ``.npz`` is written whose
  train split is a class-stratified random subsample of n official training images, whose val
  split is a stratified subsample of the official validation split in the same proportion
  (n x 524 / 4,708, at least 5 per class) and whose test split is the whole official test split
  (624 images), so every size is scored on the same test images. The subsample is drawn with the
  run's seed (seed variation includes which images were drawn). Size ``all`` is the file as is.
* ``kermany``: the 5,216-image training folder of Kermany et al. The patient id comes from the
  file name (``person123_…`` for pneumonia, ``IM-0001-…`` / ``NORMAL2-IM-0001-…`` for normal); 20 %
  of the patients (stratified, ``StratifiedGroupKFold``, fixed seed) form the test split, written
  as ``split=test`` rows of a manifest with a ``patient_id`` column. The template splits the rest
  into train / val itself, patient-level; the baseline uses the very same train / val rows
  (the template's ``assign_splits`` with the same seed).

Time: the 100-epoch baseline dominates at full size (about 10-15 minutes per run on 2 CPU cores),
so the two large cases (PneumoniaMNIST ``all`` and Kermany) run the first seed only unless
``large_seeds`` says otherwise (``--large-seeds 3``); the rows say which seeds ran. ``--quick``:
one seed, PneumoniaMNIST at 200 and 1,000 images, no Kermany.

Standalone: ``python bench/robust_medical.py [--quick] [--seeds 0 1 2] [--out results.json]``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DOMAIN = "medical"
SIZES = (200, 500, 1000, "all")
QUICK_SIZES = (200, 1000)
KERMANY_PATTERN = r"(?P<patient>person\d+|(?:NORMAL2-)?IM-\d+)"
BASELINE = {"epochs": 100, "lr": 1e-3, "batch_size": 128, "image_size": 28, "milestones": (50, 75)}


def log(msg: str) -> None:
    print(f"[robust_medical] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data preparation

def _stratified(y: np.ndarray, n: int, rng: np.random.Generator, min_per_class: int = 0) -> np.ndarray:
    """Return sorted row indices: about ``n`` rows with the class proportions of ``y``."""
    rows = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(len(idx), max(min_per_class, int(round(n * len(idx) / len(y)))))
        rows.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(rows))


def subsample_npz(src: Path, dst: Path, size: int | str, seed: int) -> Path:
    """Write the MedMNIST file ``src`` with its train split cut to ``size`` images (see module doc); return ``dst``."""
    npz = np.load(src, allow_pickle=False)
    if size == "all":
        return src
    rng = np.random.default_rng(seed)
    tr_y, va_y = npz["train_labels"][:, 0], npz["val_labels"][:, 0]
    tr = _stratified(tr_y, int(size), rng)
    va = _stratified(va_y, int(size) * len(va_y) / len(tr_y), rng, min_per_class=5)
    out = {"train_images": npz["train_images"][tr], "train_labels": npz["train_labels"][tr],
           "val_images": npz["val_images"][va], "val_labels": npz["val_labels"][va],
           "test_images": npz["test_images"], "test_labels": npz["test_labels"]}
    dst.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dst, **out)
    return dst


def kermany_manifest(folder: Path, dst: Path, test_fraction: float = 0.2, seed: int = 12345) -> Path:
    """Write ``dst`` (path,label,patient_id,split) for the Kermany folder with a patient-level test split."""
    import pandas as pd
    from sklearn.model_selection import StratifiedGroupKFold

    from lepton_apps.medical.data import open_data

    md = open_data(folder, KERMANY_PATTERN)
    table = md.table.copy()
    if table["patient_id"].isna().any():
        raise RuntimeError(f"{int(table['patient_id'].isna().sum())} Kermany file names without a patient id")
    y = md.targets()
    folds = StratifiedGroupKFold(n_splits=int(round(1 / test_fraction)), shuffle=True, random_state=seed)
    _, test = next(folds.split(table, y, table["patient_id"]))
    split = np.full(len(table), "", dtype=object)
    split[test] = "test"
    dst.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"path": table["item"], "label": table["label"], "patient_id": table["patient_id"],
                  "split": split}).to_csv(dst, index=False)
    return dst


# --------------------------------------------------------------------------- the two methods

def run_default(data: Path, out: Path, seed: int, epochs: int | None = None) -> dict:
    """Train with the template's defaults (``epochs``: an exact epoch count instead); return test metrics and seconds."""
    from lepton_apps.medical import MedicalConfig, train

    start = time.perf_counter()
    extra = {} if epochs is None else {"epochs": epochs}
    bundle = train(MedicalConfig(data=str(data), out=str(out), seed=seed, progress=False, n_boot=50, **extra))
    seconds = time.perf_counter() - start
    report = json.loads((bundle / "report.json").read_text())
    hist = json.loads((bundle / "history.json").read_text())
    info = json.loads((bundle / "model.json").read_text())
    return {"auc": float(report["roc_auc"]), "acc": float(report["accuracy_argmax"]),
            "acc_op": float(report["accuracy"]), "seconds": seconds,
            "info": f"{info['image_size']}px, {hist.get('optimizer_steps')} steps, {hist['epochs_run']} epochs, "
                    f"kept {hist.get('kept')} (best epoch {hist['best_epoch']})"}


def baseline_splits(data: Path, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(pixels uint8 (N, 1, 28, 28), targets, split per row)`` — the template's own split for ``data``."""
    from lepton_apps.medical.config import MedicalConfig
    from lepton_apps.medical.data import assign_splits, load_pixels, open_data

    cfg = MedicalConfig(data=str(data), seed=seed)
    md = open_data(data)
    split = assign_splits(md, cfg.val_fraction, cfg.test_fraction, seed)
    pixels, errors = load_pixels(md, BASELINE["image_size"], 1)
    if errors:
        raise RuntimeError(f"{len(errors)} unreadable images in {data}")
    return pixels, md.targets(), split


def run_baseline(pixels: np.ndarray, y: np.ndarray, split: np.ndarray, seed: int, threads: int | None = None) -> dict:
    """Train the MedMNIST ResNet-18 (28) recipe on the train rows; return test metrics and seconds."""
    import timm
    import torch

    from lepton_apps.device import seed_everything
    from lepton_apps.medical.evaluate import build_report, calibrate
    from lepton_apps.metrics import roc_auc

    start = time.perf_counter()
    seed_everything(seed)
    net = timm.create_model("resnet18", pretrained=False, num_classes=int(y.max()) + 1, in_chans=1)
    opt = torch.optim.Adam(net.parameters(), lr=BASELINE["lr"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(BASELINE["milestones"]), gamma=0.1)
    x = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.5
    t = torch.from_numpy(y)
    rows = {s: torch.from_numpy(np.flatnonzero(split == s)) for s in ("train", "val", "test")}
    gen = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss()

    def logits_of(idx: torch.Tensor) -> np.ndarray:
        net.eval()
        with torch.inference_mode():
            return torch.cat([net(x[idx[i:i + 512]]) for i in range(0, len(idx), 512)]).float().numpy()

    best, best_state = -math.inf, None
    for _ in range(BASELINE["epochs"]):
        net.train()
        order = rows["train"][torch.randperm(len(rows["train"]), generator=gen)]
        for i in range(0, len(order), BASELINE["batch_size"]):
            b = order[i:i + BASELINE["batch_size"]]
            if len(b) < 2:  # BatchNorm cannot train on one image
                continue
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x[b]), t[b]).backward()
            opt.step()
        sched.step()
        val_auc = roc_auc(y[rows["val"].numpy()], torch.softmax(torch.from_numpy(logits_of(rows["val"])), 1)[:, 1].numpy())
        if val_auc > best:
            best, best_state = val_auc, {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    val_logits, test_logits = logits_of(rows["val"]), logits_of(rows["test"])
    cal = calibrate(val_logits, y[rows["val"].numpy()], "binary")
    report = build_report(test_logits, y[rows["test"].numpy()], "binary", ["0", "1"], cal, split="test", n_boot=50)
    return {"auc": float(report["roc_auc"]), "acc": float(report["accuracy_argmax"]),
            "acc_op": float(report["accuracy"]), "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- the benchmark

def cases(quick: bool, data_root: Path, sizes: list[int | str] | None = None,
          datasets: tuple[str, ...] = ("pneumoniamnist", "kermany")) -> list[tuple[str, int | str, Path]]:
    """Return ``(dataset, size, source)`` for the chosen data sets present under ``data_root``
    (``sizes``: the PneumoniaMNIST sizes to run, default all of :data:`SIZES`, quick :data:`QUICK_SIZES`)."""
    out = []
    npz = data_root / "medical" / "pneumoniamnist.npz"
    kermany = data_root / "medical" / "chest_xray_kermany_train"
    if "pneumoniamnist" in datasets:
        if npz.is_file():
            out += [("pneumoniamnist", s, npz) for s in (sizes or (QUICK_SIZES if quick else SIZES))]
        else:
            log(f"skipping PneumoniaMNIST: {npz} not found")
    if "kermany" in datasets:
        if quick:
            log("quick: Kermany skipped")
        elif kermany.is_dir():
            out.append(("kermany", "all", kermany))
        else:
            log(f"skipping Kermany: {kermany} not found")
    return out


def run(quick: bool, seeds: list[int], data_root: Path, large_seeds: int = 1,
        methods: tuple[str, ...] = ("default", "baseline"), sizes: list[int | str] | None = None,
        datasets: tuple[str, ...] = ("pneumoniamnist", "kermany"), sink: Path | None = None,
        epochs: int | None = None) -> list[dict]:
    """Return one row per (dataset, size, method, seed): auc, acc, acc_op, seconds (see module doc); ``epochs``
    trains the default method with that exact epoch count instead of its schedule.

    ``large_seeds`` seeds run at size ``all`` (PneumoniaMNIST all, Kermany) — the first ones of
    ``seeds``; ``sizes`` and ``datasets`` pick a part of the benchmark (to run it in pieces); with
    ``sink`` the rows so far are rewritten there (atomically) after every run, so a long run that is
    stopped keeps what it measured."""
    from lepton_apps.io import atomic_write_json

    seeds = seeds[:1] if quick else list(seeds)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="robust_medical_") as tmp:
        work = Path(tmp)
        for dataset, size, source in cases(quick, Path(data_root), sizes, datasets):
            large = size == "all"
            for seed in (seeds[:large_seeds] if large else seeds):
                if dataset == "kermany":
                    data = kermany_manifest(source, work / "kermany" / "manifest.csv")
                else:
                    data = subsample_npz(source, work / f"{dataset}-{size}-{seed}.npz", size, seed)
                for method in methods:
                    log(f"{dataset} size={size} seed={seed} {method} ...")
                    if method == "default":
                        res = run_default(data, work / f"{dataset}-{size}-{seed}" / "bundle", seed, epochs)
                    else:
                        res = run_baseline(*baseline_splits(data, seed), seed=seed)
                    info = res.pop("info", "")
                    log(f"  auc={res['auc']:.4f} acc={res['acc']:.4f} acc_op={res['acc_op']:.4f} "
                        f"{res['seconds']:.0f}s {info}")
                    rows.append({"domain": DOMAIN, "dataset": dataset, "size": size, "method": method,
                                 "seed": seed, **res})
                    if sink:
                        atomic_write_json(sink, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, sizes 200 and 1000, no Kermany")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--large-seeds", type=int, default=1, help="seeds run at full size (PneumoniaMNIST all, Kermany)")
    parser.add_argument("--methods", nargs="+", default=["default", "baseline"], choices=["default", "baseline"])
    parser.add_argument("--datasets", nargs="+", default=["pneumoniamnist", "kermany"],
                        choices=["pneumoniamnist", "kermany"])
    parser.add_argument("--sizes", nargs="+", default=None, metavar="N|all",
                        help="PneumoniaMNIST training sizes (default 200 500 1000 all)")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here, after every run "
                        "(tables of several such files: bench/robustness.py --table FILE ...)")
    parser.add_argument("--epochs", type=int, default=None, help="development: the default method with this exact "
                        "epoch count instead of its schedule (e.g. 5, the count before 2026-12-08)")
    args = parser.parse_args(argv)
    sizes = [s if s == "all" else int(s) for s in args.sizes] if args.sizes else None
    rows = run(args.quick, args.seeds, args.data_root, large_seeds=args.large_seeds, methods=tuple(args.methods),
               sizes=sizes, datasets=tuple(args.datasets), sink=args.out, epochs=args.epochs)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
