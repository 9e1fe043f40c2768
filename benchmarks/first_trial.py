"""A transferred controller's start on a new task, on the synthetic reward (no children):
first suggestion sampled (the paper) or the policy's argmax, and the new task's embedding fresh
random (the paper) or the mean of the pre-trained ones.

Pre-training: one multitask controller over --pretrain_tasks tasks whose hidden targets all lie
2 decisions from a common centre (related tasks share structure, as real ones do). Held out:
--seeds new tasks, each 2 decisions from the centre. For each variant, per held-out task: the
match of trial 1 and the trials until one matches >= 10 of 12 decisions (budget+1 if never);
the last row is a fresh controller (no pre-training) on the same held-out tasks, for scale.
A proxy for real tasks (children take minutes); the printed table is what the docs quote.
Usage: PYTHONPATH=. python benchmarks/first_trial.py [--seeds 6] [--budget 40]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np

from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.controller_searcher import ControllerSearcher
from automl_transfer.searchers.synthetic_reward import (match_fraction, near_target,
                                                         random_target, run_search,
                                                         trials_to_target)

MODULES = [f"m{i}" for i in range(8)]
THRESHOLD = 10 / 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain_tasks", type=int, default=4)
    parser.add_argument("--pretrain_trials", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--budget", type=int, default=40)
    args = parser.parse_args()
    space = SearchSpace(MODULES)
    centre = random_target(space, 20)
    sources = {f"p{i}": near_target(centre, space, 2, i) for i in range(args.pretrain_tasks)}
    pretrained = ControllerSearcher(space, 0, list(sources))
    history = run_search(pretrained, sources, args.pretrain_trials)
    late = [match_fraction(t.actions, sources[t.task]) for t in history[-40:]]
    print(f"pre-training: {args.pretrain_trials} trials over {args.pretrain_tasks} tasks; match of "
          f"its last 40 samples to their task's target: {np.mean(late):.3f}", flush=True)
    with tempfile.TemporaryDirectory() as directory:
        pretrained.save(directory)
        print(f"variant            first-trial match (mean)  trials to 10/12 (median, mean) "
              f"over {args.seeds} held-out tasks, budget {args.budget}")
        variants = [(first, init) for first in ("sample", "argmax") for init in ("random", "mean")]
        for first, init in variants + [("scratch", "")]:
            firsts, reached = [], []
            for seed in range(args.seeds):
                target = {"new": near_target(centre, space, 2, 100 + seed)}
                if first == "scratch":
                    searcher = ControllerSearcher(space, seed + 100, ["new"])
                else:
                    searcher = ControllerSearcher.from_saved(
                        directory, ["new"], seed + 100, first_suggestion=first, new_task_init=init)
                trials = run_search(searcher, target, args.budget, first_trial_id=10_000)
                firsts.append(match_fraction(trials[0].actions, target["new"]))
                found = trials_to_target(trials, target, THRESHOLD)
                reached.append(args.budget + 1 if found is None else found)
            print(f"{first:>7} + {init:<6}    {np.mean(firsts):.3f}                     "
                  f"{np.median(reached):.1f}, {np.mean(reached):.1f}   {reached}", flush=True)


if __name__ == "__main__":
    main()
