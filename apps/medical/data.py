"""Readers for the medical template's inputs, and patient-level stratified splits.

Three layouts are read into one :class:`MedicalData` (a table with one row per image):

* a folder ``root/<class>/*.(png|jpg|jpeg|dcm)``, optionally with ``train/ val/ test/`` on top;
* a CSV manifest ``path,label[,patient_id][,split]`` (paths relative to the manifest; a
  multi-label row lists its labels separated by ``|``, an empty label means "no finding");
* a MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_…``, ``test_…``), grayscale or
  RGB, binary, multi-class or multi-label (e.g. ChestMNIST).

:func:`load_pixels` decodes every image once into a uint8 array ``(N, C, size, size)``
(threads, optionally cached on disk), which training keeps in memory and augments on the device;
:mod:`.stream` decodes the same way inside DataLoader workers when the set is too large for that.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np
import pandas as pd

from lepton_apps.errors import ConfigError, DataError

from .imageio import SUFFIXES, prepare, to_channels, resize
from .pixelcache import PixelCache

if TYPE_CHECKING:
    from .config import MedicalConfig

Task = Literal["binary", "multiclass", "multilabel"]
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}
MEDMNIST_LABELS = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal_or_benign"],
    "chestmnist": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
    "dermamnist": ["actinic_keratoses", "basal_cell_carcinoma", "benign_keratosis", "dermatofibroma",
                   "melanoma", "melanocytic_nevi", "vascular_lesions"],
}


@dataclasses.dataclass
class MedicalData:
    """A labelled image set: ``table`` has one row per image.

    table columns: ``item`` (file path, or ``file.npz:split:i`` for arrays), ``label`` (class
    name; multi-label: names joined by ``|``), ``split`` (train/val/test or None),
    ``patient_id`` (or None). ``arrays`` holds the images of an ``.npz`` source.
    """

    source: str
    kind: Literal["folder", "manifest", "npz"]
    table: pd.DataFrame
    label_names: list[str]
    task: Task
    arrays: np.ndarray | None = None
    problems: list[str] = dataclasses.field(default_factory=list)
    patient_source: str | None = None  # where patient ids came from: a manifest column or a file-name pattern

    def targets(self) -> np.ndarray:
        """Return class ids (n,) for binary / multi-class, or a 0/1 float matrix (n, k) for multi-label."""
        index = {name: i for i, name in enumerate(self.label_names)}
        if self.task == "multilabel":
            out = np.zeros((len(self.table), len(self.label_names)), dtype=np.float32)
            for row, label in enumerate(self.table["label"]):
                for name in _split_labels(label):
                    out[row, index[name]] = 1
            return out
        return self.table["label"].map(index).to_numpy(dtype=np.int64)

    @property
    def has_patients(self) -> bool:
        """True when the table carries patient ids."""
        return self.table["patient_id"].notna().any()


def _split_labels(label: Any) -> list[str]:
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return []
    return [p.strip() for p in str(label).split("|") if p.strip()]


def open_data(data: str | os.PathLike, patient_id_pattern: str | None = None) -> MedicalData:
    """Return the images and labels found at ``data`` (a folder, a ``.csv`` manifest or a MedMNIST ``.npz``).

    With ``patient_id_pattern`` (a regular expression with a named group ``patient``) rows without
    a patient id take it from their file name; a name it does not match stays its own patient,
    and how many did not match is listed in ``problems``.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise DataError("data not found", where=str(path),
                        fix="pass a folder root/<class>/*.png, a manifest.csv (path,label[,patient_id][,split]) "
                            "or a MedMNIST .npz")
    if path.is_dir():
        md = read_folder(path)
    elif path.suffix.lower() == ".npz":
        md = read_npz(path)
    elif path.suffix.lower() == ".csv":
        md = read_manifest(path)
    else:
        raise DataError(f"unsupported data file type {path.suffix!r}", where=str(path),
                        fix="use a folder of images, a .csv manifest or a MedMNIST .npz")
    if patient_id_pattern:
        apply_patient_pattern(md, patient_id_pattern)
    return md


