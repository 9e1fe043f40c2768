"""Compute (and cache) every offline image module's frozen features for image tasks, timing each.

Prints one line per (task, module): images, seconds, images/s. What a search would do at the
first trial of each (task, module), done ahead of time:

    python benchmarks/image_features.py [--tasks flowers,cifar10,mnist] [--cache_dir DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl_transfer import paths  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="flowers,cifar10,mnist")
    parser.add_argument("--modules", help="comma-separated image module names (default: all offline)")
    parser.add_argument("--cache_dir")
    args = parser.parse_args()
    if args.cache_dir:
        os.environ[paths.CACHE_DIR_ENV] = args.cache_dir
    from automl_transfer.child.image_features import frozen_features
    from automl_transfer.modules import registry
    from automl_transfer.modules.loading import get_module
    from automl_transfer.tasks import load_task
    specs = {n: s for n, s in registry.load_registry("offline", args.cache_dir).items() if s.modality == "image"}
    chosen = args.modules.split(",") if args.modules else list(specs)
    for task_name in args.tasks.split(","):
        task = load_task(task_name)
        count = len(task.train) + len(task.valid) + len(task.test)
        for name in chosen:
            module = get_module(name, "offline", args.cache_dir)
            start = time.perf_counter()
            frozen_features(task, module, specs[name].handle)
            elapsed = time.perf_counter() - start
            print(f"{task_name} {name}: {count} images in {elapsed:.1f} s ({count / elapsed:.1f} images/s, "
                  f"resizing included; cached runs read the file)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
