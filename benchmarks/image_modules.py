"""Check every offline image module: conversion agreement, signal, speed, build figures.

Per module (hub_modules.yaml, offline profile, modality image; built in --cache_dir):
- agreement: on the first --photos test photos of flowers and of cifar10 (resized to the
  module's size, as uint8), the share where the float module + its ImageNet head picks the
  TF-Lite interpreter's top-1 class. "strict" compares argmaxes; "ties" counts a match when the
  float class is among the interpreter's tied maxima (its uint8 softmax ties on ~5-15% of these
  low-confidence photos, and argmax then takes the lowest index). SqueezeNet has no head: n/a.
- signal: logistic regression (benchmarks/module_signal.py's, L2 picked on valid) on the module's
  frozen features vs the same architecture with random weights, on a seeded subset of flowers
  and cifar10 (--train/--eval images per split).
- images/s of the module on this machine (one batch of 64 after a warm-up call), build seconds
  and size from the manifest.

    python benchmarks/image_modules.py --cache_dir DIR [--photos 60] [--train 300] [--eval 200]
        [--modules a,b] [--no_signal]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from automl_transfer import paths  # noqa: E402
from automl_transfer.modules import build, image_build, registry  # noqa: E402
from automl_transfer.modules.image_module import preprocess  # noqa: E402
from automl_transfer.modules.loading import get_module  # noqa: E402
from automl_transfer.tasks import load_task  # noqa: E402
from module_signal import test_accuracy  # noqa: E402

TASKS = ("flowers", "cifar10")
SEED = 0


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.round(tf.image.resize(images, (size, size), antialias=True).numpy()), 0, 255).astype(np.uint8)


def _features(fn, images: np.ndarray, size: int, chunk: int = 64) -> np.ndarray:
    return np.concatenate([fn(tf.constant(_resize(images[i:i + chunk], size).astype(np.float32) / 255)).numpy()
                           for i in range(0, len(images), chunk)])


def agreement(recipe: dict, data_dir: Path, module, head: dict, photos: np.ndarray) -> tuple[float, float]:
    """(strict, tie-aware) top-1 agreement of module + head with the first TF-Lite file's model
    (for the embedding extractor: extractor then head file, fed the raw uint8 features)."""
    size = int(recipe["input_size"])
    pixels = _resize(photos, size)
    ours = np.argmax(_features(module, photos, size) @ head["kernel"] + head["bias"], 1)
    interpreters = []
    for f in recipe["files"]:
        it = tf.lite.Interpreter(model_path=str(data_dir / f))
        it.allocate_tensors()
        interpreters.append(it)
    strict, ties = [], []
    for k, image in enumerate(pixels):
        x = image[None]
        for it in interpreters:
            it.set_tensor(it.get_input_details()[0]["index"], x.reshape(it.get_input_details()[0]["shape"]))
            it.invoke()
            x = it.get_tensor(it.get_output_details()[0]["index"])
        probs = x.reshape(-1)
        strict.append(ours[k] == np.argmax(probs))
        ties.append(probs[ours[k]] == probs.max())
    return float(np.mean(strict)), float(np.mean(ties))


def random_twin(recipe: dict, data_dir: Path):
    """The same architecture with fresh random weights, behind the same preprocessing."""
    import keras
    if recipe["source"] == "tflite":
        build_fn = {"mobilenet_v1": keras.applications.MobileNet, "mobilenet_v2": keras.applications.MobileNetV2}
        size = int(recipe["input_size"])
        model = build_fn[recipe["arch"]](input_shape=(size, size, 3), alpha=float(recipe["alpha"]),
                                         include_top=False, weights=None, pooling="avg")
    else:
        model = keras.models.clone_model(image_build.backbone(recipe, data_dir)[0])
    return lambda x: model(preprocess(x, recipe["preprocessing"]), training=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir")
    parser.add_argument("--data_dir")
    parser.add_argument("--modules", help="comma-separated names (default: every offline image module)")
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--eval", type=int, default=200)
    parser.add_argument("--no_signal", action="store_true", help="skip the signal check (its cells show -)")
    args = parser.parse_args()
    if args.cache_dir:
        os.environ[paths.CACHE_DIR_ENV] = args.cache_dir
    data_dir = paths.data_dir(args.data_dir)
    keras_seed = __import__("keras").utils.set_random_seed
    keras_seed(SEED)
    rng = np.random.default_rng(SEED)
    subsets = {}
    for name in TASKS:
        task = load_task(name, data_dir)
        pick = {s: np.sort(rng.permutation(len(getattr(task, s)))[:n])
                for s, n in (("train", args.train), ("valid", args.eval), ("test", args.eval))}
        subsets[name] = ({s: getattr(task, s).images[i] for s, i in pick.items()},
                         {s: getattr(task, s).labels[i] for s, i in pick.items()}, task.num_classes,
                         task.test.images[:args.photos])
    specs = registry.load_registry("offline", args.cache_dir)
    recipes = registry.build_recipes("offline")
    chosen = args.modules.split(",") if args.modules else [n for n, s in specs.items() if s.modality == "image"]
    print("| module | dim | px | build s | MiB | agree flowers strict/ties | agree cifar10 strict/ties | "
          + " | ".join(f"{t} frozen / random" for t in TASKS) + " | images/s |")
    print("|" + "---|" * (8 + len(TASKS)))
    for name in chosen:
        recipe, manifest = recipes[name], build.read_manifest(specs[name].handle)
        module = get_module(name, "offline", args.cache_dir)
        size = int(recipe["input_size"])
        head_file = Path(specs[name].handle) / image_build.HEAD_FILE
        cells = []
        for task_name in TASKS:
            if head_file.is_file():
                strict, ties = agreement(recipe, data_dir, module, np.load(head_file), subsets[task_name][3])
                cells.append(f"{strict:.3f} / {ties:.3f}")
            else:
                cells.append("n/a (no head)")
        twin = None if args.no_signal else random_twin(recipe, data_dir)
        for task_name in TASKS:
            if twin is None:
                cells.append("-")
                continue
            split_images, labels, classes, _ = subsets[task_name]
            frozen = test_accuracy({s: _features(module, x, size) for s, x in split_images.items()}, labels, classes)
            random = test_accuracy({s: _features(twin, x, size) for s, x in split_images.items()}, labels, classes)
            cells.append(f"{frozen:.3f} / {random:.3f}")
        batch = tf.constant(np.random.default_rng(SEED).random((64, size, size, 3)).astype(np.float32))
        module(batch)
        start = time.perf_counter()
        module(batch)
        rate = 64 / (time.perf_counter() - start)
        print(f"| {name} | {specs[name].dim} | {size} | {manifest['build_seconds']:.0f} | "
              f"{manifest['size_bytes'] / 2**20:.1f} | " + " | ".join(cells) + f" | {rate:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
