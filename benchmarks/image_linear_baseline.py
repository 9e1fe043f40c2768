"""Logistic regression on standardised frozen CNN features: the image practitioner's first try.

The image counterpart of tfidf_baseline.py (issue 9): for each image task and each offline image
module, the features a search's trials train on (computed and cached on first use, the same
splits), standardised with the train split's mean and deviation; C is chosen on valid (ties: the
smaller C) and the model with that C is scored on test. Prints one line per (task, module).

Usage: python benchmarks/image_linear_baseline.py [--tasks cifar10,flowers,mnist] [--cache_dir DIR]
Needs the `bench` extra: pip install -e ".[bench]".
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl_transfer import paths  # noqa: E402

C_GRID = (0.003, 0.03, 0.3)


def best_logistic_regression(features: dict, labels: dict) -> tuple[float, float, float]:
    """(C, valid accuracy, test accuracy) of the C best on valid."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features["train"])
    scaled = {split: scaler.transform(values) for split, values in features.items()}
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=500).fit(scaled["train"], labels["train"])
        valid = model.score(scaled["valid"], labels["valid"])
        if best is None or valid > best[1]:
            best = (c, valid, model.score(scaled["test"], labels["test"]))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="cifar10,flowers,mnist")
    parser.add_argument("--cache_dir")
    args = parser.parse_args()
    if args.cache_dir:
        os.environ[paths.CACHE_DIR_ENV] = args.cache_dir
    import numpy as np

    from automl_transfer.child.image_features import frozen_features
    from automl_transfer.modules import registry
    from automl_transfer.modules.loading import get_module
    from automl_transfer.tasks import load_task
    specs = {n: s for n, s in registry.load_registry("offline", args.cache_dir).items()
             if s.modality == "image"}
    for task_name in args.tasks.split(","):
        task = load_task(task_name)
        labels = {split: np.asarray(getattr(task, split).labels) for split in ("train", "valid", "test")}
        for name, spec in specs.items():
            features = frozen_features(task, get_module(name, "offline", args.cache_dir), spec.handle)
            c, valid, test = best_logistic_regression(features, labels)
            print(f"{task_name} {name}: C={c:g} valid {100 * valid:.1f} test {100 * test:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
