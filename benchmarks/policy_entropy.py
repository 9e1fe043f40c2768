"""Has a pre-trained controller learned anything a new task can use? The entropy of its policy
for a new task (a fresh task embedding, as a transfer starts) against an untrained controller's.

For each saved controller directory, samples --samples configurations for a new text task and
prints the mean entropy of the policy along them (nats, summed over the decisions), the same for
an untrained controller of the same space, their ratio, and the most likely option and its
probability per decision. A ratio near 100% means the transfer starts from an almost uniform policy.

    python benchmarks/policy_entropy.py CONTROLLER_DIR [CONTROLLER_DIR ...] [--samples 200]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from automl_transfer.modules.registry import load_registry  # noqa: E402
from automl_transfer.searchers.controller_searcher import ControllerSearcher  # noqa: E402

NEW_TASK = "new_task"


def policy_summary(searcher: ControllerSearcher, samples: int) -> tuple[float, np.ndarray]:
    """(mean entropy in nats, mean option probabilities [decisions, options]) for NEW_TASK."""
    text = {name for name, spec in load_registry("offline").items() if spec.modality == "text"}
    modules = [m for m in searcher.space.decisions[0].options if m in text]
    entropies, probabilities = [], []
    for i in range(samples):
        trial = searcher.suggest(i, NEW_TASK, modules)
        entropies.append(searcher.log_prob(NEW_TASK, trial.actions)[1])
        probabilities.append(searcher.probabilities(NEW_TASK, trial.actions))
    return float(np.mean(entropies)), np.mean(probabilities, axis=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("controller_dirs", nargs="+", help="saved controllers (<run>/controller)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for directory in args.controller_dirs:
        trained = ControllerSearcher.from_saved(directory, [NEW_TASK], args.seed)
        untrained = ControllerSearcher(trained.space, args.seed, [NEW_TASK])
        entropy, probabilities = policy_summary(trained, args.samples)
        uniform, _ = policy_summary(untrained, args.samples)
        print(f"{directory}: new-task entropy {entropy:.2f} nats, untrained {uniform:.2f} "
              f"({100 * entropy / uniform:.0f}%)")
        for decision, row in zip(trained.space.decisions, probabilities):
            best = int(np.argmax(row))
            print(f"  {decision.name:20s} most likely option {decision.options[best]!s:>16} "
                  f"{row[best]:.2f} (uniform {1 / len(decision.options):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
