"""Decode one medical image (PNG, JPEG, DICOM, PIL image, numpy array, pydicom Dataset) to uint8.

Every decoder returns a ``uint8`` array, ``(H, W)`` for grayscale or ``(H, W, 3)`` for colour,
and raises :class:`~lepton_apps.errors.DataError` with the file and the reason for anything it
cannot read: an empty file, a truncated or corrupt image, a file that is not an image, a
decompression bomb, a DICOM without pixel data or with a transfer syntax no installed handler
can decode. DICOM pixels go through the modality LUT (rescale slope / intercept), then the VOI
LUT or window centre / width when the file has one (else robust 0.5–99.5 percentile
windowing), and MONOCHROME1 is inverted so that bone is bright. Patient tags are never put in
an error message.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from lepton_apps.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES
MAX_PIXELS = 64_000_000  # declared width x height above this is refused (decompression bombs)


def is_dicom_bytes(head: bytes) -> bool:
    """Return True if ``head`` (the first 132+ bytes of a file) carries the DICOM 'DICM' preamble."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def read_image(item: Any, *, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return ``item`` as a uint8 array (H, W) or (H, W, 3).

    ``item`` is a path, raw bytes, a PIL image, a numpy array or a pydicom Dataset; ``name``
    is used in error messages (default: the path or the type).
    """
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        where = name or str(path)
        if not path.is_file():
            raise DataError("file not found", where=where, fix="check the path (relative paths in a manifest are "
                                                                "resolved against the manifest's folder)")
        data = path.read_bytes()
        return decode_bytes(data, where=where, suffix=path.suffix.lower(), max_pixels=max_pixels)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(item), where=name or "uploaded bytes", suffix=Path(name or "").suffix.lower(),
                            max_pixels=max_pixels)
    if isinstance(item, np.ndarray):
        return array_to_uint8(item, where=name or "numpy array")
    if type(item).__module__.startswith("PIL."):
        return pil_to_uint8(item, where=name or "PIL image", max_pixels=max_pixels)
    if type(item).__name__ in ("Dataset", "FileDataset") and type(item).__module__.startswith("pydicom"):
        return dicom_to_uint8(item, where=name or "DICOM dataset")
    raise DataError(f"cannot read an image from a {type(item).__name__}", where=name,
                    fix="pass a file path, bytes, a PIL image, a numpy array or a pydicom Dataset")


def decode_bytes(data: bytes, *, where: str, suffix: str = "", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return the uint8 image encoded in ``data`` (PNG, JPEG or DICOM, sniffed from the bytes)."""
    if not data:
        raise DataError("the file is empty (0 bytes)", where=where, fix="re-export or re-copy the image")
    if is_dicom_bytes(data[:132]) or suffix in DICOM_SUFFIXES:
        return dicom_to_uint8(_read_dicom_bytes(data, where), where=where)
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DataError(f"the image declares an unreasonably large size ({exc})", where=where,
                        fix="downscale the image below 64 megapixels") from None
    except UnidentifiedImageError:
        raise DataError("not an image: the bytes are neither PNG, JPEG nor DICOM", where=where,
                        fix="check the file; only PNG, JPEG and DICOM are read") from None
    return pil_to_uint8(img, where=where, max_pixels=max_pixels)


