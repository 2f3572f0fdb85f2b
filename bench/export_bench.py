"""Export backends benchmark (issue 14): eager PyTorch / LightGBM against their ONNX fp32 and int8 exports.

Measures in one run, on this machine's CPU (the GPU part only when ``torch.cuda.is_available()``):

1. **Medical** — small real bundles trained here with the template (the sizes are in the output):
   efficientnet_lite0 (the default backbone, packaged ImageNet weights) at 64 px on a PneumoniaMNIST subset
   (28 px upscaled) and at 224 px on a patient-level subset of Kermany's chest X-rays (224x224 JPEGs), and
   resnet18 at 64 px on the PneumoniaMNIST subset (ImageNet weights when in the Hugging Face cache, else from
   scratch; the row says which). Each bundle is exported fp32 and int8 (``lepton_apps.medical.export``; an
   int8 refusal by the accuracy gate is recorded with its message, and the int8 model is then exported again
   with the gate opened — ``max_auc_drop=0.999, max_decisions_changed=1`` — only to time it, which the row
   says). Images/s on the same uint8 test images, batches of 64: (a) eager fp32 PyTorch
   (``MedicalClassifier.load(bundle, device="cpu", backend="torch").predict_pixels``), (b) the fp32 ONNX
   session, (c) the int8 session; the test ROC AUC of each backend on the same labelled test images and the
   max abs difference of its probabilities to eager. Goal: int8 >= 2x eager fp32 within the accuracy gate.
2. **Support** — the demo bundle and a bundle built on one or two CLINC150 domains (15 FAQs of 20 training
   paraphrases each, as bench/robust_support.py builds them). Sentences/s on the same texts (KB texts +
   questions): sentence-transformers ``encode`` on the encoder's files, the template's fp32 ONNX path
   (``SupportAssistant.load(..., backend="onnx").encoder.encode``) and the int8 export
   (``lepton_apps.support.export`` then ``SupportAssistant.load(..., export=DIR)``; a gate refusal is recorded
   and the int8 model timed after an export with ``max_top1_drop=0.999, max_handoff_recall_drop=0.999``).
   Retrieval top-1 and hand-off recall of the assistant answering with each backend's query vectors
   (``lepton_apps.support.export.retrieval_metrics``) on held-out questions: the demo bundle's
   ``eval_details.parquet`` (with the template's general out-of-scope set where it has no out-of-scope
   question), CLINC150's ``test`` questions of the domain plus its ``oos_val`` questions. Goal: int8 >= 1.5x
   the fp32 ONNX path within the gate.
3. **Finance** — the demo bundle (simulated transactions, the demo size) and one trained on the ULB card
   fraud subset. Rows/s on the same feature matrix (the bundle's validation rows rebuilt by
   ``lepton_apps.finance.export.check_rows``, tiled to ``--rows``): LightGBM ``booster.predict``, lleaves
   (``compiled.compile_model``; cold compile time reported apart) and the ONNX export; max abs difference of
   P(fraud) of each to LightGBM.
4. **GPU** (CUDA only; otherwise a line says it was skipped) — the 224 px efficientnet_lite0 bundle: a plain
   eager fp32 loop on the GPU, the template's default GPU path (``MedicalClassifier.load(bundle,
   device="cuda")``: bf16 autocast, channels_last) and ONNX Runtime's CUDA provider
   (``backend="onnx"`` with the fp32 export). Goal: the template's GPU path >= 2.5x the eager fp32 loop.

Timing: every backend runs once to warm up, then ``--repeats`` rounds call each backend in turn (so
background load hits all alike) and the median wall time counts. PyTorch, ONNX Runtime (intra-op), LightGBM
and lleaves all get ``--threads`` threads (default: the machine's CPUs). Ratios are between backends measured
in the same run; absolute rates depend on the machine and its load (recorded at start and end).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python bench/export_bench.py \\
        [--quick] [--skip medical,support,finance] [--threads N] [--repeats 3] [--json bench/results/export_bench.json]

``--quick`` shrinks every size (training sets, epochs, timed items, one CLINC150 domain, a smaller simulated
data set) to check the script end to end in a few minutes; its numbers are not the benchmark's.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))
DATA_ROOT = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
SECTIONS = ("medical", "support", "finance")
BATCH = 64
KERMANY_PATTERN = r"(?P<patient>person\d+|(?:NORMAL2-)?IM-\d+)"
GOALS = {"medical": 2.0, "support": 1.5, "gpu": 2.5}

#: sizes of the full run and of --quick
SIZES = {
    "full": {"pneumonia": {"train": 500, "val": 300, "test": None}, "kermany": {"train": 300, "val": 150, "test": 128},
             "epochs_64": 2, "epochs_224": 1, "timed_64": 512, "timed_224": 128,
             "clinc_domains": ("travel", "kitchen_and_dining"),
             "texts": 600, "questions": None, "finance_sim": {"n_customers": 1000, "n_terminals": 2000, "n_days": 60},
             "rows": 100_000, "gpu_images": 512},
    "quick": {"pneumonia": {"train": 120, "val": 60, "test": 64}, "kermany": {"train": 40, "val": 30, "test": 32},
              "epochs_64": 1, "epochs_224": 1, "timed_64": 64, "timed_224": 32, "clinc_domains": ("travel",),
              "texts": 160, "questions": 200, "finance_sim": {"n_customers": 300, "n_terminals": 600, "n_days": 30},
              "rows": 20_000, "gpu_images": 128},
}


def say(text: str) -> None:
    """Print a progress line to stderr."""
    print(f"[export_bench] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- timing

def interleaved_rates(runs: dict[str, Callable[[], Any]], items: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Return ``{backend: {"per_s", "seconds_median", "seconds"}}``: each run called once to warm up, then
    ``repeats`` rounds calling every run in turn; ``per_s`` is ``items`` over the median wall time."""
    for fn in runs.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t)
    return {name: {"per_s": items / statistics.median(s), "seconds_median": statistics.median(s),
                   "seconds": [round(x, 4) for x in s]} for name, s in seconds.items()}


