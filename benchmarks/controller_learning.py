"""How fast the controller learns, per learning rate, on the synthetic reward (no children).

Reward = fraction of the 12 decisions matching a hidden target + N(0, 0.02) noise, over the real
search space with 8 modules. Prints, per learning rate, the mean match fraction of the sampled
configurations in windows of trials (averaged over seeds), the trials until one sample matches
>= 10 of 12 decisions (median over seeds), and the policy's greedy match at the end; then the
milliseconds per suggest and per update. With --in-flight K1,K2,..., instead: the trials until
10/12 at the default preset with K trials in flight (suggest K from the same policy, then learn
from the K results in a shuffled order, as K workers finishing out of order would). Usage:
    PYTHONPATH=. python benchmarks/controller_learning.py [--trials 400] [--seeds 3]
    PYTHONPATH=. python benchmarks/controller_learning.py --in-flight 1,2,4,8 --seeds 5
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.base import Searcher
from automl_transfer.searchers.controller_searcher import ControllerSearcher
from automl_transfer.searchers.presets import PRESETS
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.searchers.synthetic_reward import (finish, match_fraction, random_target,
                                                         run_search, trials_to_target)
from automl_transfer.trial import Trial

MODULES = [f"m{i}" for i in range(8)]
THRESHOLD = 10 / 12


def greedy_match(searcher: ControllerSearcher, task: str, target: tuple[int, ...]) -> float:
    """Match fraction of the policy's per-step argmax (teacher-forced along its own choices)."""
    actions = [0] * len(target)
    for i in range(len(target)):  # step i depends only on actions before i
        actions[i] = int(np.argmax(searcher.probabilities(task, actions)[i]))
    return match_fraction(actions, target)


def run_in_flight(searcher: Searcher, target: tuple[int, ...], num_trials: int, in_flight: int,
                  seed: int) -> list[Trial]:
    """Rounds of `in_flight` suggestions from one policy, each round learned from in a seeded
    shuffled order (results of parallel workers arrive in any order)."""
    rng = np.random.default_rng([seed, 5])
    finished: list[Trial] = []
    for first in range(0, num_trials, in_flight):
        batch = [searcher.suggest(i, "task", MODULES)
                 for i in range(first, min(first + in_flight, num_trials))]
        done = [finish(trial, target, 0.02) for trial in batch]
        for index in rng.permutation(len(done)):
            searcher.update([done[index]])
        finished.extend(done)
    return finished


def in_flight_table(space: SearchSpace, ks: list[int], trials: int, seeds: int) -> None:
    """Trials until 10/12 and the greedy match at the end, per number of trials in flight."""
    preset = PRESETS["default"]
    print(f"default preset (lr {preset['learning_rate']}, entropy {preset['entropy_weight']}), "
          f"{trials} trials, {seeds} seeds")
    print(f"{'in flight':>9} | to 10/12 per seed | median | greedy at end")
    for k in ks:
        reached, greedy = [], []
        for seed in range(seeds):
            target = random_target(space, seed)
            searcher = ControllerSearcher(space, seed, ["task"], **preset)
            done = run_in_flight(searcher, target, trials, k, seed)
            found = trials_to_target(done, {"task": target}, THRESHOLD)
            reached.append(found if found is not None else np.inf)
            greedy.append(greedy_match(searcher, "task", target))
        cells = " ".join(f"{r:>4.0f}" if np.isfinite(r) else f">{trials}" for r in reached)
        median = np.median(reached)
        median_text = f"{median:>6.0f}" if np.isfinite(median) else f">{trials:>5}"
        print(f"{k:>9} | {cells:>17} | {median_text} | {np.mean(greedy):.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--learning-rates", default="1e-4,1e-3,3e-3,1e-2")
    parser.add_argument("--entropy-weight", type=float, default=1e-3)
    parser.add_argument("--in-flight", help="comma-separated K: the in-flight table instead")
    args = parser.parse_args()
    space = SearchSpace(MODULES)
    if args.in_flight:
        in_flight_table(space, [int(k) for k in args.in_flight.split(",")], args.trials,
                        args.seeds)
        return
    windows = list(range(0, args.trials, args.window))
    print(f"{'searcher':>14} | " + " ".join(f"{w + args.window:>5}" for w in windows)
          + " | to 10/12 | greedy at end")
    rows = [("random", None)] + [(f"lr={lr}", float(lr)) for lr in args.learning_rates.split(",")]
    timings = []
    for label, lr in rows:
        curves, reached, greedy = [], [], []
        for seed in range(args.seeds):
            target = random_target(space, seed)
            if lr is None:
                searcher = RandomSearcher(space, seed)
            else:
                searcher = ControllerSearcher(space, seed, ["task"], learning_rate=lr,
                                              entropy_weight=args.entropy_weight)
            start = time.perf_counter()
            trials = run_search(searcher, {"task": target}, args.trials)
            timings.append((label, time.perf_counter() - start))
            curves.append([match_fraction(t.actions, target) for t in trials])
            found = trials_to_target(trials, {"task": target}, THRESHOLD)
            reached.append(found if found is not None else np.inf)
            if lr is not None:
                greedy.append(greedy_match(searcher, "task", target))
        mean = np.mean(curves, axis=0)
        cells = " ".join(f"{mean[w:w + args.window].mean():5.2f}" for w in windows)
        median = np.median(reached)
        median_text = f"{median:>8.0f}" if np.isfinite(median) else f">{args.trials:>7}"
        greedy_text = f"{np.mean(greedy):.2f}" if greedy else "-"
        print(f"{label:>14} | {cells} | {median_text} | {greedy_text}")
    probe = ControllerSearcher(space, 0, ["task"])
    target = random_target(space, 0)
    probe.update([finish(probe.suggest(10_000, "task", MODULES), target, 0.02)])  # trace both
    start = time.perf_counter()
    trials = [probe.suggest(i, "task", MODULES) for i in range(200)]
    suggest_ms = (time.perf_counter() - start) / 200 * 1000
    done = [finish(t, target, 0.02) for t in trials]
    start = time.perf_counter()
    probe.update(done)
    update_ms = (time.perf_counter() - start) / 200 * 1000
    print(f"ms per suggest: {suggest_ms:.2f}, ms per update: {update_ms:.2f} (after tracing)")


if __name__ == "__main__":
    main()
