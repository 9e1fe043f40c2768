"""Inputs of the image child: wide-tower pixel bags and the module's frozen feature vectors.

Wide tower: the image at WIDE_SIDE x WIDE_SIDE (area-averaged), each (row, column, channel)
value cut into WIDE_BINS intensity bins; an image is the bag of its 8 * 8 * 3 = 192 active
(position, channel, bin) ids. A linear model over these one-hot bins is a cheap linear view of
the raw pixels (it can also weigh dark and bright differently per position) and reuses the text
wide tower's sparse lookup as is. docs/modules.md measures whether it helps.

Deep tower: `module(images / 255)` at the module's input size, EXTRACT_CHUNK images per call,
computed once per (task, module) with a progress line and cached on disk in
<task cache>/features/, keyed on the module's fingerprint (fingerprints.py: its manifest, which
a rebuild rewrites).
A fine-tuned module (--fine_tune_images) instead reads the resized images themselves.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import yaml

from automl_transfer import images
from automl_transfer.fingerprints import module_fingerprint
from automl_transfer.modules import registry
from automl_transfer.tasks import Task

WIDE_SIDE = 8
WIDE_BINS = 4
EXTRACT_CHUNK = 64
DEFAULT_INPUT_SIZE = 224  # TF-Hub's image modules that do not say otherwise
_SPLITS = ("train", "valid", "test")


def pixel_bags(split_images: dict[str, np.ndarray]) -> tuple[tuple[str, ...], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(wide vocabulary, split -> (values, row_splits)) of binned low-resolution pixels."""
    per_image = WIDE_SIDE * WIDE_SIDE * 3
    vocab = tuple(f"px{r}_{c}_ch{ch}_bin{b}" for r in range(WIDE_SIDE) for c in range(WIDE_SIDE)
                  for ch in range(3) for b in range(WIDE_BINS))
    bags = {}
    for split, pixels in split_images.items():
        small = np.concatenate([tf.image.resize(pixels[rows], (WIDE_SIDE, WIDE_SIDE), method="area").numpy()
                                for rows in images.iter_chunks(len(pixels), 1024)] or
                               [np.zeros((0, WIDE_SIDE, WIDE_SIDE, 3), np.float32)])
        bins = np.minimum((small * WIDE_BINS / 256.0).astype(np.int64), WIDE_BINS - 1)
        ids = np.arange(per_image, dtype=np.int64).reshape(WIDE_SIDE, WIDE_SIDE, 3) * WIDE_BINS + bins
        bags[split] = (ids.reshape(-1), np.arange(0, len(pixels) * per_image + 1, per_image, dtype=np.int64))
    return vocab, bags


def input_size(module: Any, handle: str) -> int:
    """The module's image size: its own `input_size`, else hub_modules.yaml's, else 224."""
    if hasattr(module, "input_size"):
        return int(module.input_size.numpy())
    document = yaml.safe_load(registry.REGISTRY_FILE.read_text(encoding="utf-8")) or {}
    for entries in (document.get("profiles") or {}).values():
        for entry in (entries or {}).values():
            if entry.get("handle") == handle and "input_size" in entry:
                return int(entry["input_size"])
    return DEFAULT_INPUT_SIZE


def module_pixels(task: Task, module: Any, handle: str) -> dict[str, np.ndarray]:
    """split -> uint8 [n, size, size, 3] at the module's input size (resized once, memory-mapped):
    what the module sees, for its feature pass and for fine-tuning."""
    size = input_size(module, handle)
    return {split: images.resized(data.images, task.cache_dir, split, size)
            for split, data in (("train", task.train), ("valid", task.valid), ("test", task.test))}


def frozen_features(task: Task, module: Any, handle: str) -> dict[str, np.ndarray]:
    """split -> float32 [n, dim] features of a module, from the disk cache or computed once."""
    key = hashlib.sha256(module_fingerprint(handle).encode()).hexdigest()[:12]
    path = task.cache_dir / "features" / f"{Path(handle).name}-{key}.npz"
    try:
        with np.load(path) as cached:
            return {split: cached[split] for split in _SPLITS}
    except (OSError, KeyError, ValueError):
        pass
    out = {split: _extract(module, pixels, f"{task.name}/{Path(handle).name} {split}")
           for split, pixels in module_pixels(task, module, handle).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def _extract(module: Any, pixels: np.ndarray, what: str) -> np.ndarray:
    """Features of every image, a chunk at a time, with a progress line about every 10%."""
    start, parts, done = time.perf_counter(), [], 0
    step = max(EXTRACT_CHUNK, (len(pixels) // 10) // EXTRACT_CHUNK * EXTRACT_CHUNK)
    for rows in images.iter_chunks(len(pixels), EXTRACT_CHUNK):
        batch = tf.constant(np.asarray(pixels[rows], np.float32) / 255.0)
        parts.append(module(batch).numpy().astype(np.float32))
        done = rows.stop
        if done % step == 0 or done == len(pixels):
            rate = done / max(time.perf_counter() - start, 1e-9)
            print(f"features {what}: {done}/{len(pixels)} images ({rate:.0f} images/s)",
                  file=sys.stderr, flush=True)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