def ort_session(folder: Path, threads: int):
    """Return an ONNX Runtime session of a verified export folder with ``threads`` intra-op threads (the
    export's own ``session()`` takes ONNX Runtime's default thread count, which need not equal torch's)."""
    import onnxruntime as ort

    from lepton_apps.export import load_export

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(load_export(folder).model_path), options, providers=["CPUExecutionProvider"])


def goal(ratio: float, target: float, gate_passed: bool | None) -> str:
    """Return "met" or "missed (why)" for a speed goal of ``target``x; ``gate_passed`` False (int8 refused by the
    accuracy gate) misses it whatever the speed, None means no gate applies."""
    why = []
    if ratio < target:
        why.append(f"{ratio:.2f}x < {target}x")
    if gate_passed is False:
        why.append("int8 refused by the accuracy gate")
    return "met" if not why else f"missed ({'; '.join(why)})"


def export_int8(export_fn: Callable[..., Path], out: Path, opened: dict[str, float]) -> tuple[Path, str | None]:
    """Export int8 with the product gate; when it refuses, export again with the gate ``opened`` (to time it);
    return (folder, the refusal message or None)."""
    from lepton_apps.export import ExportError

    try:
        return export_fn(out, quantize="int8"), None
    except ExportError as exc:
        say(f"  int8 refused by the gate: {exc.what}")
        return export_fn(out, quantize="int8", **opened), str(exc)


# --------------------------------------------------------------------------- medical

