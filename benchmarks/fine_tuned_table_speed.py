"""Training time of a fine-tuned embedding table on long-document tasks (brown, newsgroups20, imdb).

One fixed configuration (en-skipgram-50 fine-tuned, 1x8 relu, wide tower off, --samples samples,
seed 0) per task through `evaluate`; prints the trial's training time (setup excluded) and its
validation accuracy. It imports automl_transfer from wherever Python finds it, so two versions
of the child compare side by side by alternating checkouts in one session (same task, same
accuracy, compare the times):

    for rep in 1 2 3; do for tree in OLD_CHECKOUT NEW_CHECKOUT; do
        PYTHONPATH=$tree python benchmarks/fine_tuned_table_speed.py; done; done
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import automl_transfer  # noqa: E402
from automl_transfer.search_space import Config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="brown,newsgroups20,imdb")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--cache_dir")
    args = parser.parse_args()
    from automl_transfer.child.evaluate import TaskRef, evaluate
    from automl_transfer.modules import registry
    handles = {n: s.handle for n, s in registry.load_registry("offline", args.cache_dir).items()}
    config = Config(module="en-skipgram-50", fine_tune=True, num_layers=1, layer_size=8,
                    activation="relu", normalization="none", dropout=0.0, deep_learning_rate=0.1,
                    deep_l2=0.1, wide_learning_rate=0.1, wide_l1="disable", train_samples=args.samples)
    checkout = Path(automl_transfer.__file__).resolve().parent.parent
    for task in args.tasks.split(","):
        result = evaluate(config, TaskRef(task), handles, seed=0)
        print(f"{checkout} {task}: {result.status.value}, valid {result.valid_accuracy:.4f}, "
              f"training {result.train_time_s:.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
