"""Does the image wide tower (binned 8x8 pixels) help? Paired trials with it on and off.

For --configs seeded random configurations of the search space on an image task (module fixed to
--module, deep tower on), each is trained twice with the same seed: wide tower off (wide_l1 =
disable) and on (the configuration's own wide settings, a non-disable L1 drawn if it had none).
Prints mean validation and test accuracy of both and the wide-only accuracy, paired.

    python benchmarks/image_wide_tower.py --cache_dir DIR [--task flowers] [--module mobilenet_v1_025]
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
    parser.add_argument("--task", default="flowers")
    parser.add_argument("--module", default="mobilenet_v1_025")
    parser.add_argument("--configs", type=int, default=8)
    args = parser.parse_args()
    if args.cache_dir:
        os.environ[paths.CACHE_DIR_ENV] = args.cache_dir
    from automl_transfer.child.evaluate import TaskRef, evaluate
    from automl_transfer.modules import registry
    handles = {n: s.handle for n, s in registry.load_registry("offline", args.cache_dir).items()}
    space = SearchSpace(list(handles))
    rng = np.random.default_rng(0)
    l1_options = [v for v in space.decisions[-2].options if v != DISABLE]
    rows = []
    for k in range(args.configs):
        config = space.to_config(space.sample_actions(rng, [args.module]))
        config = dataclasses.replace(config, deep_l2=config.deep_l2 if config.deep_l2 != DISABLE else 0.0,
                                     wide_l1=config.wide_l1 if config.wide_l1 != DISABLE else l1_options[k % len(l1_options)],
                                     train_samples=min(config.train_samples, 30000))
        results = [evaluate(c, TaskRef(args.task), handles, seed=k) for c in (
            dataclasses.replace(config, wide_l1=DISABLE), config, dataclasses.replace(config, deep_l2=DISABLE))]
        rows.append([(r.valid_accuracy, r.test_accuracy) for r in results])
        print(f"config {k}: deep only {rows[-1][0][0]:.3f}/{rows[-1][0][1]:.3f}, deep+wide "
              f"{rows[-1][1][0]:.3f}/{rows[-1][1][1]:.3f}, wide only {rows[-1][2][0]:.3f}/{rows[-1][2][1]:.3f} "
              f"(valid/test) | {config.describe()}", flush=True)
    mean = np.mean(np.array(rows), axis=0)
    print(f"mean valid/test over {args.configs} configs on {args.task} with {args.module}: deep only "
          f"{mean[0][0]:.3f}/{mean[0][1]:.3f}, deep+wide {mean[1][0]:.3f}/{mean[1][1]:.3f}, "
          f"wide only {mean[2][0]:.3f}/{mean[2][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