def apply_patient_pattern(md: MedicalData, pattern: str) -> None:
    """Fill missing patient ids of ``md`` from the file names with ``pattern`` (in place)."""
    from .patients import compile_pattern, patient_from_name

    if md.kind == "npz":
        raise ConfigError("patient_id_pattern needs file names, and a .npz holds arrays", where="patient_id_pattern",
                          fix="leave patient_id_pattern unset for .npz data, or use a folder / manifest")
    rx = compile_pattern(pattern)
    given = md.table["patient_id"].to_numpy(dtype=object)
    missing = pd.isna(given)
    if not missing.any():
        return
    found = [patient_from_name(rx, item) if miss else pid
             for item, pid, miss in zip(md.table["item"], given, missing)]
    md.table["patient_id"] = pd.Series(found, index=md.table.index, dtype=object)
    unmatched = sum(1 for f, miss in zip(found, missing) if miss and f is None)
    if unmatched:
        md.problems.append(f"{unmatched} of {int(missing.sum())} file names do not match patient_id_pattern "
                           f"{pattern!r}; each of those images counts as its own patient")
    if unmatched < missing.sum():
        source = f"file names (patient_id_pattern {pattern!r})"
        md.patient_source = source if md.patient_source is None else f"{md.patient_source} and {source}"


NEGATIVE_NAMES = {"normal", "negative", "benign", "healthy", "no_finding", "no finding", "none", "0", "false",
                  "no", "absent", "control", "neg"}


def order_classes(names) -> list[str]:
    """Return class names sorted, except that with two classes a 'normal'-like name comes first.

    The second class of a binary task is the positive one (sensitivity, the decision, ROC).
    """
    names = sorted(str(n) for n in names)
    if len(names) == 2 and names[1].strip().lower() in NEGATIVE_NAMES and names[0].strip().lower() not in NEGATIVE_NAMES:
        names = [names[1], names[0]]
    return names


# --------------------------------------------------------------------------- folder

def _image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Return (image files, other files) under ``folder``, recursively, sorted."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in SUFFIXES]
    return images, [p for p in files if p.suffix.lower() not in SUFFIXES]


def read_folder(root: Path) -> MedicalData:
    """Return the images of ``root/<class>/*`` or ``root/<split>/<class>/*``; empty class folders are problems."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name.lower() in SPLIT_ALIASES]
    layout = [(SPLIT_ALIASES[s.name.lower()], s) for s in split_dirs] if split_dirs else [(None, root)]
    rows, problems, ignored = [], [], 0
    for split, base in layout:
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images, others = _image_files(class_dir)
            ignored += len(others)
            if not images:
                problems.append(f"class folder '{class_dir.relative_to(root)}' holds no PNG/JPEG/DICOM images")
            rows += [{"item": str(p), "label": class_dir.name, "split": split, "patient_id": None} for p in images]
    if ignored:
        problems.append(f"{ignored} file(s) without a .png/.jpg/.jpeg/.dcm suffix were ignored")
    if not rows:
        raise DataError("no images found", where=str(root),
                        fix="lay the images out as root/<class>/*.png (or .jpg/.dcm), optionally under train/ val/ test/")
    table = pd.DataFrame(rows)
    names = order_classes(table["label"].unique())
    return MedicalData(str(root), "folder", table, names, "binary" if len(names) == 2 else "multiclass",
                       problems=problems)


# --------------------------------------------------------------------------- manifest

def read_manifest(path: Path) -> MedicalData:
    """Return the rows of a CSV manifest ``path,label[,patient_id][,split]`` (paths relative to the CSV)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot parse the manifest ({exc})", where=str(path),
                        fix="write a UTF-8 CSV with a header line: path,label[,patient_id][,split]") from None
    df.columns = [c.strip().lower() for c in df.columns]
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise DataError(f"the manifest lacks the column(s) {sorted(missing)}", where=str(path),
                        fix=f"add a header 'path,label[,patient_id][,split]'; found {list(df.columns)}")
    if df.empty:
        raise DataError("the manifest has no rows", where=str(path), fix="add one row per image")
    base = path.parent
    items = [str(p if Path(p).is_absolute() else base / p) for p in df["path"].str.strip()]
    multilabel = df["label"].str.contains("|", regex=False).any()
    if not multilabel and (df["label"].str.strip() == "").any():
        bad = int((df["label"].str.strip() == "").to_numpy().argmax()) + 2
        raise DataError("a row has an empty label", where=f"{path} line {bad}",
                        fix="give every row a class name (multi-label rows: names separated by '|')")
    split = None
    if "split" in df.columns:
        raw = df["split"].str.strip().str.lower()
        unknown = sorted(set(raw) - set(SPLIT_ALIASES) - {""})
        if unknown:
            raise DataError(f"unknown split value(s) {unknown[:5]}", where=f"{path} column 'split'",
                            fix="use train, val or test (or leave empty to let the template split)")
        split = raw.map(lambda s: SPLIT_ALIASES.get(s))
    patients = df["patient_id"].str.strip().replace("", None) if "patient_id" in df.columns else None
    table = pd.DataFrame({"item": items, "label": df["label"].str.strip(),
                          "split": split if split is not None else None,
                          "patient_id": patients if patients is not None else None})
    source = "manifest column 'patient_id'" if patients is not None and patients.notna().any() else None
    if multilabel:
        names = sorted({n for lab in table["label"] for n in _split_labels(lab)})
        table["label"] = ["|".join(_split_labels(lab)) for lab in table["label"]]
        task: Task = "multilabel"
    else:
        names = order_classes(table["label"].unique())
        task = "binary" if len(names) == 2 else "multiclass"
    return MedicalData(str(path), "manifest", table, names, task, patient_source=source)


