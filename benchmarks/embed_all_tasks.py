"""Offline end to end: load every registered task and embed 100 of its texts with every module.

The check behind "a fresh checkout works offline": prints rows and classes per task and, per
module, the output dimension and time. Fails loudly on a module that is not built, an empty or
non-finite embedding, or a task that does not load.

    python -m automl_transfer.modules.build && python benchmarks/embed_all_tasks.py [--data_dir DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from automl_transfer.modules import registry  # noqa: E402
from automl_transfer.modules.loading import get_module  # noqa: E402
from automl_transfer.tasks import load_task  # noqa: E402
from automl_transfer.tasks import registry as task_registry  # noqa: E402

TEXTS_PER_TASK = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--cache_dir", default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    tasks = {name: load_task(name, args.data_dir) for name in task_registry()}
    print(f"{len(tasks)} tasks loaded in {time.perf_counter() - start:.1f} s")
    for name, task in tasks.items():
        print(f"  {name}: train/valid/test {len(task.train.labels)}/{len(task.valid.labels)}/"
              f"{len(task.test.labels)}, {task.num_classes} classes")
    for module_name in registry.module_names():
        module = get_module(module_name, cache_dir=args.cache_dir)
        start = time.perf_counter()
        for name, task in tasks.items():
            vectors = module(tf.constant(list(task.train.texts[:TEXTS_PER_TASK]))).numpy()
            if vectors.shape[0] != TEXTS_PER_TASK or not np.isfinite(vectors).all() \
                    or not np.abs(vectors).sum():
                raise SystemExit(f"error: module {module_name!r} gave bad embeddings on {name}")
        print(f"{module_name}: {len(tasks)} tasks x {TEXTS_PER_TASK} texts -> dim "
              f"{vectors.shape[1]} in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
