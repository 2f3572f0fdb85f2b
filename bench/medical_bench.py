"""Training and batch-inference throughput (images/s) of the medical template's own path, against
(a) a plain fp32 eager PyTorch loop and (b) the synthetic in-device ceiling, same backbone, one run.

* template: uint8 images held in memory, the core ``Trainer`` with its DevicePolicy (bf16 autocast
  + channels_last on CUDA), on-device batch augmentation; inference through ``predict_logits``
  (uint8 batches moved to the device, normalised there, autocast).
* eager fp32: float32, pre-normalised tensors from a DataLoader, moved per batch, fp32, no
  channels_last, no augmentation: what a first PyTorch script does.
* ceiling: random tensors already on the device (bf16 + channels_last + torch.compile on CUDA;
  fp32 eager on CPU unless --compile): no data path at all.

    .venv/bin/python bench/medical_bench.py --device cpu --image-size 64 --batch 64 --steps 12
    .venv/bin/python bench/medical_bench.py --device cuda --image-size 224 --batch 128 --steps 50

Also measures the folder data path (``--stream-images N``, default 1024 PNGs at ``--source-size``):
images/s decoded + resized in DataLoader workers while the disk cache fills (first epoch), read
back from the cache (later epochs), and the up-front in-memory decode (thread pool), so the
decode rate can be set beside the training rate it has to feed.

Prints JSON with images/s and the ratios template/ceiling (training) and template/eager (inference).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def template_train(backbone: str, n: int, size: int, batch: int, device: str, compile_: bool) -> float:
    """Images/s of the template's training path (second epoch timed; the first is warm-up)."""
    import numpy as np

    from lepton_apps.medical.augment import make_augment
    from lepton_apps.medical.config import AugmentConfig
    from lepton_apps.medical.model import MedicalNet, create_backbone
    from lepton_apps.training import Trainer, TrainConfig

    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (n, 1, size, size), dtype=np.uint8))
    labels = torch.randint(0, 2, (n,))
    ds = torch.utils.data.TensorDataset(pixels, labels)
    marks: list[float] = []
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))

    def on_event(ev: dict) -> None:
        if ev["event"] == "epoch":
            _sync(dev)
            marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as run:
        cfg = TrainConfig(epochs=2, batch_size=batch, monitor="train_loss", mode="min", patience=None,
                          device=device, compile=compile_, progress=False)
        trainer = Trainer(MedicalNet(create_backbone(backbone, 2)), ds, None, cfg, run_dir=run,
                          loss_fn=torch.nn.CrossEntropyLoss(), augment_fn=make_augment(AugmentConfig()),
                          callback=on_event)
        trainer.fit()
    return n / (marks[1] - marks[0])


def template_infer(backbone: str, n: int, size: int, batch: int, device: str) -> float:
    """Images/s of the template's batch inference on uint8 images in host memory."""
    import numpy as np

    from lepton_apps.device import DevicePolicy
    from lepton_apps.medical.model import MedicalNet, create_backbone
    from lepton_apps.medical.model import predict_logits

    policy = DevicePolicy.resolve(device)
    model = policy.prepare_model(MedicalNet(create_backbone(backbone, 2))).eval()
    pixels = np.random.default_rng(0).integers(0, 255, (n, 1, size, size), dtype=np.uint8)
    predict_logits(model, pixels[:batch], policy, batch)
    _sync(policy.device)
    start = time.perf_counter()
    predict_logits(model, pixels, policy, batch)
    _sync(policy.device)
    return n / (time.perf_counter() - start)