# --------------------------------------------------------------------------- MedMNIST

def read_npz(path: Path) -> MedicalData:
    """Return the images of a MedMNIST ``.npz`` (keys ``{split}_images`` / ``{split}_labels``)."""
    try:
        npz = np.load(path, allow_pickle=False)
        keys = set(npz.files)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the .npz file ({exc})", where=str(path),
                        fix="pass a MedMNIST .npz (numpy arrays, no pickles)") from None
    present = [s for s in SPLITS if f"{s}_images" in keys and f"{s}_labels" in keys]
    if not present:
        raise DataError(f"no '<split>_images' / '<split>_labels' arrays in the file (found {sorted(keys)})",
                        where=str(path), fix="use a MedMNIST .npz with train_images, train_labels, val_…, test_…")
    images, labels, splits = [], [], []
    for s in present:
        x, y = npz[f"{s}_images"], npz[f"{s}_labels"]
        if x.ndim not in (3, 4) or len(x) != len(y):
            raise DataError(f"{s}_images has shape {x.shape} and {s}_labels {y.shape}", where=str(path),
                            fix="images must be (N, H, W) or (N, H, W, 3) with one label row per image")
        images.append(x)
        labels.append(y.reshape(len(y), -1))
        splits += [s] * len(x)
    x = np.concatenate(images)
    if x.dtype != np.uint8:
        x = np.stack([_u8(a) for a in x])
    y = np.concatenate(labels).astype(np.int64)
    stem = path.stem.split("_")[0].lower()
    if y.shape[1] > 1:
        k = y.shape[1]
        names = MEDMNIST_LABELS.get(stem, [str(i) for i in range(k)])[:k]
        label = ["|".join(names[j] for j in np.flatnonzero(row)) for row in y]
        task: Task = "multilabel"
    else:
        k = int(y.max()) + 1
        known = MEDMNIST_LABELS.get(stem)
        names = known if known and len(known) == k else [str(i) for i in range(k)]
        label = [names[i] for i in y[:, 0]]
        task = "binary" if k == 2 else "multiclass"
    item = [f"{path.name}:{s}:{i}" for s in present for i in range(int((np.array(splits) == s).sum()))]
    table = pd.DataFrame({"item": item, "label": label, "split": splits, "patient_id": None})
    return MedicalData(str(path), "npz", table, names, task, arrays=x)


def _u8(a: np.ndarray) -> np.ndarray:
    from .imageio import array_to_uint8

    return array_to_uint8(a, where="npz image")


# --------------------------------------------------------------------------- pixels

AUTO_SIZE_RANGE = (64, 96)


