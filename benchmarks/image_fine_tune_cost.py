"""What fine-tuning an image module would cost: seconds per 1,000 training samples, per module.

One training step of the child with a fine-tuned module: a batch of 100 real flowers photos at the
module's size through the module, a softmax layer on its features, the gradient with respect to
every module weight and the head, and a plain gradient-descent update. Timed over --steps steps
after one warm-up step (tracing excluded). The child does not fine-tune image modules (see
docs/modules.md); this says why.

    python benchmarks/image_fine_tune_cost.py --cache_dir DIR [--steps 2]
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

from automl_transfer import images, paths  # noqa: E402
from automl_transfer.child.image_features import input_size  # noqa: E402
from automl_transfer.modules import registry  # noqa: E402
from automl_transfer.modules.loading import get_module  # noqa: E402
from automl_transfer.tasks import load_task  # noqa: E402

BATCH = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir")
    parser.add_argument("--modules", help="comma-separated names (default: every offline image module)")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    if args.cache_dir:
        os.environ[paths.CACHE_DIR_ENV] = args.cache_dir
    task = load_task("flowers")
    specs = registry.load_registry("offline", args.cache_dir)
    chosen = args.modules.split(",") if args.modules else [n for n, s in specs.items() if s.modality == "image"]
    labels = tf.constant(task.train.labels[:BATCH])
    for name in chosen:
        module = get_module(name, "offline", args.cache_dir)
        size = input_size(module, specs[name].handle)
        pixels = images.resized(task.train.images, task.cache_dir, "train", size)
        batch = tf.constant(np.asarray(pixels[:BATCH], np.float32) / 255.0)
        head = tf.Variable(tf.zeros([specs[name].dim, task.num_classes]))
        weights = list(module.trainable_variables) + [head]
        saved = [w.numpy() for w in module.trainable_variables]

        @tf.function
        def step() -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=labels, logits=module(batch) @ head))
            for w, g in zip(weights, tape.gradient(loss, weights)):
                w.assign_sub(0.001 * g)
            return loss

        step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        per_step = (time.perf_counter() - start) / args.steps
        for w, value in zip(module.trainable_variables, saved):
            w.assign(value)
        print(f"{name}: {per_step:.1f} s per step of {BATCH} -> {per_step * 1000 / BATCH:.0f} s per 1,000 "
              f"samples; a 1,000,000-sample trial would take {per_step * 10_000 / 3600:.1f} h", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