def _stratified(y: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """Return sorted row indices: about ``n`` rows of ``y`` in its class proportions (every row when n is None)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    rows = [rng.choice(idx, size=max(1, int(round(n * len(idx) / len(y)))), replace=False)
            for idx in (np.flatnonzero(y == c) for c in np.unique(y))]
    return np.sort(np.concatenate(rows))


def pneumonia_subset(src: Path, dst: Path, sizes: dict[str, int | None], seed: int = 0) -> tuple[Path, str]:
    """Write a MedMNIST ``.npz`` with stratified subsets of the official splits (None = the whole split);
    return (its path, a description)."""
    npz = np.load(src, allow_pickle=False)
    rng = np.random.default_rng(seed)
    out, counts = {}, {}
    for split in ("train", "val", "test"):
        rows = _stratified(npz[f"{split}_labels"][:, 0], sizes[split], rng)
        out[f"{split}_images"], out[f"{split}_labels"] = npz[f"{split}_images"][rows], npz[f"{split}_labels"][rows]
        counts[split] = len(rows)
    np.savez_compressed(dst, **out)
    return dst, (f"PneumoniaMNIST (28 px): stratified seed-{seed} subsets of the official splits, train "
                 f"{counts['train']}, val {counts['val']}, test {counts['test']} images")


def kermany_subset(folder: Path, dst: Path, sizes: dict[str, int], seed: int = 0) -> tuple[Path, str]:
    """Write a manifest (path,label,patient_id,split) of a patient-level random subset of the Kermany folder:
    whole patients, drawn with ``seed``, fill test, then val, then train; return (its path, a description)."""
    import pandas as pd

    from lepton_apps.medical.data import open_data

    table = open_data(folder, KERMANY_PATTERN).table
    rng = np.random.default_rng(seed)
    patients = table["patient_id"].to_numpy(dtype=object)
    rows_of = {p: np.flatnonzero(patients == p) for p in np.unique(patients)}
    split = np.full(len(table), "", dtype=object)
    order, filled = rng.permutation(list(rows_of)), {"test": 0, "val": 0, "train": 0}
    i = 0
    for name in ("test", "val", "train"):
        while filled[name] < sizes[name] and i < len(order):
            split[rows_of[order[i]]] = name
            filled[name] += len(rows_of[order[i]])
            i += 1
    keep = split != ""
    pd.DataFrame({"path": table["item"][keep], "label": table["label"][keep], "patient_id": patients[keep],
                  "split": split[keep]}).to_csv(dst, index=False)
    return dst, (f"Kermany chest X-rays (224x224 JPEG): patient-level seed-{seed} random subset, train "
                 f"{filled['train']}, val {filled['val']}, test {filled['test']} images")


def test_images(data: Path, clf) -> tuple[np.ndarray, np.ndarray]:
    """Return (uint8 test pixels at the bundle's size and channels, their targets) of ``data``'s test split."""
    from lepton_apps.medical.data import load_pixels, open_data

    md = open_data(data)
    if list(md.label_names) != list(clf.label_names):
        raise RuntimeError(f"class order of {data} {md.label_names} differs from the bundle's {clf.label_names}")
    rows = np.flatnonzero(md.table["split"].to_numpy(dtype=object) == "test")
    pixels, errors = load_pixels(md, clf.image_size, clf.channels)
    if errors:
        raise RuntimeError(f"{len(errors)} unreadable test images in {data}: {list(errors.values())[:3]}")
    return pixels[rows], md.targets()[rows]


def medical_cases(sizes: dict, data_root: Path) -> list[dict[str, Any]]:
    """Return the medical cases whose data is present (a note for each one that is not)."""
    npz = data_root / "medical" / "pneumoniamnist.npz"
    kermany = data_root / "medical" / "chest_xray_kermany_train"
    cases = []
    for backbone, size, source in (("efficientnet_lite0", 64, npz), ("efficientnet_lite0", 224, kermany),
                                   ("resnet18", 64, npz)):
        if not source.exists():
            say(f"skipping medical {backbone} {size} px: {source} not found")
            continue
        cases.append({"backbone": backbone, "image_size": size, "source": source,
                      "epochs": sizes["epochs_224" if size == 224 else "epochs_64"],
                      "timed": sizes["timed_224" if size == 224 else "timed_64"]})
    return cases


def train_medical(case: dict, data: Path, out: Path, threads: int) -> tuple[Path, dict[str, Any]]:
    """Train the case's bundle (resnet18: ImageNet weights when cached locally, else from scratch); return
    (bundle, what was used)."""
    from lepton_apps.errors import OfflineError
    from lepton_apps.medical import MedicalConfig, train

    base = dict(data=str(data), backbone=case["backbone"], image_size=case["image_size"], epochs=case["epochs"],
                batch_size=32, n_boot=10, num_threads=threads, progress=False, seed=0)
    t = time.perf_counter()
    try:
        bundle, pretrained = train(MedicalConfig(out=str(out), pretrained=True, **base)), "ImageNet"
    except OfflineError as exc:
        say(f"  no local ImageNet weights for {case['backbone']} ({exc.what}): training from scratch")
        bundle = train(MedicalConfig(out=str(out) + "-scratch", pretrained=False, **base))
        pretrained = "none (from scratch)"
    hist = json.loads((bundle / "history.json").read_text())
    return bundle, {"backbone": case["backbone"], "image_size": case["image_size"], "pretrained": pretrained,
                    "epochs": case["epochs"], "batch_size": 32, "optimizer_steps": hist.get("optimizer_steps"),
                    "seconds": round(time.perf_counter() - t, 1)}


def bench_medical_case(case: dict, work: Path, sizes: dict, threads: int, repeats: int) -> dict[str, Any]:
    """Return one medical row: training used, images/s, AUC and differences per backend, gate, ratios, goal."""
    import torch

    from lepton_apps.export import load_export
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical import export as mexport
    from lepton_apps.metrics import roc_auc

    name = f"{case['backbone']}@{case['image_size']}px"
    work.mkdir(parents=True)
    if case["image_size"] == 224:
        data, described = kermany_subset(case["source"], work / "manifest.csv", sizes["kermany"])
    else:
        data, described = pneumonia_subset(case["source"], work / "subset.npz", sizes["pneumonia"])
    say(f"medical {name}: training on {described}")
    bundle, trained = train_medical(case, data, work / "bundle", threads)
    torch.set_num_threads(threads)
    clf = MedicalClassifier.load(bundle, device="cpu", backend="torch")
    pixels, y = test_images(data, clf)
    say(f"  exporting fp32 and int8 ({trained['seconds']:.0f}s training)")
    t = time.perf_counter()
    fp32_dir = mexport.export(bundle, work / "onnx-fp32")
    int8_dir, refusal = export_int8(lambda out, **kw: mexport.export(bundle, out, **kw), work / "onnx-int8",
                                    {"max_auc_drop": 0.999, "max_decisions_changed": 1.0})
    export_seconds = time.perf_counter() - t
    sessions = {"onnx_fp32": ort_session(fp32_dir, threads), "onnx_int8": ort_session(int8_dir, threads)}

    def eager(px: np.ndarray) -> np.ndarray:
        return np.concatenate([clf.predict_pixels(px[i:i + BATCH]) for i in range(0, len(px), BATCH)])

    predict = {"eager_fp32": eager,
               **{k: (lambda px, s=s: mexport.run_session(s, px, BATCH)["probabilities"]) for k, s in sessions.items()}}
    probs = {k: fn(pixels) for k, fn in predict.items()}
    timed = np.resize(pixels, (case["timed"], *pixels.shape[1:]))  # the test images, repeated when fewer
    say(f"  timing {len(timed)} images x {repeats} repeats")
    rates = interleaved_rates({k: (lambda fn=fn: fn(timed)) for k, fn in predict.items()}, len(timed), repeats)
    gate = load_export(int8_dir).card.get("gate", {})
    ratio8 = rates["onnx_int8"]["per_s"] / rates["eager_fp32"]["per_s"]
    passed = refusal is None
    return {
        "section": "medical", "case": name, "data": described, "training": trained,
        "threads": threads, "torch_threads": torch.get_num_threads(), "ort_intra_op_threads": threads, "batch": BATCH,
        "timed_images": len(timed), "auc_images": len(y), "export_seconds": round(export_seconds, 1),
        "per_s": {k: round(v["per_s"], 1) for k, v in rates.items()}, "timing": rates,
        "auc": {k: round(roc_auc(y, p[:, 1]), 4) for k, p in probs.items()},
        "max_abs_diff_to_eager": {k: float(np.abs(p - probs["eager_fp32"]).max()) for k, p in probs.items()},
        "ratio_onnx_fp32_vs_eager": round(rates["onnx_fp32"]["per_s"] / rates["eager_fp32"]["per_s"], 2),
        "ratio_int8_vs_eager": round(ratio8, 2),
        "int8_gate": {"passed": passed, "refusal": refusal, "timed_with_gate_opened": not passed,
                      "validation": {k: gate.get(k) for k in ("data", "fp32_auc", "int8_auc", "drop", "max_drop",
                                                             "decisions_changed", "max_decisions_changed")}},
        "goal_int8_2x_eager_within_gate": goal(ratio8, GOALS["medical"], passed),
        "_bundle": str(bundle), "_fp32": str(fp32_dir), "_pixels": pixels,
    }


def run_medical(sizes: dict, work: Path, threads: int, repeats: int, data_root: Path) -> list[dict[str, Any]]:
    """Return the medical rows (bundles and exports stay under ``work`` for the GPU part)."""
    return [bench_medical_case(case, work / f"medical-{i}", sizes, threads, repeats)
            for i, case in enumerate(medical_cases(sizes, data_root))]


# --------------------------------------------------------------------------- GPU

def run_gpu(rows: list[dict], sizes: dict, repeats: int) -> dict[str, Any]:
    """Return the GPU row (224 px efficientnet_lite0 bundle), or why it was skipped."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "torch.cuda.is_available() is False on this machine (no CUDA GPU): GPU part not run"}
    row = next((r for r in rows if r["case"] == "efficientnet_lite0@224px"), None)
    if row is None:
        return {"skipped": "the 224 px efficientnet_lite0 bundle was not built (medical skipped or data missing)"}
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical.evaluate import probabilities

    images = np.resize(row["_pixels"], (sizes["gpu_images"], *row["_pixels"].shape[1:]))
    plain = MedicalClassifier.load(row["_bundle"], device="cpu", backend="torch")
    net = plain.model.float().to("cuda").eval()

    def eager_loop() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), BATCH):
                out.append(net(torch.from_numpy(images[i:i + BATCH]).to("cuda")).float().cpu())
        return probabilities(torch.cat(out).numpy(), plain.task, plain.temperature)

    runs: dict[str, Callable[[], Any]] = {"eager_fp32_loop": eager_loop}
    default = MedicalClassifier.load(row["_bundle"], device="cuda")
    runs["template_default"] = lambda: default.predict_pixels(images)
    notes = {"template_default": f"backend {default.model_version.rsplit('/', 1)[-1]}, {default.policy.describe()}"}
    try:
        ort_clf = MedicalClassifier.load(row["_bundle"], device="cuda", backend="onnx", export=row["_fp32"])
        runs["onnx_runtime_cuda"] = lambda: ort_clf.predict_pixels(images)
        notes["onnx_runtime_cuda"] = f"providers {ort_clf.export.providers}"
    except Exception as exc:  # noqa: BLE001 - a missing CUDA provider is a result to report
        notes["onnx_runtime_cuda"] = f"not run: {exc}"
    reference = eager_loop()
    diffs = {k: float(np.abs(fn() - reference).max()) for k, fn in runs.items()}
    rates = interleaved_rates(runs, len(images), repeats)
    ratio = {k: round(v["per_s"] / rates["eager_fp32_loop"]["per_s"], 2) for k, v in rates.items()}
    return {"section": "gpu", "case": "efficientnet_lite0@224px", "device": torch.cuda.get_device_name(0),
            "images": len(images), "batch_eager": BATCH, "per_s": {k: round(v["per_s"], 1) for k, v in rates.items()},
            "timing": rates, "ratio_vs_eager": ratio, "max_abs_diff_to_eager": diffs, "notes": notes,
            "goal_template_2_5x_eager": goal(ratio["template_default"], GOALS["gpu"], None)}