def eager_fp32(backbone: str, n: int, size: int, batch: int, device: str) -> tuple[float, float]:
    """Images/s (train, inference) of a plain fp32 eager loop over a float DataLoader."""
    import timm

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model = timm.create_model(backbone, num_classes=2).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(n, 3, size, size)
    y = torch.randint(0, 2, (n,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True)

    def epoch() -> None:
        for xb, yb in loader:
            xb, yb = xb.to(dev), yb.to(dev)
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    model.train()
    epoch()  # warm-up
    _sync(dev)
    start = time.perf_counter()
    epoch()
    _sync(dev)
    train = n / (time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        model(x[:batch].to(dev))
        _sync(dev)
        start = time.perf_counter()
        for i in range(0, n, batch):
            model(x[i:i + batch].to(dev)).cpu()
        _sync(dev)
    return train, n / (time.perf_counter() - start)


def ceiling(backbone: str, size: int, batch: int, steps: int, device: str, compile_: bool) -> tuple[float, float]:
    """Images/s (train, inference) on random tensors already on the device: no data path at all."""
    import timm

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    model = timm.create_model(backbone, num_classes=2).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    engine = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size, device=dev)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (batch,), device=dev)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def step() -> None:
        with amp:
            loss = torch.nn.functional.cross_entropy(engine(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    engine.train()
    for _ in range(3):
        step()
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    train = batch * steps / (time.perf_counter() - start)
    engine.eval()
    with torch.no_grad(), amp:
        for _ in range(3):
            engine(x)
        _sync(dev)
        start = time.perf_counter()
        for _ in range(steps):
            engine(x)
        _sync(dev)
    return train, batch * steps / (time.perf_counter() - start)


def step_formats(backbone: str, size: int, batch: int, steps: int, device: str) -> dict[str, float]:
    """Milliseconds per training step of the template's network (MedicalNet, AdamW) in fp32 / bf16 autocast,
    NCHW / channels-last, on uint8 batches already in memory; interleaved rounds, the median counts."""
    import statistics

    from lepton_apps.medical.model import MedicalNet, create_backbone

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    x8 = torch.randint(0, 255, (batch, 1, size, size), dtype=torch.uint8, device=dev)
    y = torch.randint(0, 2, (batch,), device=dev)
    variants = {}
    for name in ("fp32", "fp32_channels_last", "bf16", "bf16_channels_last"):
        net = MedicalNet(create_backbone(backbone, 2)).to(dev)
        if name.endswith("channels_last"):
            net = net.to(memory_format=torch.channels_last)
        variants[name] = (net, torch.optim.AdamW(net.parameters(), lr=1e-3))

    def step(name: str) -> None:
        net, opt = variants[name]
        amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=name.startswith("bf16"))
        with amp:
            loss = torch.nn.functional.cross_entropy(net(x8).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for name in variants:
        for _ in range(2):
            step(name)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(3):
        for name in variants:
            _sync(dev)
            t = time.perf_counter()
            for _ in range(steps):
                step(name)
            _sync(dev)
            times[name].append((time.perf_counter() - t) / steps)
    return {name: round(1000 * statistics.median(v), 1) for name, v in times.items()}


def stream_data_path(n: int, source_size: int, size: int, batch: int, workers: int) -> dict:
    """Images/s of the folder data path: streamed (first epoch / cached epoch) and in-memory decode."""
    import numpy as np
    from PIL import Image

    from lepton_apps.medical.data import load_pixels, open_data
    from lepton_apps.medical.pixelcache import PixelCache
    from lepton_apps.medical.stream import DecodedImages

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        base = rng.normal(120, 30, (source_size, source_size))
        for i in range(n):  # radiograph-like 8-bit grayscale PNGs: smooth base + noise, ~compressible
            folder = root / ("lesion" if i % 2 else "normal")
            folder.mkdir(parents=True, exist_ok=True)
            img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i:05d}.png")
        md = open_data(root)
        items, y = md.table["item"].tolist(), md.targets()
        cache = PixelCache.for_items(items, size, 1, Path(tmp) / "cache")
        ds = DecodedImages(cache.folder, cache.pixels.shape, items, y, np.arange(len(items)))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                             persistent_workers=workers > 0)
        rates = []
        for _ in range(2):
            t0, seen = time.perf_counter(), 0
            for images, _labels in loader:
                seen += len(images)
            rates.append(seen / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        load_pixels(md, size, 1)
        in_memory = n / (time.perf_counter() - t0)
    return {"images": n, "source_size": source_size, "size": size, "workers": workers,
            "stream_first_epoch_decode": rates[0], "stream_cached_epoch": rates[1], "in_memory_decode": in_memory}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12, help="batches per timed epoch / loop")
    parser.add_argument("--compile", action="store_true", help="torch.compile the ceiling (default on CUDA)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--stream-images", type=int, default=1024, help="PNGs for the folder data-path test (0: skip)")
    parser.add_argument("--source-size", type=int, default=512, help="side of those PNGs")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the template's)")
    parser.add_argument("--formats", action="store_true", help="only: ms per training step in fp32 / bf16, NCHW / "
                        "channels-last (batch 32 at --image-size)")
    args = parser.parse_args(argv)
    if args.formats:
        print(json.dumps({"ms_per_step": step_formats(args.backbone, args.image_size, 32, 6, args.device),
                          "backbone": args.backbone, "image_size": args.image_size, "batch": 32,
                          "threads": torch.get_num_threads()}, indent=2))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    compile_ceiling = args.compile or cuda
    n = args.batch * args.steps
    t_train = template_train(args.backbone, n, args.image_size, args.batch, args.device, compile_=cuda)
    t_infer = template_infer(args.backbone, n, args.image_size, args.batch, args.device)
    e_train, e_infer = eager_fp32(args.backbone, n, args.image_size, args.batch, args.device)
    c_train, c_infer = ceiling(args.backbone, args.image_size, args.batch, args.steps, args.device, compile_ceiling)
    device_name = torch.cuda.get_device_name() if cuda else f"cpu ({torch.get_num_threads()} threads)"
    result = {
        "device": device_name, "backbone": args.backbone, "image_size": args.image_size, "batch": args.batch,
        "images_per_s": {"template_train": t_train, "eager_fp32_train": e_train, "ceiling_train": c_train,
                         "template_infer": t_infer, "eager_fp32_infer": e_infer, "ceiling_infer": c_infer},
        "ratios": {"train_template_over_ceiling": t_train / c_train,
                   "train_template_over_eager": t_train / e_train,
                   "infer_template_over_eager": t_infer / e_infer,
                   "infer_template_over_ceiling": t_infer / c_infer},
        "goals_on_gpu": {"train_over_ceiling": 0.8, "infer_over_eager": 2.5},
    }
    if args.stream_images:
        from lepton_apps.medical.stream import default_workers

        workers = default_workers() if args.workers is None else args.workers
        result["folder_data_path_images_per_s"] = stream_data_path(args.stream_images, args.source_size,
                                                                   args.image_size, args.batch, workers)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