def auto_image_size(md: MedicalData, sample: int = 16) -> int:
    """Return the input size for ``md``'s images: the median short side of a sample, rounded to a
    multiple of 16 and clamped to :data:`AUTO_SIZE_RANGE` (small images are enlarged to what an
    ImageNet backbone needs; large ones are reduced to keep training affordable on a CPU)."""
    lo, hi = AUTO_SIZE_RANGE
    if md.arrays is not None:
        sides = [min(md.arrays.shape[1:3])]
    else:
        from .imageio import read_image

        sides = []
        step = max(1, len(md.table) // sample)
        for item in md.table["item"].iloc[::step]:
            try:
                sides.append(min(read_image(item).shape[:2]))
            except DataError:
                continue
    if not sides:
        return lo
    side = int(round(float(np.median(sides)) / 16) * 16)
    return int(min(hi, max(lo, side)))


def infer_channels(md: MedicalData, sample: int = 64) -> int:
    """Return 1 if the images are grayscale, 3 if any of a sample is colour."""
    if md.arrays is not None:
        return 3 if md.arrays.ndim == 4 else 1
    from .imageio import read_image

    step = max(1, len(md.table) // sample)
    for item in md.table["item"].iloc[::step]:
        try:
            img = read_image(item)
        except DataError:
            continue
        if img.ndim == 3 and not (img == img[..., :1]).all():
            return 3
    return 1


def load_pixels(md: MedicalData, size: int, channels: int, *, cache_dir: str | os.PathLike | None = None,
                workers: int | None = None, progress: Callable[[int, int], None] | None = None
                ) -> tuple[np.ndarray, dict[int, str]]:
    """Return ``(pixels uint8 (N, C, size, size), {row: error message})`` for every row of ``md``.

    Rows that cannot be read keep zero pixels and appear in the error dict. With ``cache_dir``
    the decoded rows and the reasons of failed ones go to a :class:`PixelCache` on disk, keyed
    by the files' names, sizes and mtimes, and the next run decodes only what is missing.
    """
    n = len(md.table)
    if md.arrays is not None:
        out = np.stack([_prep_array(a, size, channels) for a in md.arrays]) if n else np.zeros((0, channels, size, size), np.uint8)
        return out, {}
    items = md.table["item"].tolist()
    cache = PixelCache.for_items(items, size, channels, cache_dir) if cache_dir else PixelCache.in_memory(n, channels, size)
    decode_rows(cache, items, cache.pending(), workers=workers, progress=progress)
    cache.flush()
    return np.array(cache.pixels), cache.errors(items)


def decode_rows(cache: PixelCache, items: list[str], rows: np.ndarray, *, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> None:
    """Decode ``items[row]`` for each of ``rows`` into ``cache`` with a thread pool (PIL releases the GIL)."""

    def work(i: int) -> None:
        decode_into(cache, items, int(i))

    done, n = 0, len(rows)
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2))) as pool:
        for _ in pool.map(work, rows):
            done += 1
            if progress and (done % 64 == 0 or done == n):
                progress(done, n)


def decode_into(cache: PixelCache, items: list[str], row: int) -> np.ndarray | None:
    """Decode one row into ``cache`` at its size and channels; return the pixels, or None (reason recorded)."""
    _, channels, size, _ = cache.pixels.shape
    try:
        image = prepare(items[row], size, channels)
    except DataError as exc:
        cache.fail(row, exc)
        return None
    cache.put(row, image)
    return image


def _prep_array(a: np.ndarray, size: int, channels: int) -> np.ndarray:
    img = resize(to_channels(a, channels), size)
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


# --------------------------------------------------------------------------- splits

