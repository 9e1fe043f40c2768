"""Would the image child learn better from standardised CNN features? Paired trials, raw vs
standardised (train mean and standard deviation per feature, as the linear baseline uses them).

For --configs seeded random configurations of the search space on an image task (module fixed to
--module, deep tower on, training samples capped at --max_samples), each is trained twice with the
same seed: on the module's cached features as the child uses them, and on the same features
standardised. Prints each pair and the mean validation / test accuracy of both.

    python benchmarks/image_feature_scaling.py --cache_dir DIR [--task cifar10]
        [--module mobilenet_v1_100] [--configs 12] [--max_samples 100000]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from automl_transfer import paths  # noqa: E402
from automl_transfer.search_space import DISABLE, SearchSpace  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir")
    parser.add_argument("--task", default="cifar10")
    parser.add_argument("--module", default="mobilenet_v1_100")
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--max_samples", type=int, default=100_000)
    args = parser.parse_args()
    if args.cache_dir:
        os.environ[paths.CACHE_DIR_ENV] = args.cache_dir
    from automl_transfer.child import features, image_features
    from automl_transfer.child.evaluate import TaskRef, evaluate
    from automl_transfer.modules import registry
    handles = {n: s.handle for n, s in registry.load_registry("offline", args.cache_dir).items()}
    raw = image_features.frozen_features

    def standardised(*given, **named) -> dict[str, np.ndarray]:
        out = raw(*given, **named)
        mean, std = out["train"].mean(axis=0), out["train"].std(axis=0) + 1e-6
        return {split: ((values - mean) / std).astype(np.float32) for split, values in out.items()}

    space = SearchSpace(list(handles))
    rng = np.random.default_rng(0)
    pairs = []
    for k in range(args.configs):
        config = space.to_config(space.sample_actions(rng, [args.module]))
        config = dataclasses.replace(config, deep_l2=config.deep_l2 if config.deep_l2 != DISABLE else 0.0,
                                     train_samples=min(config.train_samples, args.max_samples))
        pair = []
        for variant in (raw, standardised):
            image_features.frozen_features = variant
            features.module_features.cache_clear()
            result = evaluate(config, TaskRef(args.task), handles, seed=k)
            pair.append((result.valid_accuracy, result.test_accuracy))
        pairs.append(pair)
        print(f"config {k}: raw {pair[0][0]:.3f}/{pair[0][1]:.3f}, standardised {pair[1][0]:.3f}/"
              f"{pair[1][1]:.3f} (valid/test) | {config.describe()}", flush=True)
    image_features.frozen_features = raw
    mean = np.mean(np.array(pairs), axis=0)
    print(f"mean valid/test over {args.configs} configs on {args.task} with {args.module}: raw "
          f"{mean[0][0]:.3f}/{mean[0][1]:.3f}, standardised {mean[1][0]:.3f}/{mean[1][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
