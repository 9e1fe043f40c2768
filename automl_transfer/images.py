"""Image tasks: a folder `<dir>/<class>/*.jpg|png`, a .tar.gz of one, or an .npz of arrays.

Layouts, as Keras `image_dataset_from_directory` reads them:
- `<root>/<class>/...`: every image below a class folder belongs to that class; the split is the
  seeded 80/10/10 of automl_transfer.tasks (the same rule as text tasks).
- `<root>/train/<class>/...` and `<root>/test/<class>/...` (optionally `valid/`): the given splits;
  a missing valid split is carved from train, as for text tasks.
- A single wrapping folder (`flowers/<class>/...` inside an archive) is stepped into.
- `.npz` with `x` uint8 [n, h, w] or [n, h, w, c] and `y` [n] (the offline MNIST file).
Files other than .jpg/.jpeg/.png and hidden files are ignored. Grayscale and palette images
become 3-channel RGB. A registered task may cap each split (`max_rows` in datasets/tasks.yaml):
a seeded subset of the split, so only the kept files are decoded.

Decoding is the slow part (CIFAR-10 is 60,000 JPEGs), so the decoded uint8 arrays are cached in
<cache_dir>/images/<task>-<key>/ (outside git), keyed on the source file's path, mtime and size,
the split seed and the caps; `resized` keeps one memory-mapped copy per module input size.
Images of one size keep it; mixed sizes are resized to MIXED_SIZE (squashed, as Keras does).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from automl_transfer import paths
from automl_transfer.errors import DataError
from automl_transfer.fingerprints import task_fingerprint

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
MIXED_SIZE = 224  # side of stored images when a task's images differ in size
CACHE_FORMAT = 1  # bump when what is cached changes
_SPLIT_FOLDERS = ("train", "valid", "test")
_RESIZE_CHUNK = 256


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    """Decoded images of a task: uint8 [n, h, w, 3] and int64 labels per split."""

    label_names: tuple[str, ...]
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    cache_dir: Path  # where this task's arrays live (resized copies go beside them)


def is_image_source(path: Path) -> bool:
    """True for what `load_images` reads: a directory, a .tar.gz/.tgz archive or an .npz file."""
    return path.is_dir() or path.name.endswith(ARCHIVE_SUFFIXES + (".npz",))


def load_images(path: Path, name: str, seed: int,
                split_indices: Callable[[Path, list[str], int], dict[str, np.ndarray]],
                max_rows: Mapping[str, int] | None = None, log: Callable[[str], object] | None = None
                ) -> ImageData:
    """Decode (or read back from the cache) an image task's splits.

    Args:
        path: the folder, archive or .npz.
        name: the task name (names the cache folder).
        seed: split seed, passed to `split_indices(path, split_values, seed)`.
        split_indices: the text tasks' split rule (rows -> train/valid/test indices).
        max_rows: optional cap per split (a seeded subset).
        log: progress lines (default: stderr).
    Raises:
        DataError: one line naming the bad folder or file.
    """
    log = log or _stderr
    # Keyed on the data's bytes, not its path or mtime: a copied or moved dataset (new mtimes,
    # same images) reuses its decoded images and the features computed from them.
    key = json.dumps([task_fingerprint(path), seed, dict(max_rows or {}), CACHE_FORMAT])
    folder = paths.cache_dir() / "images" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    cached = _read_cache(folder)
    if cached is not None:
        return cached
    if path.name.endswith(".npz"):
        data = _from_npz(path, seed, split_indices, max_rows, folder)
    else:
        data = _from_files(path, seed, split_indices, max_rows, folder, log)
    _write_cache(data)
    return data


def resized(images: np.ndarray, cache_dir: Path, split: str, size: int,
            log: Callable[[str], object] | None = None) -> np.ndarray:
    """uint8 [n, size, size, 3] of one split, resized once per (task, size) into the task's
    cache folder and memory-mapped."""
    if images.shape[1:3] == (size, size):
        return images
    target = cache_dir / f"{split}-{size}.npy"
    if not target.is_file():
        import tensorflow as tf  # only callers that resize need TensorFlow
        log = log or _stderr
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(images), size, size, 3))
        for rows in iter_chunks(len(images), _RESIZE_CHUNK):
            chunk = tf.image.resize(images[rows], (size, size), antialias=True)
            out[rows] = np.clip(np.round(chunk.numpy()), 0, 255).astype(np.uint8)
        out.flush()
        del out
        os.replace(tmp, target)
        log(f"resized {len(images)} {split} images to {size}x{size} (cached in {target.parent})")
    return np.load(target, mmap_mode="r")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- reading files ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Entry:
    """An image file: where it is (for messages), its class and its given split ('' if none)."""

    where: str
    label: str
    split: str
    read: Callable[[], bytes]


def _from_files(path: Path, seed: int, split_indices, max_rows, folder: Path, log) -> ImageData:
    entries = _entries(path)
    label_names = tuple(sorted({e.label for e in entries}))
    indices = _capped(split_indices(path, [e.split for e in entries], seed), max_rows, seed)
    label_ids = {n: i for i, n in enumerate(label_names)}
    wanted = sorted(int(i) for idx in indices.values() for i in idx)
    decoded = _decode_all([entries[i] for i in wanted], log, str(path))
    position = {i: k for k, i in enumerate(wanted)}
    images = {s: decoded[[position[int(i)] for i in idx]] if len(idx) else decoded[:0]
              for s, idx in indices.items()}
    labels = {s: np.array([label_ids[entries[int(i)].label] for i in idx], np.int64)
              for s, idx in indices.items()}
    return ImageData(label_names, images, labels, folder)


def _from_npz(path: Path, seed: int, split_indices, max_rows, folder: Path) -> ImageData:
    try:
        with np.load(path) as arrays:
            x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: cannot read arrays x and y ({err})") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.dtype != np.uint8 or len(y) != len(x):
        raise DataError(f"{path}: expected x uint8 [n, h, w(, 1|3)] and y [n], got x {x.dtype} "
                        f"{list(x.shape)} and y {list(np.shape(y))}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    label_names = tuple(str(v) for v in np.unique(y))
    _check_classes(path, label_names)
    label_ids = {n: i for i, n in enumerate(label_names)}
    labels = np.array([label_ids[str(v)] for v in y], np.int64)
    indices = _capped(split_indices(path, [""] * len(x), seed), max_rows, seed)
    return ImageData(label_names, {s: x[i] for s, i in indices.items()},
                     {s: labels[i] for s, i in indices.items()}, folder)


def _capped(indices: dict[str, np.ndarray], max_rows: Mapping[str, int] | None, seed: int
            ) -> dict[str, np.ndarray]:
    """Each split cut to at most max_rows[split] rows: a seeded subset, in file order."""
    out = dict(indices)
    for split, cap in (max_rows or {}).items():
        idx = out[split]
        if len(idx) > cap:
            keep = np.random.default_rng([seed, len(split)]).choice(len(idx), int(cap), replace=False)
            out[split] = idx[np.sort(keep)]
    return out


def _check_classes(where: Path | str, label_names: tuple[str, ...]) -> None:
    if len(label_names) < 2:
        raise DataError(f"{where}: only one class ({label_names[0]!r}); a task needs at least 2")


def _entries(path: Path) -> list[_Entry]:
    """Every image of the folder or archive with its class and split; checks the layout."""
    if path.is_dir():
        files, dirs = _walk_folder(path)
    else:
        files, dirs = _walk_archive(path)
    if not files:
        raise DataError(f"{path}: no images (expected {path.name}/<class>/*.jpg|png)")
    root: tuple[str, ...] = ()
    while True:  # step into a single wrapping folder
        top_dirs = {d[len(root)] for d in dirs if len(d) > len(root) and d[:len(root)] == root}
        top_files = [f for f in files if f[:len(root)] == root and len(f) == len(root) + 1]
        nested = any(len(d) > len(root) + 1 and d[:len(root)] == root for d in dirs)
        if len(top_dirs) == 1 and not top_files and nested:
            root = root + (next(iter(top_dirs)),)
            continue
        break
    split_layout = top_dirs and top_dirs <= set(_SPLIT_FOLDERS) and {"train", "test"} <= top_dirs
    depth = len(root) + (2 if split_layout else 1)  # path parts up to and including the class folder
    classes = sorted({d[:depth] for d in dirs if len(d) >= depth and d[:len(root)] == root})
    where = lambda parts: f"{path}/{'/'.join(parts)}" if path.is_dir() else f"{path}:{'/'.join(parts)}"
    entries: list[_Entry] = []
    for class_parts in classes:
        members = sorted(f for f, _ in files.items() if len(f) > depth and f[:depth] == class_parts)
        if not members:
            raise DataError(f"{where(class_parts)}: empty class folder (no .jpg, .jpeg or .png images)")
        split = class_parts[len(root)] if split_layout else ""
        entries += [_Entry(where(f), class_parts[-1], split, files[f]) for f in members]
    if not entries:
        raise DataError(f"{path}: no images in class folders (expected {path.name}/<class>/*.jpg|png)")
    label_names = tuple(sorted({e.label for e in entries}))
    _check_classes(path, label_names)
    return entries


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk_folder(path: Path) -> tuple[dict[tuple[str, ...], Callable[[], bytes]], set[tuple[str, ...]]]:
    files, dirs = {}, set()
    for current, subdirs, names in os.walk(path):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        rel = Path(current).relative_to(path).parts
        dirs.update(rel + (d,) for d in subdirs)
        for n in names:
            if _is_image(n):
                files[rel + (n,)] = (lambda p=Path(current) / n: p.read_bytes())
    return files, dirs


def _walk_archive(path: Path) -> tuple[dict[tuple[str, ...], Callable[[], bytes]], set[tuple[str, ...]]]:
    """Members of a .tar.gz read into memory once (a gzip stream cannot be read out of order)."""
    files, dirs = {}, set()
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                if not parts or any(p.startswith(".") or p == ".." for p in parts):
                    continue
                dirs.update(parts[:i] for i in range(1, len(parts)))
                if member.isdir():
                    dirs.add(parts)
                elif member.isfile() and _is_image(parts[-1]):
                    data = archive.extractfile(member).read()
                    files[parts] = (lambda b=data: b)
    except (OSError, EOFError, tarfile.TarError) as err:
        raise DataError(f"{path}: cannot read the archive ({err})") from None
    return files, dirs


def _decode_all(entries: list[_Entry], log, source: str) -> np.ndarray:
    """uint8 [n, h, w, 3]; mixed sizes resized to MIXED_SIZE. A bad file is named."""
    from PIL import Image, UnidentifiedImageError  # only image tasks need Pillow
    decoded = []
    step = max(1000, len(entries) // 10)
    for k, entry in enumerate(entries):
        try:
            with Image.open(io.BytesIO(entry.read())) as image:
                decoded.append(image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise DataError(f"{entry.where}: unreadable or truncated image ({err})") from None
        if (k + 1) % step == 0 or k + 1 == len(entries):
            log(f"decoding {source}: {k + 1}/{len(entries)} images")
    sizes = {im.size for im in decoded}
    if len(sizes) > 1:
        decoded = [im.resize((MIXED_SIZE, MIXED_SIZE), Image.BILINEAR) for im in decoded]
    return np.stack([np.asarray(im, np.uint8) for im in decoded])


# --- cache ------------------------------------------------------------------------------------

def _read_cache(folder: Path) -> ImageData | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        arrays = {s: np.load(folder / f"{s}.npz") for s in _SPLIT_FOLDERS}
        images = {s: a["images"] for s, a in arrays.items()}
        labels = {s: a["labels"] for s, a in arrays.items()}
    except (OSError, ValueError, KeyError):
        return None
    return ImageData(tuple(meta["label_names"]), images, labels, folder)


def _write_cache(data: ImageData) -> None:
    """Arrays first, meta.json last: a folder without it is unfinished and rewritten."""
    data.cache_dir.mkdir(parents=True, exist_ok=True)
    for split in _SPLIT_FOLDERS:
        tmp = data.cache_dir / f".{split}.tmp-{os.getpid()}.npz"
        np.savez(tmp, images=data.images[split], labels=data.labels[split])
        os.replace(tmp, data.cache_dir / f"{split}.npz")
    (data.cache_dir / "meta.json").write_text(json.dumps({"label_names": list(data.label_names)}),
                                              encoding="utf-8")


def iter_chunks(n: int, chunk: int) -> Iterator[slice]:
    """Slices of `chunk` rows covering range(n)."""
    return (slice(s, min(s + chunk, n)) for s in range(0, n, chunk))
