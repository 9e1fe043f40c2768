"""What fine-tuning an image module would cost: seconds per 1,000 training samples, per module.

One training step of the child with a fine-tuned module: a batch of 100 real flowers photos at the
module's size through the module, a softmax layer on its features, the gradient with respect to
every module weight and the head, and a plain gradient-descent update. Timed over --steps steps
after one warm-up step (tracing excluded). This is why image modules stay frozen unless a run
asks for --fine_tune_images (docs/modules.md).

With --child_samples N it also trains the real child (`evaluate`, one hidden layer of 64, wide
tower off, fine_tune on) for N samples on flowers, frozen and with --fine_tune_images, and prints
both accuracies and training times: what fine-tuning buys at that budget.

    python benchmarks/image_fine_tune_cost.py --cache_dir DIR [--steps 2] [--child_samples 10000]
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
from automl_transfer.child.evaluate import TaskRef, evaluate  # noqa: E402
from automl_transfer.child.image_features import input_size  # noqa: E402
from automl_transfer.modules import registry  # noqa: E402
from automl_transfer.modules.loading import get_module  # noqa: E402
from automl_transfer.search_space import Config  # noqa: E402
from automl_transfer.tasks import load_task  # noqa: E402

BATCH = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir")
    parser.add_argument("--modules", help="comma-separated names (default: every offline image module)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child_samples", type=int, default=0,
                        help="also train the real child this many samples, frozen and fine-tuned")
    parser.add_argument("--learning_rate", type=float, default=0.01, help="the child's deep learning rate")
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
        if args.child_samples:
            _compare_child(name, specs[name].handle, args.child_samples, args.learning_rate)
    return 0


def _compare_child(name: str, handle: str, samples: int, learning_rate: float) -> None:
    """The same child and seed on flowers, the module frozen and fine-tuned."""
    config = Config(module=name, fine_tune=True, num_layers=1, layer_size=64, activation="relu",
                    normalization="none", dropout=0.0, deep_learning_rate=learning_rate, deep_l2=0.0,
                    wide_learning_rate=0.1, wide_l1="disable", train_samples=samples)
    for tuned in (False, True):
        result = evaluate(config, TaskRef("flowers"), {name: handle}, seed=0, fine_tune_images=tuned)
        print(f"  child, {samples} samples, {'fine-tuned' if tuned else 'frozen'}: "
              f"{result.status.value}, valid {result.valid_accuracy:.3f}, test {result.test_accuracy:.3f}, "
              f"training {result.train_time_s:.0f} s (scoring valid and test included)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