def pil_to_uint8(img, *, where: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return a PIL image as uint8 gray (H, W) or RGB (H, W, 3); 16-bit and float are windowed."""
    from PIL import Image

    w, h = img.size
    if w * h > max_pixels:
        raise DataError(f"the image declares {w}x{h} pixels, more than the {max_pixels:,} allowed "
                        "(a possible decompression bomb)", where=where, fix="downscale the image")
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"the image is truncated or corrupt ({exc})", where=where,
                        fix="re-export or re-copy the file") from None
    mode = img.mode
    if mode in ("1", "L", "P", "LA", "PA") and not (mode in ("P", "PA") and _palette_is_colour(img)):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return window_percentile(np.asarray(img, dtype=np.float64))
    if mode in ("RGBA", "LA", "PA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)  # transparent pixels become black, not random colour
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _palette_is_colour(img) -> bool:
    palette = img.getpalette() or []
    rgb = np.asarray(palette[: (len(palette) // 3) * 3]).reshape(-1, 3)
    return bool(len(rgb)) and not (rgb == rgb[:, :1]).all()


def array_to_uint8(arr: np.ndarray, *, where: str) -> np.ndarray:
    """Return a numpy image as uint8 (H, W) or (H, W, 3); other dtypes are windowed to 0–255."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3) or min(a.shape[:2]) < 1:
        raise DataError(f"an image array must be (H, W), (H, W, 1|3|4) or (1|3, H, W), got shape {a.shape}",
                        where=where, fix="pass one 2-D grayscale or RGB image")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if not np.issubdtype(a.dtype, np.number):
        raise DataError(f"an image array must be numeric, got dtype {a.dtype}", where=where)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise DataError("the image array contains NaN or infinite values", where=where)
    if np.issubdtype(arr.dtype, np.floating) and a.min() >= 0 and a.max() <= 1:
        return np.round(a * 255).astype(np.uint8)  # float images in [0, 1]
    return window_percentile(a)


def window_percentile(a: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Return ``a`` linearly mapped to uint8 between its ``low`` and ``high`` percentiles."""
    lo, hi = np.percentile(a, [low, high])
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.round(np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def window_center_width(a: np.ndarray, center: float, width: float) -> np.ndarray:
    """Return ``a`` mapped to uint8 by the DICOM linear window (PS3.3 C.11.2.1.2)."""
    width = max(float(width), 1.0)
    y = ((a - (center - 0.5)) / (width - 1) + 0.5)
    return np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)


def _read_dicom_bytes(data: bytes, where: str):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data), force=not is_dicom_bytes(data[:132]))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"not a readable DICOM file ({type(exc).__name__})", where=where,
                        fix="check that the file is a complete DICOM Part 10 file") from None


def _first(value: Any) -> float:
    """DICOM multi-valued numbers (e.g. two windows) -> the first one as float."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _is_plain_8bit(ds, values: np.ndarray) -> bool:
    """True for unsigned data stored in at most 8 bits whose modality-LUT values stay within 0–255."""
    bits = int(getattr(ds, "BitsStored", 0) or getattr(ds, "BitsAllocated", 16) or 16)
    unsigned = int(getattr(ds, "PixelRepresentation", 0) or 0) == 0
    return bits <= 8 and unsigned and values.size > 0 and values.min() >= 0 and values.max() <= 255 \
        and np.array_equal(values, np.round(values))


def dicom_to_uint8(ds, *, where: str) -> np.ndarray:
    """Return the displayable uint8 image of a pydicom Dataset (first frame of multi-frame files)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DataError("the DICOM file has no pixel data (e.g. a structured report or a header-only file)",
                        where=where, fix="export the image series, not the report")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for undecodable pixel data
        raise _undecodable(ds, exc, where) from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) == 3
    if frames > 1:
        arr = arr[0]
    if colour:
        return array_to_uint8(np.asarray(arr), where=where)
    values = apply_modality_lut(np.asarray(arr), ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        out = window_percentile(apply_voi_lut(values, ds).astype(np.float64), 0, 100)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        out = window_center_width(values, _first(ds.WindowCenter), _first(ds.WindowWidth))
    elif _is_plain_8bit(ds, values):
        out = values.astype(np.uint8)  # 8-bit data without a window is already display-ready (like a PNG)
    else:
        out = window_percentile(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _undecodable(ds, exc: Exception, where: str) -> DataError:
    """Return the error for pixel data pydicom could not decode: no handler installed, or a damaged stream."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    label = f"{getattr(syntax, 'name', syntax)} ({syntax})" if syntax else "missing transfer syntax"
    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError, TypeError):
        decoder = None
    if decoder is not None and decoder.is_available:
        plugins = ", ".join(decoder.available_plugins)
        return DataError(f"cannot decode the DICOM pixel data with transfer syntax {label}: the installed "
                         f"handler(s) ({plugins}) failed ({reason})", where=where,
                         fix="the compressed data is probably damaged: re-export the file, or convert it to an "
                             "uncompressed transfer syntax")
    if decoder is None:
        return DataError(f"cannot decode the DICOM pixel data: pydicom has no decoder for transfer syntax {label}",
                         where=where, fix="convert the file to an uncompressed transfer syntax "
                                          "(e.g. 'gdcmconv --raw in.dcm out.dcm' or 'dcmdjpeg')")
    return DataError(f"cannot decode the DICOM pixel data: no installed handler supports transfer syntax {label}",
                     where=where, fix=f"install a handler: {_install_hint(decoder.missing_dependencies)}; or convert "
                                      "the file to an uncompressed transfer syntax")


def _install_hint(missing: list[str]) -> str:
    """Turn pydicom's ``'pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-openjpeg>=2.0'`` into a pip command."""
    import re

    pip_names = {"gdcm": "python-gdcm"}  # pydicom names the module; pip wants the distribution
    commands = []
    for entry in missing:
        _, _, needs = entry.partition(" - requires ")
        reqs = [re.match(r"([A-Za-z0-9_.-]+)(.*)", r.strip()).groups() for r in needs.split(" and ") if r.strip()]
        pkgs = [f"'{pip_names.get(name, name)}{spec}'" for name, spec in reqs if name != "numpy"]
        if pkgs:
            commands.append("pip install " + " ".join(pkgs))
    commands.sort(key=lambda c: "gdcm" in c)  # pylibjpeg's plugins (wheels everywhere) first
    return " or ".join(commands) if commands else "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Return a uint8 image as (H, W) for ``channels=1`` (RGB -> luminance) or (H, W, 3) for 3."""
    if channels == 1:
        if img.ndim == 2:
            return img
        return np.round(img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    return img


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Return ``img`` resized to ``size`` x ``size`` (area-averaged when shrinking, bilinear when growing)."""
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return img
    pil = Image.fromarray(img)
    shrink = pil.width > size or pil.height > size
    return np.asarray(pil.resize((size, size), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR))


def prepare(item: Any, size: int, channels: int, *, name: str | None = None) -> np.ndarray:
    """Return ``item`` decoded, converted to ``channels`` and resized: uint8 (C, size, size)."""
    img = resize(to_channels(read_image(item, name=name), channels), size)
    return img[None] if img.ndim == 2 else np.ascontiguousarray(img.transpose(2, 0, 1))
