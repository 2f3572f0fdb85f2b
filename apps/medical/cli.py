"""``lepton-apps medical …``: train, evaluate, predict, check, demo-data, deidentify, export.

Heavy imports (torch, timm, pydicom) happen inside the commands, so the CLI and the hub can
import this module cheaply.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

cli = typer.Typer(help="Medical image classification: PNG/JPEG/DICOM folders, CSV manifests, MedMNIST .npz.",
                  no_args_is_help=True)


@cli.command("train")
def train_cmd(data: Optional[str] = typer.Argument(None, help="Folder root/<class>/*, manifest.csv or MedMNIST .npz."),
              config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config (MedicalConfig keys)."),
              out: Optional[Path] = typer.Option(None, help="Bundle folder to write (default runs/medical-<time>/bundle)."),
              backbone: Optional[str] = typer.Option(None, help="timm backbone name (default efficientnet_lite0)."),
              epochs: Optional[int] = typer.Option(None, help="Exact epochs (default: sized in optimizer steps)."),
              image_size: Optional[int] = typer.Option(None, help="Input size in pixels, 28 to 512 (default: from the images)."),
              patient_id_pattern: Optional[str] = typer.Option(
                  None, help="Regex with a named group 'patient' taking the patient id from each file name."),
              pretrained: Optional[bool] = typer.Option(None, "--pretrained/--scratch", help="Start from ImageNet weights."),
              weights: Optional[Path] = typer.Option(None, help="Local backbone weights (.safetensors or state dict)."),
              register: Optional[str] = typer.Option(None, help="Also register the bundle under this name."),
              home: Optional[Path] = typer.Option(None, help="Registry folder for --register.")):
    """Train a classifier and write a bundle (weights, report, plots, calibration).

    Example: lepton-apps medical train xrays/ --epochs 10 --backbone resnet18 --register xray-v1
    """
    from .config import MedicalConfig
    from .evaluate import summary
    from .training import train

    overrides = {"data": data, "out": str(out) if out else None, "backbone": backbone, "epochs": epochs,
                 "image_size": image_size, "patient_id_pattern": patient_id_pattern, "pretrained": pretrained,
                 "weights": str(weights) if weights else None}
    bundle = train(MedicalConfig.from_yaml_and_overrides(config, overrides))
    report = json.loads((bundle / "report.json").read_text())
    typer.echo(f"bundle: {bundle}")
    typer.echo(summary(report))
    if register:
        from lepton_apps.registry import Registry

        entry = Registry(home).register(bundle, register)
        typer.echo(f"registered {entry.name}")


@cli.command("check")
def check_cmd(data: str = typer.Argument(..., help="Folder, manifest.csv or MedMNIST .npz."),
              json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON."),
              patient_id_pattern: Optional[str] = typer.Option(
                  None, help="Regex with a named group 'patient' taking the patient id from each file name.")):
    """Check a data set: counts, unreadable files, duplicates, patient leakage, sizes. Exit 1 on blocking issues
    (unreadable files, a single class, empty class folders, duplicates or patients across splits).

    Example: lepton-apps medical check xrays/ --patient-id-pattern '(?P<patient>person\\d+)'
    """
    from lepton_apps.io import atomic_write_json

    from .check import check_data, format_report, has_blocking_issues

    report = check_data(data, patient_id_pattern=patient_id_pattern)
    typer.echo(format_report(report))
    if json_out:
        atomic_write_json(json_out, report)
    if has_blocking_issues(report):
        raise typer.Exit(1)


@cli.command("demo-data")
def demo_data_cmd(out: Path = typer.Argument(..., help="Folder to write the synthetic images to."),
                  n: int = typer.Option(500, help="Number of images (half with a lesion-like blob)."),
                  seed: int = typer.Option(0, help="Random seed.")):
    """Write a SYNTHETIC two-class image set (normal / lesion) as PNG folders plus manifest.csv.

    Example: lepton-apps medical demo-data demo_data/medical
    """
    from .demo import write_demo_data, write_demo_dicom

    write_demo_data(out, n=n, seed=seed)
    write_demo_dicom(Path(out) / "samples" / "synthetic_lesion.dcm", seed=seed + 11)
    typer.echo(f"wrote {n} synthetic images to {out} (manifest: {Path(out) / 'manifest.csv'})")


@cli.command("deidentify")
def deidentify_cmd(src: Path = typer.Argument(..., help="DICOM file or folder."),
                   dst: Path = typer.Argument(..., help="Output file or folder."),
                   key: Optional[str] = typer.Option(None, envvar="LEPTON_DEID_KEY",
                                                     help="Secret for consistent pseudonyms across runs (default: random).")):
    """Write de-identified DICOM copies (PS3.15 basic profile: names, IDs, dates, addresses, UIDs).

    Example: lepton-apps medical deidentify incoming/ deidentified/
    """
    from .deid import deidentify

    res = deidentify(src, dst, key=key)
    typer.echo(f"de-identified {res['written']} file(s) into {dst}; {len(res['failed'])} failed; "
               f"{res['skipped_non_dicom']} non-DICOM file(s) skipped")
    for f in res["failed"]:
        typer.echo(f"  failed: {f['file']} ({f['reason']})", err=True)
    if res["failed"]:
        raise typer.Exit(1)


@cli.command("export")
def export_cmd(bundle: str = typer.Argument(..., help="Bundle path, registry name or medical:latest."),
               out: Path = typer.Option(..., "--out", help="Export folder to write (model.onnx + export.json)."),
               fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
               quantize: Optional[str] = typer.Option(None, help="int8: static quantisation, written only if it passes "
                                                      "the AUC gate."),
               max_auc_drop: float = typer.Option(0.005, help="int8 gate: most validation AUC the int8 model may lose "
                                                  "against fp32."),
               max_decisions_changed: float = typer.Option(0.02, help="int8 gate: most share of validation images "
                                                           "whose decision at the operating threshold may change."),
               calibration_images: int = typer.Option(200, help="int8: training images to calibrate on (a seeded "
                                                      "sample)."),
               data: Optional[str] = typer.Option(None, help="Labelled images (folder, manifest.csv, .npz) to check on: "
                                                  "its val split (else all rows); int8 calibrates on its train split. "
                                                  "Default: the bundle's validation split rebuilt from its training data."),
               overwrite: bool = typer.Option(False, help="Replace an existing export folder.")):
    """Export the CNN to ONNX with its normalisation inside the graph (dynamic batch, fixed size), checked against
    PyTorch; with --quantize int8, static int8 behind an AUC gate (refused with the numbers when it misses).

    Example: lepton-apps medical export medical:latest --format onnx --quantize int8 --out exports/xray-int8
    """
    from lepton_apps.errors import ConfigError
    from lepton_apps.export import load_export

    from .export import export

    if fmt != "onnx":
        raise ConfigError(f"unknown export format {fmt!r}", where="--format", fix="use --format onnx")
    path = export(bundle, out, quantize=quantize, data=data, max_auc_drop=max_auc_drop,
                  max_decisions_changed=max_decisions_changed, calibration_images=calibration_images, overwrite=overwrite)
    card = load_export(path).card
    check = card["check"]
    typer.echo(f"exported {path} ({card['precision']} ONNX): max abs difference to PyTorch {check['max_abs_diff']:.2g} "
               f"in probabilities on {check['data']}")
    gate = card.get("gate")
    if gate:
        typer.echo(f"int8 gate passed: AUC {gate['int8_auc']:.4f} vs fp32 {gate['fp32_auc']:.4f} (drop {gate['drop']:.4f}, "
                   f"allowed {gate['max_drop']:.4f}); calibrated on {card['quantization']['calibration']}")
        typer.echo(f"  probabilities moved by up to {gate['probability_abs_diff_to_fp32']['max']:.3f} (mean "
                   f"{gate['probability_abs_diff_to_fp32']['mean']:.3f}); {gate['decisions_changed']:.1%} of the decisions "
                   "differ from fp32's")