# --------------------------------------------------------------------------- support

class _EncodeWith:
    """Stands in for an assistant's encoder: ``encode`` calls ``fn`` (to answer with another backend's vectors)."""

    def __init__(self, fn: Callable[[list[str]], np.ndarray]):
        self.fn = fn

    def encode(self, texts, batch_size=None, progress=False, **_):
        return self.fn([t if isinstance(t, str) else str(t) for t in texts])


def demo_bundle(work: Path) -> tuple[Path, Any, str]:
    """Build the demo bundle; return (bundle, held-out questions, description)."""
    import pandas as pd

    from lepton_apps.support.calibration import general_oos_questions
    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import train

    bundle = train(demo_config(work))
    details = pd.read_parquet(bundle / "eval_details.parquet")[["question", "faq_id"]]
    details["faq_id"] = details["faq_id"].fillna("").astype(str)
    what = f"the demo bundle's held-out questions (eval_details.parquet: {len(details)})"
    if not (details["faq_id"] == "").any():
        oos = general_oos_questions()
        details = pd.concat([details, pd.DataFrame({"question": oos, "faq_id": ""})], ignore_index=True)
        what += (f" + the {len(oos)} general out-of-scope questions shipped with the template (the demo has none "
                 "of its own; the hand-off threshold was calibrated on them, so recall there is optimistic)")
    return bundle, details.reset_index(drop=True), what


