"""GPU readiness check (issue 23): the CUDA paths of all three templates measured in one run, one JSON.

On a CUDA machine it runs, in about 5-10 minutes on one H100, each part timed and recorded (a part that fails
records its error and the others still run; parts left when ``--budget-s`` is spent are skipped with that reason):

1. ``medical_training``: images/s of the template's training path (uint8 images in memory, the core Trainer with
   bf16 autocast + channels_last + ``torch.compile``, on-device augmentation) against a plain fp32 eager loop and
   the synthetic in-device ceiling (random tensors already on the GPU, bf16 + channels_last + compile), the same
   backbone and batch (``bench/medical_bench.py``'s functions). Goal: template >= 0.8 of the ceiling.
2. ``medical_auc``: the template trained on PneumoniaMNIST (``../shared/data/medical/pneumoniamnist.npz``; the demo
   data when absent) with its GPU defaults (bf16, channels_last) + ``compile``, and again with ``precision: fp32``,
   compile off; test ROC-AUC, wall seconds and optimisation steps of each (the same seed and schedule).
3. ``medical_inference``: images/s of batch inference on the bf16 bundle of part 2: a plain fp32 eager loop, the
   template's GPU path (``MedicalClassifier.load(device="cuda")``: bf16 + channels_last), ONNX Runtime's CUDA
   provider on the fp32 export, and its TensorRT provider when this onnxruntime has one; the max abs difference
   of each one's probabilities to the eager loop. Goal: the template >= 2.5x the eager loop.
4. ``support_encoding``: sentences/s of the template's SentenceEncoder (all-MiniLM-L6-v2, bf16 on a GPU) against
   sentence-transformers ``encode`` on the same files and texts (``bench/support_bench.py``'s ``throughput``).
   Goal: >= 2x sentence-transformers at its best batch size.
5. ``ddp``: when 2+ GPUs are visible, the template's training path under ``torchrun --nproc_per_node=2`` (NCCL,
   DistributedDataParallel through the core Trainer) against one GPU in the same run: images/s and the scaling.

Without CUDA it prints that it needs a CUDA GPU, writes ``{"cuda": false, ...}`` to ``--json`` if given, and
exits 0 without measuring. ``--cpu-smoke`` runs every part at tiny sizes on the CPU instead (goals not judged;
DDP on 2 gloo processes), to check the script end to end on a machine without a GPU.

    .venv/bin/python bench/gpu_check.py --json gpu_check.json            # on the GPU machine
    .venv/bin/python bench/gpu_check.py --cpu-smoke --json smoke.json    # anywhere: the code paths, tiny sizes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT.parent / "shared" / "data"
GOALS = {"train_over_ceiling": 0.8, "infer_over_eager": 2.5, "encode_over_sentence_transformers": 2.0}
SIZES = {   # (GPU run, CPU smoke)
    "train_image_size": (128, 32), "train_batch": (256, 16), "train_steps": (30, 2),
    "auc_images": ("all", 200), "auc_image_size": (None, 32),
    "infer_images": (8192, 64), "infer_batch": (512, 32),
    "encode_repeats": (3, 1), "encode_batch_sizes": ("32,64,128,256", "16"),
}


def say(text: str) -> None:
    print(f"[gpu_check] {text}", file=sys.stderr, flush=True)


def size(name: str, smoke: bool):
    return SIZES[name][1 if smoke else 0]


def verdict(value: float | None, goal: float, smoke: bool) -> str:
    if smoke:
        return "not judged (CPU smoke run)"
    if value is None:
        return "not measured"
    return f"{'met' if value >= goal else 'missed'} ({value:.2f} vs >= {goal})"


# --------------------------------------------------------------------------- parts

def medical_training(device: str, smoke: bool, backbone: str) -> dict[str, Any]:
    import medical_bench as mb

    px, batch, steps = size("train_image_size", smoke), size("train_batch", smoke), size("train_steps", smoke)
    n = batch * steps
    cuda = device == "cuda"
    template = mb.template_train(backbone, n, px, batch, device, compile_=cuda)
    eager, _ = mb.eager_fp32(backbone, n, px, batch, device)
    ceiling, _ = mb.ceiling(backbone, px, batch, max(steps, 3), device, compile_=cuda)
    ratio = template / ceiling
    return {"backbone": backbone, "image_size": px, "batch": batch, "images_per_epoch": n,
            "template_images_per_s": round(template, 1), "eager_fp32_images_per_s": round(eager, 1),
            "ceiling_images_per_s": round(ceiling, 1), "template_over_ceiling": round(ratio, 3),
            "template_over_eager": round(template / eager, 2),
            "goal_train_over_ceiling": verdict(ratio, GOALS["train_over_ceiling"], smoke)}


def pneumonia_data(work: Path, smoke: bool) -> tuple[Path, str]:
    """Return (data path, what it is): PneumoniaMNIST (all, or a stratified subset in a smoke run) or the demo."""
    npz = DATA / "medical" / "pneumoniamnist.npz"
    n = size("auc_images", smoke)
    if npz.is_file():
        if n == "all":
            return npz, "PneumoniaMNIST (all 4,708 training + validation images; official test split)"
        import robust_medical

        return robust_medical.subsample_npz(npz, work / "pneumonia.npz", n, 0), f"PneumoniaMNIST, {n} training images"
    from lepton_apps.medical.demo import write_demo_data

    data = write_demo_data(work / "demo", n=120, size=32, seed=0)
    return data / "manifest.csv", f"the medical demo data ({npz} not found)"


def medical_auc(device: str, smoke: bool, work: Path) -> dict[str, Any]:
    from lepton_apps.medical import MedicalConfig, train

    data, described = pneumonia_data(work, smoke)
    extra = {"image_size": size("auc_image_size", smoke), "epochs": 1} if smoke else {}
    runs = {"gpu_defaults_bf16_compile": {"compile": device == "cuda"},
            "fp32_eager": {"precision": "fp32", "compile": False}}
    out: dict[str, Any] = {"data": described}
    for name, over in runs.items():
        t = time.perf_counter()
        bundle = train(MedicalConfig(data=str(data), out=str(work / name), device=device, n_boot=20, progress=False,
                                     seed=0, **extra, **over))
        seconds = time.perf_counter() - t
        report = json.loads((bundle / "report.json").read_text())
        hist = json.loads((bundle / "history.json").read_text())
        out[name] = {"roc_auc": round(float(report["roc_auc"]), 4), "accuracy": round(float(report["accuracy"]), 4),
                     "seconds": round(seconds, 1), "optimizer_steps": hist.get("optimizer_steps"),
                     "epochs_run": hist.get("epochs_run"), "bundle": str(bundle)}
        say(f"medical_auc {name}: AUC {out[name]['roc_auc']}, {out[name]['seconds']} s")
    out["auc_difference"] = round(out["gpu_defaults_bf16_compile"]["roc_auc"] - out["fp32_eager"]["roc_auc"], 4)
    out["speedup"] = round(out["fp32_eager"]["seconds"] / out["gpu_defaults_bf16_compile"]["seconds"], 2)
    return out


def medical_inference(device: str, smoke: bool, bundle: str | None, work: Path) -> dict[str, Any]:
    import torch

    from export_bench import interleaved_rates

    from lepton_apps.export import load_export
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical.evaluate import probabilities
    from lepton_apps.medical.export import export
    from lepton_apps.medical.predict import run_session

    if bundle is None:
        raise RuntimeError("no bundle: the medical_auc part did not train one")
    n, batch = size("infer_images", smoke), size("infer_batch", smoke)
    plain = MedicalClassifier.load(bundle, device="cpu", backend="torch")
    side = plain.image_size
    images = np.random.default_rng(0).integers(0, 255, (n, plain.channels, side, side), dtype=np.uint8)
    net = plain.model.float().to(device).eval()

    def eager() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, n, batch):
                x = torch.from_numpy(images[i:i + batch]).to(device)
                out.append(net(x).float().cpu())
        return probabilities(torch.cat(out).numpy(), plain.task, plain.temperature)

    default = MedicalClassifier.load(bundle, device=device, backend="torch")
    runs: dict[str, Callable[[], Any]] = {"eager_fp32_loop": eager, "template_default": lambda: default.predict_pixels(images)}
    notes = {"template_default": default.policy.describe()}
    folder = export(bundle, work / "fp32-export", synthetic_check=True, overwrite=True)
    found = load_export(folder)
    providers = {"onnx_runtime_cpu" if device == "cpu" else "onnx_runtime_cuda":
                 ["CPUExecutionProvider"] if device == "cpu" else ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    try:
        import onnxruntime as ort

        if "TensorrtExecutionProvider" in ort.get_available_providers() and device == "cuda":
            providers["onnx_runtime_tensorrt"] = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            notes["onnx_runtime_tensorrt"] = f"not run: this onnxruntime has {ort.get_available_providers()}"
    except ImportError as exc:
        notes["onnx_runtime"] = f"not run: {exc}"
        providers = {}
    for name, prov in providers.items():
        try:
            session = found.session(prov)
            notes[name] = f"providers {session.get_providers()}"
            runs[name] = lambda s=session: run_session(s, images, batch)["probabilities"].astype(np.float64)
        except Exception as exc:  # noqa: BLE001 - a provider that does not load is a result
            notes[name] = f"not run: {type(exc).__name__}: {exc}"
    reference = eager()
    diffs = {k: float(np.abs(np.asarray(fn(), dtype=np.float64) - reference).max()) for k, fn in runs.items()}
    # each run returns its probabilities on the host, so its time includes the device's work
    rates = {k: round(v["per_s"], 1) for k, v in interleaved_rates(runs, n, 1 if smoke else 3).items()}
    ratio = {k: round(v / rates["eager_fp32_loop"], 2) for k, v in rates.items()}
    return {"images": n, "batch": batch, "image_size": side, "images_per_s": rates, "ratio_vs_eager": ratio,
            "max_abs_diff_to_eager": diffs, "notes": notes,
            "goal_infer_over_eager": verdict(ratio["template_default"], GOALS["infer_over_eager"], smoke)}


def support_encoding(smoke: bool) -> dict[str, Any]:
    import support_bench

    sizes = [int(b) for b in size("encode_batch_sizes", smoke).split(",")]
    out = support_bench.throughput(size("encode_repeats", smoke), sizes)
    out["goal_encode_over_sentence_transformers"] = verdict(out["ratio_template_default_vs_st_best"],
                                                           GOALS["encode_over_sentence_transformers"], smoke)
    return out


def ddp(device: str, smoke: bool, backbone: str, single: float | None) -> dict[str, Any]:
    import torch

    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if device == "cuda" and gpus < 2:
        return {"skipped": f"{gpus} CUDA GPU visible: the 2-GPU torchrun run needs 2"}
    px, batch, steps = size("train_image_size", smoke), size("train_batch", smoke), size("train_steps", smoke)
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as tmp:
        result = Path(tmp) / "rank0.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).resolve()), "--_ddp-worker", json.dumps(
                   {"backbone": backbone, "n": batch * steps * 2, "size": px, "batch": batch, "device": device,
                    "out": str(result)})]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun exited {proc.returncode}: {proc.stderr[-2000:]}")
        rank0 = json.loads(result.read_text())
    out = {"processes": 2, "backend": "nccl" if device == "cuda" else "gloo", "wall_s": round(wall, 1), **rank0}
    if single:
        out["scaling_vs_one_gpu"] = round(rank0["images_per_s"] / single, 2)
    return out


def ddp_worker(spec: dict) -> None:
    """One torchrun process: the template's training path on ``spec`` (global images/s written by rank 0)."""
    import torch.distributed as dist

    import medical_bench as mb

    rate = mb.template_train(spec["backbone"], spec["n"], spec["size"], spec["batch"], spec["device"], compile_=False)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["out"]).write_text(json.dumps({"images_per_s": round(rate, 1), "images_per_epoch": spec["n"],
                                                 "world_size": int(os.environ.get("WORLD_SIZE", "1"))}))
    if dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- driver

def environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "device": device, "cpu_count": os.cpu_count()}
    if device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                   bf16_supported=torch.cuda.is_bf16_supported())
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        env["onnxruntime"] = None
    return env


def run(smoke: bool, parts: list[str], budget_s: float, backbone: str) -> dict[str, Any]:
    device = "cpu" if smoke else "cuda"
    start = time.perf_counter()
    result: dict[str, Any] = {"cuda": device == "cuda", "smoke": smoke, "environment": environment(device),
                              "goals_on_h100": GOALS, "parts": {}}
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    state: dict[str, Any] = {}

    steps: dict[str, Callable[[], dict]] = {
        "medical_training": lambda: medical_training(device, smoke, backbone),
        "medical_auc": lambda: medical_auc(device, smoke, work),
        "medical_inference": lambda: medical_inference(
            device, smoke, state.get("medical_auc", {}).get("gpu_defaults_bf16_compile", {}).get("bundle"), work),
        "support_encoding": lambda: support_encoding(smoke),
        "ddp": lambda: ddp(device, smoke, backbone, state.get("medical_training", {}).get("template_images_per_s")),
    }
    for name in parts:
        spent = time.perf_counter() - start
        if spent > budget_s:
            result["parts"][name] = {"skipped": f"the budget of {budget_s:.0f} s was spent ({spent:.0f} s)"}
            continue
        say(f"{name} ...")
        t = time.perf_counter()
        try:
            state[name] = steps[name]()
        except Exception as exc:  # noqa: BLE001 - one failing part is a result; the others still run
            state[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
        state[name]["part_seconds"] = round(time.perf_counter() - t, 1)
        result["parts"][name] = state[name]
        say(f"{name}: {json.dumps({k: v for k, v in state[name].items() if k != 'traceback'})[:600]}")
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["failed_parts"] = [k for k, v in result["parts"].items() if "error" in v]
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_ddp-worker"]:
        ddp_worker(json.loads(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the result here (also printed)")
    parser.add_argument("--cpu-smoke", action="store_true", help="every part at tiny sizes on the CPU, goals not judged")
    parser.add_argument("--parts", default="medical_training,medical_auc,medical_inference,support_encoding,ddp")
    parser.add_argument("--budget-s", type=float, default=540, help="parts not started by then are skipped")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args(argv)
    import torch

    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"medical_training", "medical_auc", "medical_inference", "support_encoding", "ddp"}
    if unknown:
        parser.error(f"unknown --parts {sorted(unknown)}")
    if not torch.cuda.is_available() and not args.cpu_smoke:
        message = ("bench/gpu_check.py needs a CUDA GPU (torch.cuda.is_available() is False on this machine): "
                   "nothing measured. Run it on a GPU machine, or with --cpu-smoke to check the script on the CPU.")
        print(message)
        result = {"cuda": False, "measured": False, "message": message, "environment": environment("cpu")}
    else:
        result = run(args.cpu_smoke, parts, args.budget_s, args.backbone)
        print(json.dumps(result, indent=1, default=str))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
