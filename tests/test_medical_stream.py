"""Medical data loading: streaming decode in DataLoader workers, the on-disk decode cache, compressed DICOM."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lepton_apps.errors import ConfigError, DataError
from lepton_apps.medical.data import load_pixels, open_data
from lepton_apps.medical.imageio import read_image
from lepton_apps.medical.pixelcache import DECODED, FAILED, PixelCache
from lepton_apps.medical.stream import DecodedImages, loading_mode

from test_medical_data import make_dicom


def write_set(root, n=5, bad=True):
    """Two classes of random gray PNGs of varying size, one 16-bit DICOM, and (optionally) one broken PNG."""
    rng = np.random.default_rng(0)
    for cls in ("normal", "lesion"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = rng.integers(18, 40, 2)
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(root / cls / f"{i}.png")
    make_dicom(root / "lesion" / "scan.dcm")
    if bad:
        (root / "lesion" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    return root


def epoch(ds, workers):
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False, num_workers=workers)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_streaming_decodes_in_workers_like_load_pixels_and_the_second_epoch_reads_the_cache(tmp_path):
    md = open_data(write_set(tmp_path / "d"))
    items, y = md.table["item"].tolist(), md.targets()
    expected, errors = load_pixels(md, 16, 1)
    bad = items.index(str(tmp_path / "d" / "lesion" / "bad.png"))
    assert list(errors) == [bad]

    cache = PixelCache.for_items(items, 16, 1, tmp_path / "cache")
    ds = DecodedImages(cache.folder, cache.pixels.shape, items, y, np.arange(len(items)))
    x1, y1 = epoch(ds, workers=2)  # the worker processes decode and write the cache
    good = np.arange(len(items)) != bad
    assert x1.dtype == torch.uint8 and x1.shape == (len(items) - 1, 1, 16, 16)
    np.testing.assert_array_equal(x1.numpy(), expected[good])  # same reader, channels and resize as in memory
    np.testing.assert_array_equal(y1.numpy(), y[good])  # the broken file is left out, the epoch goes on
    assert (cache.state[good] == DECODED).all() and cache.state[bad] == FAILED
    assert cache.errors(items) == errors  # the real reason, not "unreadable"

    for path in items:  # epoch 2 must not decode: make every file unreadable
        with open(path, "wb") as fh:
            fh.write(b"not an image any more")
    x2, y2 = epoch(ds, workers=0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    reopened = PixelCache.for_items(items, 16, 1, tmp_path / "cache")
    assert reopened.folder != cache.folder  # rewritten files are a new cache entry, never stale pixels


def test_a_batch_of_only_unreadable_images_borrows_the_next_readable_one(tmp_path):
    root = tmp_path / "d"
    write_set(root, n=2)
    md = open_data(root)
    items = md.table["item"].tolist()
    cache = PixelCache.for_items(items, 8, 1, tmp_path / "cache")
    bad = items.index(str(root / "lesion" / "bad.png"))
    ds = DecodedImages(cache.folder, cache.pixels.shape, items, md.targets(), np.arange(len(items)))
    batch = ds.__getitems__([bad])
    assert len(batch) == 1 and torch.equal(batch[0][0], torch.from_numpy(cache.pixels[(bad + 1) % len(items)]))
    with pytest.raises(DataError, match="cannot be decoded"):
        ds[bad]


def test_cached_failures_keep_their_reason_but_no_patient_identifier(tmp_path):
    root = tmp_path / "DOE_JANE_1970"  # a folder named after a patient, as happens in real exports
    write_set(root, n=2)
    make_dicom(root / "normal" / "report.dcm", with_pixels=False, PatientName="DOE^JANE", PatientID="MRN12345")
    md = open_data(root)
    first, err1 = load_pixels(md, 16, 1, cache_dir=tmp_path / "cache")
    assert len(err1) == 2
    assert any("truncated or corrupt" in e or "not an image" in e for e in err1.values())
    assert any("no pixel data" in e for e in err1.values())
    second, err2 = load_pixels(open_data(root), 16, 1, cache_dir=tmp_path / "cache")  # read from the cache
    assert err2 == err1 and np.array_equal(first, second)
    assert all("cached decode" not in e and "DOE_JANE_1970" in e for e in err2.values())  # the path comes from the data
    stored = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*.jsonl"))
    assert stored and b"DOE" not in stored and b"MRN12345" not in stored and b"JANE" not in stored
    rows = [json.loads(line) for line in stored.decode().splitlines()]
    assert sorted(r["row"] for r in rows) == sorted(err1)


def test_loading_mode_follows_the_memory_budget_and_can_be_forced(tmp_path):
    md = open_data(write_set(tmp_path / "d", bad=False))
    n = len(md.table)
    assert loading_mode(md, 1, 64) == "memory"  # 11 images are far under half the RAM
    peak_gb = 2 * n * 3 * 64 * 64 / 1e9
    assert loading_mode(md, 3, 64, memory_budget_gb=peak_gb) == "memory"
    assert loading_mode(md, 3, 64, memory_budget_gb=peak_gb * 0.99) == "stream"
    assert loading_mode(md, 3, 64, "stream") == "stream" and loading_mode(md, 3, 512, "memory") == "memory"
    np.savez(tmp_path / "x.npz", train_images=np.zeros((4, 8, 8), np.uint8), train_labels=np.array([0, 1, 0, 1]))
    npz = open_data(tmp_path / "x.npz")
    assert loading_mode(npz, 1, 64, memory_budget_gb=1e-9) == "memory"
    with pytest.raises(ConfigError, match="stream"):
        loading_mode(npz, 1, 64, "stream")


# --------------------------------------------------------------------------- training in each mode

def _train(tmp_path, data, name, **overrides):
    from lepton_apps.bundle import load_bundle
    from lepton_apps.medical import train

    cfg = {"data": str(data), "out": str(tmp_path / name), "image_size": 32, "epochs": 2, "batch_size": 8,
           "pretrained": False, "backbone": "resnet10t", "n_boot": 20, "progress": False, "patience": None,
           "val_fraction": 0.25, "test_fraction": 0.25, "num_workers": 0, **overrides}
    events = []
    bundle = load_bundle(train(cfg, callback=events.append), domain="medical")
    return bundle, bundle.load_torch("model.safetensors"), events


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from lepton_apps.medical.demo import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("stream") / "data", n=48, size=32, seed=1)


def test_streaming_and_in_memory_training_see_the_same_pixels_and_seeded_runs_repeat(tmp_path, demo):
    torch.manual_seed(12345)  # whatever the process's RNG state, the seed decides the initial weights
    mem, w_mem, _ = _train(tmp_path, demo, "mem", data_loading="memory", epochs=1)
    torch.manual_seed(54321)
    stream, w_stream, _ = _train(tmp_path, demo, "stream", data_loading="stream", epochs=1)
    assert mem.metadata["data_fingerprint"] == stream.metadata["data_fingerprint"]  # identical decoded arrays
    assert all(torch.equal(w_mem[k], w_stream[k]) for k in w_mem)  # same init, batches and augmentation draws
    assert (tmp_path / "stream-run" / "decoded").is_dir()  # default cache next to the checkpoints
    assert mem.load_json("report.json")["n"] == stream.load_json("report.json")["n"]


def test_streaming_refuses_unreadable_files_after_the_first_pass_unless_told_to_skip(tmp_path, demo):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo, data)
    broken = sorted(data.glob("*/*.png"))[5]
    broken.write_bytes(broken.read_bytes()[:60])  # truncated
    events = []
    with pytest.raises(DataError, match=r"1 of 48 images cannot be read: .*truncated or corrupt") as info:
        _train(tmp_path, data / "manifest.csv", "strict", data_loading="stream")
    assert broken.name in str(info.value)
    bundle, _, events = _train(tmp_path, data / "manifest.csv", "skip", data_loading="stream", skip_unreadable=True,
                               cache_dir=str(tmp_path / "cache"), epochs=1)
    assert [e["event"] for e in events].count("epoch") == 1
    summary = bundle.load_json("data_summary.json")
    assert sum(summary["counts"]["unreadable"].values()) == 1
    assert sum(sum(c.values()) for c in summary["counts"].values()) == 48


# --------------------------------------------------------------------------- compressed DICOM

def _jpeg_dicom(path, pixels):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    ds = make_dicom(None, pixels, bits=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


def _smooth(h=48, w=64):
    yy, xx = np.mgrid[:h, :w]
    return (40 + 150 * (xx / w) * (0.5 + 0.5 * yy / h)).astype(np.uint8)


def test_jpeg_baseline_and_rle_dicom_decode_close_to_the_source(tmp_path):
    from pydicom.uid import RLELossless

    source = _smooth()
    img = read_image(_jpeg_dicom(tmp_path / "jpeg.dcm", source))
    assert img.shape == source.shape and img.dtype == np.uint8
    assert np.abs(img.astype(int) - source).mean() < 2 and np.abs(img.astype(int) - source).max() <= 12
    ds = make_dicom(None, source, bits=8)
    ds.compress(RLELossless)  # pydicom's own RLE encoder
    ds.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(read_image(tmp_path / "rle.dcm"), source)


def test_a_syntax_without_an_installed_handler_names_it_and_how_to_install_one(tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGBaseline8Bit

    path = _jpeg_dicom(tmp_path / "jpeg.dcm", _smooth())
    decoder = get_decoder(JPEGBaseline8Bit)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.0"),
                                                  "gdcm": ("gdcm>=3.0.10",)})
    with pytest.raises(DataError) as info:
        read_image(path)
    message = str(info.value)
    assert "no installed handler supports transfer syntax JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)" in message
    assert "pip install 'pylibjpeg>=2.0' 'pylibjpeg-libjpeg>=2.0'" in message and "python-gdcm" in message
    assert str(path) in message
    monkeypatch.undo()
    # with the handlers back, a damaged stream says the handler failed, not that one is missing
    import pydicom

    ds = pydicom.dcmread(path)
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + b"\x00" * 40])
    ds.save_as(tmp_path / "damaged.dcm", enforce_file_format=True)
    with pytest.raises(DataError, match=r"handler\(s\) \(.*\) failed"):
        read_image(tmp_path / "damaged.dcm")