def clinc_bundle(work: Path, domains: tuple[str, ...], data_root: Path,
                 cap: int | None) -> tuple[Path, Any, str] | None:
    """Build a bundle on the KBs of CLINC150 ``domains`` (robust_support's recipe, seed 0, KB alone); return
    (bundle, test + oos_val questions, description), or None when the data is absent."""
    import pandas as pd

    from lepton_apps.support.config import SupportConfig
    from lepton_apps.support.training import train
    from robust_support import domain_kb, load_clinc, questions

    loaded = load_clinc(data_root)
    if loaded is None:
        return None
    data, domain_map = loaded
    unknown = sorted(set(domains) - set(domain_map))
    if unknown:
        raise ValueError(f"CLINC150 has no domain(s) {unknown}; its domains are {sorted(domain_map)}")
    intents = [i for d in domains for i in domain_map[d]]
    kb = domain_kb(data, intents, seed=0)
    kb_path = work / "clinc_kb.json"
    kb_path.write_text(json.dumps(kb.to_dict(orient="records")))
    bundle = train(SupportConfig(kb=str(kb_path), out=str(work / "clinc-bundle"), seed=0, progress=False))
    qs = questions(data, intents, "test", "oos_val")
    if cap is not None and len(qs) > cap:
        qs = qs.sample(cap, random_state=0).reset_index(drop=True)
    return bundle, qs, (f"CLINC150 {'+'.join(domains)}: KB of {len(kb)} FAQs x 20 training paraphrases (seed 0); "
                        f"questions: {int((qs.faq_id != '').sum())} test (in scope) + {int((qs.faq_id == '').sum())} "
                        f"oos_val{' (a seeded sample)' if cap is not None else ''}")


