"""Medical template inputs: folders, manifests, MedMNIST .npz, DICOM decoding, bad files, splits, data check."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lepton_apps.errors import DataError
from lepton_apps.medical.check import check_data, has_blocking_issues
from lepton_apps.medical.data import assign_splits, load_pixels, open_data
from lepton_apps.medical.imageio import prepare, read_image


def png_bytes(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path, value=128, size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(size, value, np.uint8)
    arr[:5, :5] = 255 - value
    Image.fromarray(arr).save(path)
    return path


def make_dicom(path=None, pixels=None, *, photometric="MONOCHROME2", slope=None, intercept=None, window=None,
               bits=16, with_pixels=True, signed=False, **tags):
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for k, v in tags.items():
        setattr(ds, k, v)
    if with_pixels:
        if pixels is None:
            pixels = np.tile(np.linspace(0, 4000, 32), (16, 1)).astype(np.int16 if signed else np.uint16)
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
        ds.PixelRepresentation = int(signed)
        ds.PixelData = pixels.tobytes()
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if path is None:
        return ds
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------- layouts

def test_folder_with_split_folders_gives_binary_task_with_normal_first(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        for cls in ("pneumonia", "normal"):
            for i in range(n):
                write_png(tmp_path / split / cls / f"{i}.png", value=40 if cls == "normal" else 200)
    md = open_data(tmp_path)
    assert md.task == "binary"
    assert md.label_names == ["normal", "pneumonia"]  # the 'normal'-like class is the negative one
    assert md.table.groupby("split").size().to_dict() == {"test": 4, "train": 6, "val": 4}
    assert (md.targets() == (md.table["label"] == "pneumonia").to_numpy()).all()


def test_manifest_multilabel_with_patients_relative_paths(tmp_path):
    for i in range(4):
        write_png(tmp_path / "img" / f"{i}.png")
    (tmp_path / "m.csv").write_text("path,label,patient_id\nimg/0.png,effusion|nodule,P1\nimg/1.png,,P1\n"
                                    "img/2.png,nodule,P2\nimg/3.png,effusion,P3\n")
    md = open_data(tmp_path / "m.csv")
    assert md.task == "multilabel" and md.label_names == ["effusion", "nodule"]
    assert md.targets().tolist() == [[1, 1], [0, 0], [0, 1], [1, 0]]
    assert md.has_patients
    assert read_image(md.table["item"][0]).shape == (20, 24)


@pytest.mark.parametrize("rgb,labels,task", [
    (False, np.array([[0], [1], [0], [1], [1], [0]]), "binary"),
    (True, np.array([[0], [1], [2], [1], [2], [0]]), "multiclass"),
    (False, np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]]), "multilabel"),
])
def test_medmnist_npz_gray_rgb_binary_multiclass_multilabel(tmp_path, rgb, labels, task):
    rng = np.random.default_rng(0)
    shape = (6, 28, 28, 3) if rgb else (6, 28, 28)
    images = rng.integers(0, 255, shape, dtype=np.uint8)
    np.savez(tmp_path / "pneumoniamnist.npz" if task == "binary" else tmp_path / "x.npz",
             train_images=images[:4], train_labels=labels[:4], val_images=images[4:5], val_labels=labels[4:5],
             test_images=images[5:], test_labels=labels[5:])
    md = open_data(next(tmp_path.glob("*.npz")))
    assert md.task == task
    if task == "binary":
        assert md.label_names == ["normal", "pneumonia"]
    pixels, errors = load_pixels(md, 32, 3 if rgb else 1)
    assert errors == {} and pixels.shape == (6, 3 if rgb else 1, 32, 32) and pixels.dtype == np.uint8
    assert md.table["split"].tolist() == ["train"] * 4 + ["val", "test"]
    if task == "multilabel":
        assert md.targets().tolist() == labels.tolist()


def test_grayscale_becomes_three_channels_and_size_is_configurable():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = prepare(img, 28, 3)
    assert out.shape == (3, 28, 28) and (out[0] == out[1]).all() and (out[1] == out[2]).all()
    assert prepare(img, 512, 1).shape == (1, 512, 512)


# --------------------------------------------------------------------------- DICOM

def test_dicom_monochrome1_is_inverted(tmp_path):
    ramp = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (4, 1))
    m2 = read_image(make_dicom(tmp_path / "m2.dcm", ramp))
    m1 = read_image(make_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1"))
    assert m2[0, 0] < 10 and m2[0, -1] > 245
    assert (m1.astype(int) == 255 - m2.astype(int)).all()


def test_dicom_rescale_and_window_follow_the_standard(tmp_path):
    # stored 0..200, slope 2, intercept -1000 -> HU -1000..-600; window centre -800 width 200 -> [-900, -700]
    stored = np.tile(np.arange(0, 201, 1, dtype=np.uint16), (2, 1))
    img = read_image(make_dicom(tmp_path / "ct.dcm", stored, slope=2, intercept=-1000, window=(-800, 200)))
    hu = stored[0].astype(float) * 2 - 1000
    assert (img[0][hu <= -900] == 0).all() and (img[0][hu >= -700] == 255).all()
    mid = img[0][np.argmin(np.abs(hu - (-800)))]
    assert 120 <= mid <= 135


def test_dicom_16bit_without_window_uses_robust_percentiles(tmp_path):
    px = np.full((50, 50), 1000, np.uint16)
    px[25:, :] = 3000
    px[0, 0] = 65535  # one hot pixel must not squash the image to black
    img = read_image(make_dicom(tmp_path / "a.dcm", px))
    assert img[10, 10] == 0 and img[40, 40] == 255


def test_dicom_dataset_object_and_rle_compressed_syntax(tmp_path):
    from pydicom.uid import RLELossless

    ds = make_dicom(None)
    plain = read_image(ds)
    ds.compress(RLELossless)
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    path = tmp_path / "rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert (read_image(path) == plain).all()


def test_dicom_without_pixel_data_and_undecodable_syntax_give_clear_errors(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    with pytest.raises(DataError, match="no pixel data"):
        read_image(make_dicom(tmp_path / "sr.dcm", with_pixels=False))
    ds = make_dicom(None)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\x00\x01garbage-not-jpeg2000" * 4])
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / "j2k.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError, match="cannot decode the DICOM pixel data"):
        read_image(path)


# --------------------------------------------------------------------------- bad files

def _bomb_png(width=100_000, height=100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # a valid header declaring 10 gigapixels, then a few bytes of data: tiny on disk, huge if decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name,content,message", [
    ("empty.png", b"", "empty"),
    ("text.png", b"this is a text file, not an image\n" * 5, "not an image"),
    ("trunc.png", None, "truncated or corrupt"),
    ("trunc.jpg", None, "truncated or corrupt"),
    ("bomb.png", _bomb_png(), "large"),
    ("broken.dcm", b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage", "DICOM"),
])
def test_bad_files_raise_clear_data_errors(tmp_path, name, content, message):
    if content is None:
        arr = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG" if name.endswith("png") else "JPEG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_image(path)
    assert name in str(err.value)


def test_16bit_png_rgba_and_cmyk_jpeg_are_read(tmp_path):
    deep = np.tile(np.linspace(0, 60000, 40), (10, 1)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    img16 = read_image(tmp_path / "deep.png")
    assert img16.dtype == np.uint8 and img16.ndim == 2 and img16[0, 0] == 0 and img16[0, -1] == 255
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    rgba[:4, :, 3] = 0  # transparent top half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (8, 8, 3) and (out[4:, :, 0] == 255).all() and (out[:4] == 0).all()
    Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    cmyk = read_image(tmp_path / "c.jpg")
    assert cmyk.shape == (10, 10, 3) and cmyk[5, 5, 0] > 200 and cmyk[5, 5, 1] < 60


def test_empty_class_folder_and_missing_manifest_files(tmp_path):
    from lepton_apps.medical.config import MedicalConfig
    from lepton_apps.medical.training import prepare_data

    write_png(tmp_path / "data" / "normal" / "a.png")
    (tmp_path / "data" / "lesion").mkdir()
    with pytest.raises(DataError, match="holds no PNG/JPEG/DICOM"):
        prepare_data(MedicalConfig(data=str(tmp_path / "data")))
    for i in range(6):
        write_png(tmp_path / "m" / f"{i}.png", value=30 * i)
    (tmp_path / "m.csv").write_text("path,label\n" + "".join(f"m/{i}.png,{'ab'[i % 2]}\n" for i in range(6))
                                    + "m/missing.png,a\n")
    with pytest.raises(DataError, match="1 of 7 images cannot be read.*file not found"):
        prepare_data(MedicalConfig(data=str(tmp_path / "m.csv"), val_fraction=0.3, test_fraction=0.0))


# --------------------------------------------------------------------------- splits and check

def test_template_splits_are_stratified_and_patient_level(tmp_path):
    rows = ["path,label,patient_id"]
    for i in range(120):
        rows.append(f"x{i}.png,{'normal' if i % 3 else 'lesion'},P{i // 3}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    md = open_data(tmp_path / "m.csv")
    split = assign_splits(md, 0.2, 0.2, seed=0)
    assert set(split) == {"train", "val", "test"}
    for p, group in md.table.assign(split=split).groupby("patient_id"):
        assert group["split"].nunique() == 1, f"patient {p} crosses splits"
    for s in ("val", "test"):
        share = (split == s).mean()
        lesion_rate = (md.table["label"][split == s] == "lesion").mean()
        assert 0.12 <= share <= 0.28 and 0.2 <= lesion_rate <= 0.47


def test_check_reports_counts_unreadable_duplicates_and_patient_leakage(tmp_path):
    for i in range(3):
        write_png(tmp_path / f"n{i}.png", value=10 + i)
        write_png(tmp_path / f"l{i}.png", value=100 + i, size=(30, 30))
    (tmp_path / "dup.png").write_bytes((tmp_path / "n0.png").read_bytes())
    (tmp_path / "bad.png").write_bytes(b"")
    (tmp_path / "m.csv").write_text(
        "path,label,patient_id,split\n"
        "n0.png,normal,P1,train\nn1.png,normal,P2,train\nn2.png,normal,P3,val\n"
        "l0.png,lesion,P4,train\nl1.png,lesion,P1,val\nl2.png,lesion,P5,test\n"
        "dup.png,normal,P6,test\nbad.png,lesion,P7,train\n")
    r = check_data(str(tmp_path / "m.csv"))
    assert r["counts"]["train"] == {"normal": 2, "lesion": 2} and r["counts"]["test"] == {"lesion": 1, "normal": 1}
    assert r["n_unreadable"] == 1 and r["unreadable"][0]["item"] == "bad.png" and "empty" in r["unreadable"][0]["reason"]
    assert r["duplicate_groups"] == 1 and r["duplicates_across_splits"] == 1
    assert r["patients"] == 7 and r["patients_across_splits"] == 1
    assert r["sizes"]["height"] == [20, 20.0, 30] and r["modes"] == {"gray": 7}
    assert has_blocking_issues(r)


# --------------------------------------------------------------------------- decode cache, 8-bit DICOM

def test_decode_cache_is_reused_and_a_changed_file_invalidates_it(tmp_path, monkeypatch):
    import os

    import lepton_apps.medical.data as data_mod

    rng = np.random.default_rng(0)
    for cls in ("normal", "lesion"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(tmp_path / "d" / cls / f"{i}.png")
    (tmp_path / "d" / "lesion" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    calls = []
    real = data_mod.prepare
    monkeypatch.setattr(data_mod, "prepare", lambda item, *a, **k: (calls.append(item), real(item, *a, **k))[1])
    cache = tmp_path / "cache"
    md = open_data(tmp_path / "d")
    first, err1 = load_pixels(md, 16, 1, cache_dir=cache)
    assert len(calls) == 7 and len(list(cache.glob("pixels-*"))) == 1
    assert list(err1) == [md.table["item"].tolist().index(str(tmp_path / "d" / "lesion" / "bad.png"))]
    calls.clear()
    second, err2 = load_pixels(open_data(tmp_path / "d"), 16, 1, cache_dir=cache)
    assert calls == [] and np.array_equal(first, second) and list(err2) == list(err1)
    # another size is another cache entry; a rewritten file invalidates the cache
    load_pixels(md, 20, 1, cache_dir=cache)
    assert len(calls) == 7 and len(list(cache.glob("pixels-*"))) == 2
    calls.clear()
    target = tmp_path / "d" / "normal" / "0.png"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    third, _ = load_pixels(open_data(tmp_path / "d"), 16, 1, cache_dir=cache)
    assert len(calls) == 7
    row = md.table["item"].tolist().index(str(target))
    assert (third[row] == 255).all() and not (first[row] == 255).all()
    others = np.arange(len(third)) != row
    assert np.array_equal(third[others], first[others])


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_8bit_pixels_are_read_as_stored(tmp_path, photometric):
    pixels = (np.arange(16 * 24).reshape(16, 24) % 200 + 20).astype(np.uint8)  # 20..219: not stretched to 0..255
    path = make_dicom(tmp_path / "8bit.dcm", pixels, photometric=photometric, bits=8)
    import pydicom

    assert pydicom.dcmread(path).BitsAllocated == 8
    img = read_image(path)
    assert img.dtype == np.uint8 and img.shape == (16, 24)
    expected = pixels if photometric == "MONOCHROME2" else 255 - pixels
    np.testing.assert_array_equal(img, expected)
    # with a window, the window still applies (PS3.3 C.11.2.1.2): centre 120, width 100 -> 70..170 maps to 0..255
    windowed = read_image(make_dicom(tmp_path / "w.dcm", pixels, bits=8, window=(120, 100)))
    assert windowed[pixels <= 69].max() == 0 and windowed[pixels >= 170].min() == 255
