"""Quality of the medical template's DEFAULT configuration on PneumoniaMNIST (MedMNIST v2, 28x28).

Trains ``MedicalConfig(data=pneumoniamnist.npz)`` with every other setting at its default (the
file's own train / val / test splits are used), then prints the test AUC and accuracy beside the
MedMNIST v2 paper's ResNet-18 (28) row: AUC 0.944, ACC 0.854.

    .venv/bin/python bench/medical_quality.py [--data ../shared/data/medical/pneumoniamnist.npz]

Accuracy is given twice: at the template's operating point (Youden's J on validation, what the
bundle's decision uses) and at argmax (what the MedMNIST paper reports).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"model": "ResNet-18 (28), MedMNIST v2 paper", "auc": 0.944, "acc": 0.854}


def evaluate_checkpoint(cfg) -> tuple[dict, dict]:
    """Return (report, history) for the best weights of the interrupted run ``<out>-run`` (val-fitted
    temperature and threshold, test report), exactly as ``train()`` would have computed them."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from lepton_apps.medical.evaluate import build_report, calibrate
    from lepton_apps.medical.model import build_network
    from lepton_apps.medical.model import predict_logits
    from lepton_apps.medical.training import prepare_data

    run = Path(cfg.out).with_name(Path(cfg.out).name + "-run")
    md, split, pixels, y, _ = prepare_data(cfg)
    net, _ = build_network(cfg.backbone, len(md.label_names), pretrained=cfg.pretrained)
    net.load_state_dict(load_file(str(run / "best.safetensors")))
    logits = {s: predict_logits(net, torch.from_numpy(pixels[split == s])) for s in ("val", "test")}
    cal = calibrate(logits["val"], y[split == "val"], md.task, cfg.operating_point, cfg.target_sensitivity)
    report = build_report(logits["test"], y[split == "test"], md.task, md.label_names, cal, split="test",
                          n_boot=cfg.n_boot)
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    best = int(np.argmax([e["val_auc"] for e in epochs])) + 1
    return report, {"epochs_run": len(epochs), "best_epoch": best, "history": epochs, "interrupted": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "medical" / "pneumoniamnist.npz"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "medical-quality" / "bundle"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--from-checkpoint", action="store_true",
                        help="do not train: evaluate the best checkpoint of an interrupted run in <out>-run "
                             "(for runs cut short; the output says how many epochs it had)")
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"data not found: {args.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    from lepton_apps.medical import MedicalConfig, train

    cfg = MedicalConfig(data=args.data, out=args.out, num_threads=args.threads, progress=False)
    start = time.perf_counter()
    if args.from_checkpoint:
        report, history = evaluate_checkpoint(cfg)
    else:
        bundle = train(cfg)
        report = json.loads((bundle / "report.json").read_text())
        history = json.loads((bundle / "history.json").read_text())
    seconds = time.perf_counter() - start
    result = {
        "config": {k: v for k, v in cfg.model_dump().items() if k in ("backbone", "pretrained", "image_size", "epochs",
                                                                       "batch_size", "lr", "operating_point")},
        "test_n": report["n"], "test_auc": report["roc_auc"], "test_auc_ci95": report["roc_auc_ci"],
        "test_acc_operating_point": report["accuracy"], "test_acc_argmax": report["accuracy_argmax"],
        "sensitivity": report["sensitivity"], "specificity": report["specificity"], "threshold": report["threshold"],
        "ece_before": report["ece_before"], "ece_after": report["ece_after"],
        "epochs_run": history["epochs_run"], "best_epoch": history["best_epoch"],
        "val_auc_per_epoch": [round(e["val_auc"], 4) for e in history["history"]],
        "interrupted_run": bool(history.get("interrupted")), "wall_seconds": round(seconds, 1),
        "peer": PAPER,
        "beats_peer_auc": report["roc_auc"] > PAPER["auc"],
        "beats_peer_acc_argmax": report["accuracy_argmax"] > PAPER["acc"],
        "beats_peer_acc_operating_point": report["accuracy"] > PAPER["acc"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