def bench_support_case(name: str, bundle: Path, qs, described: str, work: Path, sizes: dict, threads: int,
                       repeats: int) -> dict[str, Any]:
    """Return one support row: sentences/s, top-1 and hand-off recall per backend, gate, ratio, goal."""
    import torch
    from sentence_transformers import SentenceTransformer

    from lepton_apps.export import load_export
    from lepton_apps.support import export as sexport
    from lepton_apps.support.predict import SupportAssistant

    torch.set_num_threads(threads)
    say(f"support {name}: exporting int8")
    t = time.perf_counter()
    int8_dir, refusal = export_int8(lambda out, **kw: sexport.export(bundle, out, **kw), work / f"{name}-int8",
                                    {"max_top1_drop": 0.999, "max_handoff_recall_drop": 0.999})
    export_seconds = time.perf_counter() - t
    say(f"support {name}: exporting static int8 (the alternative method, measured to justify the default)")
    static_dir, static_refusal = export_int8(
        lambda out, **kw: sexport.export(bundle, out, int8_method="static", **kw), work / f"{name}-int8-static",
        {"max_top1_drop": 0.999, "max_handoff_recall_drop": 0.999})
    fp32 = SupportAssistant.load(bundle, device="cpu", backend="onnx")
    int8 = SupportAssistant.load(bundle, device="cpu", export=int8_dir)
    int8.encoder.use_session(ort_session(int8_dir, threads), int8.encoder.backend_label)
    static = SupportAssistant.load(bundle, device="cpu", export=static_dir)
    static.encoder.use_session(ort_session(static_dir, threads), "onnx-int8-static")
    enc = fp32.encoder
    peer = SentenceTransformer(enc.path, device="cpu")

    def st_encode(texts: list[str]) -> np.ndarray:
        prompted = [enc.prompt + t for t in texts] if enc.prompt else texts  # E5-style encoders want their prompt
        return peer.encode(prompted, normalize_embeddings=True, convert_to_numpy=True)

    encoders = {"sentence_transformers": st_encode, "template_onnx_fp32": fp32.encoder.encode,
                "template_onnx_int8": int8.encoder.encode, "template_onnx_int8_static": static.encoder.encode}
    texts = (list(fp32.index.texts) + qs["question"].tolist())
    texts = [texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:sizes["texts"]]]
    say(f"  timing {len(texts)} texts x {repeats} repeats; answering {len(qs)} questions per backend")
    rates = interleaved_rates({k: (lambda fn=fn: fn(texts)) for k, fn in encoders.items()}, len(texts), repeats)
    reference = encoders["template_onnx_fp32"](texts)
    quality, cosine = {}, {}
    for key, fn in encoders.items():
        stand_in = copy.copy(fp32)
        stand_in.encoder = _EncodeWith(fn)
        quality[key] = sexport.retrieval_metrics(stand_in, qs)
        cosine[key] = float((fn(texts) * reference).sum(1).min())
    ratio8 = rates["template_onnx_int8"]["per_s"] / rates["template_onnx_fp32"]["per_s"]
    passed = refusal is None
    gate = load_export(int8_dir).card.get("gate", {})
    return {
        "section": "support", "case": name, "data": described, "encoder": str(enc.path), "threads": threads,
        "torch_threads": torch.get_num_threads(), "ort_intra_op_threads": threads, "timed_texts": len(texts),
        "batch": {"sentence_transformers": 32, "template": f"{enc.default_batch_size} texts / "
                                                          f"{enc.default_batch_tokens} tokens, length-sorted"},
        "export_seconds": round(export_seconds, 1),
        "per_s": {k: round(v["per_s"], 1) for k, v in rates.items()}, "timing": rates,
        "quality": quality, "min_cosine_to_fp32": cosine,
        "ratio_int8_vs_onnx_fp32": round(ratio8, 2),
        "ratio_onnx_fp32_vs_st": round(rates["template_onnx_fp32"]["per_s"]
                                       / rates["sentence_transformers"]["per_s"], 2),
        "int8_gate": {"passed": passed, "refusal": refusal, "timed_with_gate_opened": not passed,
                      "validation": {k: gate.get(k) for k in ("data", "fp32", "int8", "top1_drop",
                                                             "handoff_recall_drop")}},
        "int8_static": {"ratio_vs_onnx_fp32": round(rates["template_onnx_int8_static"]["per_s"]
                                                    / rates["template_onnx_fp32"]["per_s"], 2),
                        "gate_passed": static_refusal is None, "refusal": static_refusal},
        "goal_int8_1_5x_onnx_fp32_within_gate": goal(ratio8, GOALS["support"], passed),
    }


def run_support(sizes: dict, work: Path, threads: int, repeats: int, data_root: Path) -> list[dict[str, Any]]:
    """Return the support rows: the demo bundle, then the CLINC150 bundle when the data is present."""
    rows = []
    say("support: building the demo bundle")
    bundle, qs, what = demo_bundle(work / "demo")
    if sizes["questions"] is not None and len(qs) > sizes["questions"]:
        qs = qs.sample(sizes["questions"], random_state=0).reset_index(drop=True)
        what += f"; a seeded sample of {len(qs)} of them"
    rows.append(bench_support_case("demo", bundle, qs, what, work, sizes, threads, repeats))
    say(f"support: building the CLINC150 bundle ({', '.join(sizes['clinc_domains'])})")
    found = clinc_bundle(work, sizes["clinc_domains"], data_root, sizes["questions"])
    if found is not None:
        rows.append(bench_support_case("clinc150", *found, work, sizes, threads, repeats))
    return rows


# --------------------------------------------------------------------------- finance