def assign_splits(md: MedicalData, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  seed: int = 0) -> np.ndarray:
    """Return a split name per row: the data's own splits where given, else stratified, patient-level ones.

    Rows without a split are divided into train / val (/ test when the data has no test rows
    at all) so that class proportions match and no patient appears in two splits.
    """
    given = md.table["split"].to_numpy(dtype=object)
    split = np.array([s if s in SPLITS else None for s in given], dtype=object)
    free = np.flatnonzero(pd.isna(split))
    if len(free) == 0:
        return split
    has_test = (split == "test").any()
    has_val = (split == "val").any()
    y = md.targets()
    strat = y.argmax(1) if y.ndim == 2 else y
    groups = md.table["patient_id"].to_numpy(dtype=object)
    groups = np.where(pd.isna(groups), np.array([f"__row{i}" for i in range(len(groups))], dtype=object), groups)
    rest = free
    if not has_test and test_fraction > 0:
        test_rows, rest = _group_split(rest, strat, groups, test_fraction, seed)
        split[test_rows] = "test"
    if not has_val and val_fraction > 0:
        share = val_fraction / max(1e-9, 1 - (0 if has_test else test_fraction))
        val_rows, rest = _group_split(rest, strat, groups, share, seed + 1)
        split[val_rows] = "val"
    split[rest] = "train"
    return split


def _group_split(rows: np.ndarray, strat: np.ndarray, groups: np.ndarray, fraction: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into (held-out ≈ fraction, rest), stratified by class, whole groups together."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, int(round(1 / min(0.5, max(fraction, 1e-3)))))
    if len(rows) < n_splits * 2:
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(rows)
        k = max(1, int(round(fraction * len(rows)))) if len(rows) > 1 else 0
        return np.sort(shuffled[:k]), np.sort(shuffled[k:])
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only k members" is expected for tiny sets
        rest_idx, held_idx = next(folds.split(rows, strat[rows], groups[rows]))
    return np.sort(rows[held_idx]), np.sort(rows[rest_idx])


def model_pixels(clf, md, where: str, verb: str):
    """Return ``load_pixels`` of labelled data ``md`` as the classifier ``clf`` sees it (its size and channels, its
    class order); DataError naming ``where`` when a label is not one of the model's classes (what ``verb`` needs)."""
    unknown = sorted({n for lab in md.table["label"] for n in str(lab).split("|") if n} - set(clf.label_names))
    if unknown:
        raise DataError(f"labels {unknown[:5]} are not classes of the model {clf.label_names}", where=where,
                        fix=f"{verb} on data with the model's classes")
    md.label_names = clf.label_names
    return load_pixels(md, clf.image_size, clf.channels)


def open_for_training(cfg: MedicalConfig) -> tuple[MedicalData, np.ndarray, int, int]:
    """Return ``(data, split per row, channels, image size)``; raises DataError for empty class folders or one class."""
    md = open_data(cfg.data, cfg.patient_id_pattern)
    empty = [p for p in md.problems if "holds no" in p]
    if empty:
        raise DataError("; ".join(empty), where=md.source, fix="add images to the folder or remove it")
    if len(md.label_names) < 2:
        raise DataError(f"only one class ({md.label_names}) was found", where=md.source,
                        fix="a classifier needs at least two classes")
    split = assign_splits(md, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    channels = infer_channels(md) if cfg.channels == "auto" else int(cfg.channels)
    return md, split, channels, cfg.image_size or auto_image_size(md)


def usable_split(md: MedicalData, split: np.ndarray, errors: dict[int, str], cfg: MedicalConfig) -> np.ndarray:
    """Return ``split`` with unreadable rows marked ``"unreadable"``.

    Raises DataError for unreadable files (unless ``skip_unreadable``) and for train /
    validation splits that cannot be trained on.
    """
    keep = np.ones(len(md.table), dtype=bool)
    if errors:
        if not cfg.skip_unreadable:
            shown = "; ".join(list(errors.values())[:3])
            raise DataError(f"{len(errors)} of {len(md.table)} images cannot be read: {shown}", where=md.source,
                            fix="remove or repair them (see 'lepton-apps medical check DATA'), "
                                "or set skip_unreadable: true")
        keep[list(errors)] = False
    for name in ("train", "val"):
        rows = keep & (split == name)
        if not rows.any():
            raise DataError(f"the {name} split is empty", where=md.source,
                            fix="add images, or lower val_fraction / test_fraction less aggressively")
    val_y = md.targets()[keep & (split == "val")]
    if md.task != "multilabel" and len(np.unique(val_y)) < 2:
        raise DataError("the validation split holds a single class, so AUC is undefined", where=md.source,
                        fix="add images of every class or raise val_fraction")
    return np.where(keep, split, "unreadable")