def bench_finance_case(name: str, bundle: Path, described: str, work: Path, rows: int, threads: int,
                       repeats: int) -> dict[str, Any]:
    """Return one finance row: rows/s of LightGBM, lleaves and ONNX on the same features, max abs diffs."""
    from lepton_apps.finance import compiled
    from lepton_apps.finance import export as fexport
    from lepton_apps.finance.predict import FraudScorer

    scorer = FraudScorer.load(bundle, compiled="no")
    x_val, how = fexport.check_rows(scorer)
    x = np.ascontiguousarray(np.resize(x_val, (rows, x_val.shape[1])))
    x32 = x.astype(np.float32)
    booster = scorer.booster
    model_text = bundle.joinpath("model.txt").read_text()
    cached = compiled.is_cached(model_text)
    t = time.perf_counter()
    lleaves_model = compiled.compile_model(model_text)
    compile_seconds = time.perf_counter() - t
    onnx_dir = fexport.export(bundle, work / f"{name}-onnx")
    session = ort_session(onnx_dir, threads)
    runs = {"lightgbm": lambda: booster.predict(x, num_threads=threads),
            "lleaves": lambda: lleaves_model.predict(x, threads),
            "onnx": lambda: session.run(["probabilities"], {fexport.INPUT_NAME: x32})[0][:, 1]}
    say(f"finance {name}: timing {rows:,} rows x {repeats} repeats ({booster.num_trees()} trees)")
    scores = {k: np.asarray(fn(), dtype=np.float64) for k, fn in runs.items()}
    rates = interleaved_rates(runs, rows, repeats)
    return {"section": "finance", "case": name, "data": described, "rows": rows,
            "feature_rows": f"{how}, tiled to {rows:,} rows", "trees": booster.num_trees(),
            "features": x.shape[1], "threads": threads, "lleaves_seconds": round(compile_seconds, 1),
            "lleaves_seconds_were": "loading the cached library" if cached else "compiling (cold cache)",
            "per_s": {k: round(v["per_s"]) for k, v in rates.items()}, "timing": rates,
            "max_abs_diff_to_lightgbm": {k: float(np.abs(s - scores["lightgbm"]).max()) for k, s in scores.items()},
            "ratio_lleaves_vs_lightgbm": round(rates["lleaves"]["per_s"] / rates["lightgbm"]["per_s"], 2),
            "ratio_onnx_vs_lightgbm": round(rates["onnx"]["per_s"] / rates["lightgbm"]["per_s"], 2)}


def run_finance(sizes: dict, work: Path, threads: int, repeats: int, data_root: Path) -> list[dict[str, Any]]:
    """Return the finance rows: the demo bundle and, when the file is present, the ULB subset bundle."""
    from lepton_apps.finance.config import FraudConfig
    from lepton_apps.finance.demo import write_demo_data
    from lepton_apps.finance.training import train

    out = []
    sim = sizes["finance_sim"]
    say(f"finance: training the demo bundle ({sim})")
    data = write_demo_data(work / "transactions.parquet", **sim, seed=0)
    t = time.perf_counter()
    bundle = train(FraudConfig(data=str(data), out=str(work / "finance-demo"), seed=0))
    described = (f"simulated transactions ({sim['n_customers']} customers, {sim['n_terminals']} terminals, "
                 f"{sim['n_days']} days, seed 0), trained in {time.perf_counter() - t:.0f}s")
    out.append(bench_finance_case("demo", bundle, described, work, sizes["rows"], threads, repeats))
    ulb = data_root / "fraud" / "creditcard_ulb_all_frauds_subset.csv"
    if ulb.is_file():
        say("finance: training on the ULB subset")
        t = time.perf_counter()
        bundle = train(FraudConfig(data=str(ulb), out=str(work / "finance-ulb"), seed=0))
        out.append(bench_finance_case("ulb_subset", bundle, f"{ulb.name} (all rows), trained in "
                                      f"{time.perf_counter() - t:.0f}s", work, sizes["rows"], threads, repeats))
    else:
        say(f"skipping finance ULB: {ulb} not found")
    return out


# --------------------------------------------------------------------------- report

def environment(threads: int) -> dict[str, Any]:
    """Return the machine and library versions the numbers were measured with."""
    import importlib.metadata

    import torch

    versions = {}
    for lib in ("torch", "onnxruntime", "onnx", "timm", "sentence-transformers", "transformers", "lightgbm", "lleaves",
                "onnxmltools"):
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "threads": threads, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "versions": versions}


def table(results: dict[str, Any]) -> str:
    """Return the readable table of every backend's rate, ratio and quality."""
    lines = ["| section | case | backend | rate | vs baseline | quality |", "|---|---|---|---|---|---|"]
    for r in results.get("medical", []):
        for k, rate in r["per_s"].items():
            lines.append(f"| medical | {r['case']} | {k} | {rate:,.1f} img/s | "
                         f"{rate / r['per_s']['eager_fp32']:.2f}x eager | test AUC {r['auc'][k]:.4f}, "
                         f"max diff {r['max_abs_diff_to_eager'][k]:.2g} |")
    for r in results.get("support", []):
        for k, rate in r["per_s"].items():
            q = r["quality"][k]
            lines.append(f"| support | {r['case']} | {k} | {rate:,.1f} sent/s | "
                         f"{rate / r['per_s']['template_onnx_fp32']:.2f}x onnx fp32 | top-1 {q['top1']:.4f}, "
                         f"hand-off recall {q['handoff_recall']:.4f} |")
    for r in results.get("finance", []):
        for k, rate in r["per_s"].items():
            lines.append(f"| finance | {r['case']} | {k} | {rate:,.0f} rows/s | {rate / r['per_s']['lightgbm']:.2f}x "
                         f"LightGBM | max diff {r['max_abs_diff_to_lightgbm'][k]:.2g} |")
    gpu = results.get("gpu") or {}
    for k, rate in (gpu.get("per_s") or {}).items():
        lines.append(f"| gpu | {gpu['case']} | {k} | {rate:,.1f} img/s | {gpu['ratio_vs_eager'][k]:.2f}x eager | "
                     f"max diff {gpu['max_abs_diff_to_eager'][k]:.2g} |")
    return "\n".join(lines)


def goals(results: dict[str, Any]) -> list[str]:
    """Return one line per goal: the case, the measured ratio, met / missed, and the gate where it refused."""
    out = []
    for r in results.get("medical", []):
        refusal = f" — gate: {r['int8_gate']['refusal']}" if r["int8_gate"]["refusal"] else ""
        out.append(f"medical {r['case']}: int8 {r['ratio_int8_vs_eager']:.2f}x eager fp32 (goal >= 2x within the "
                   f"gate): {r['goal_int8_2x_eager_within_gate']}{refusal}")
    for r in results.get("support", []):
        refusal = f" — gate: {r['int8_gate']['refusal']}" if r["int8_gate"]["refusal"] else ""
        out.append(f"support {r['case']}: int8 {r['ratio_int8_vs_onnx_fp32']:.2f}x fp32 ONNX (goal >= 1.5x within "
                   f"the gate): {r['goal_int8_1_5x_onnx_fp32_within_gate']}{refusal}")
    gpu = results.get("gpu") or {}
    if "skipped" in gpu:
        out.append(f"gpu: skipped — {gpu['skipped']}")
    elif gpu:
        out.append(f"gpu {gpu['case']}: template {gpu['ratio_vs_eager']['template_default']:.2f}x the eager fp32 loop "
                   f"(goal >= 2.5x): {gpu['goal_template_2_5x_eager']}; notes: {gpu['notes']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script end to end")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to skip: {', '.join(SECTIONS)}")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of torch, ONNX Runtime, LightGBM and lleaves (default: the machine's CPUs)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up (median reported)")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--json", type=Path, default=RESULTS / "export_bench.json")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(SECTIONS):
        parser.error(f"--skip: unknown section(s) {', '.join(sorted(skip - set(SECTIONS)))}; use {', '.join(SECTIONS)}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    import logging

    import torch

    from lepton_apps.io import atomic_write_json

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its per-index DEBUG lines drown the progress lines

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = args.threads or cpus
    torch.set_num_threads(threads)
    sizes = SIZES["quick" if args.quick else "full"]
    results: dict[str, Any] = {"env": environment(threads), "quick": args.quick, "repeats": args.repeats,
                               "sizes": {k: v for k, v in sizes.items()}, "skipped": sorted(skip)}
    load = results["env"]["load_average_at_start"][0]
    if load > 0.5 * threads:
        results["warning"] = (f"the machine was busy at the start (load average {load:.2f} with {threads} threads "
                              "asked): other processes share the cores, so rates are noisy and multi-threaded "
                              "PyTorch suffers most; run on an idle machine for the numbers to keep")
        say(f"warning: {results['warning']}")
    started = time.perf_counter()

    def save() -> None:
        clean = {k: ([{c: v for c, v in r.items() if not c.startswith("_")} for r in v] if isinstance(v, list)
                     and v and isinstance(v[0], dict) else v) for k, v in results.items()}
        atomic_write_json(args.json, clean)

    with tempfile.TemporaryDirectory(prefix="export_bench_") as tmp:
        work = Path(tmp)
        for section, run in (("medical", run_medical), ("support", run_support), ("finance", run_finance)):
            if section in skip:
                continue
            t = time.perf_counter()
            (work / section).mkdir()
            results[section] = run(sizes, work / section, threads, args.repeats, args.data_root)
            results.setdefault("section_seconds", {})[section] = round(time.perf_counter() - t, 1)
            save()
        if "medical" in skip:
            results["gpu"] = {"skipped": "--skip medical (the GPU part uses the medical bundles)"}
        else:
            results["gpu"] = run_gpu(results.get("medical", []), sizes, args.repeats)
    results["env"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["goals"] = goals(results)
    save()
    print(f"env: {json.dumps({k: v for k, v in results['env'].items() if k != 'versions'})}")
    if "warning" in results:
        print(f"WARNING: {results['warning']}")
    print(table(results))
    print()
    for line in results["goals"]:
        print(f"- {line}")
    print(f"\n{results['total_seconds']:.0f}s in all; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
