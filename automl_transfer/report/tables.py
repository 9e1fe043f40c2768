"""Table 1 of the paper as numbers: trials to reach RS's accuracy-topN, speed-up over RS, and
test accuracy-topN at a fixed budget, per task. Formatting lives in markdown.py.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from automl_transfer.metrics import speedup, top_n_curve, trials_to_target
from automl_transfer.trial import Trial

RANDOM, TPE, SINGLE, TRANSFER = "random", "tpe", "single", "transfer"
COMPARED_METHODS = (TPE, SINGLE, TRANSFER)  # each measured against RS's target
TABLE_METHODS = (RANDOM,) + COMPARED_METHODS


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean with a ± 2 s.e.m. half-width; `basis` says what the s.e.m. is across."""

    mean: float
    half_width: float
    basis: str           # "seeds" (several seeds) or "top-N trials" (one seed)
    num_seeds: int


@dataclasses.dataclass(frozen=True)
class TrialsNeeded:
    """Trials to reach the target, per seed (None = not reached within that seed's budget)."""

    per_seed: tuple[int | None, ...]
    budget: int          # the largest budget among the seeds

    @property
    def all_reached(self) -> bool:
        return all(k is not None for k in self.per_seed)


@dataclasses.dataclass(frozen=True)
class Table1Row:
    task: str
    rs_budget: int
    target: float                            # RS validation accuracy-topN at its full budget
    trials_needed: dict[str, TrialsNeeded]   # tpe / single / transfer, where runs exist
    speedups: dict[str, tuple[float | None, ...]]  # tpe / single / transfer, per seed pair
                                                   # (None: not reached)
    strict_trials_needed: dict[str, TrialsNeeded]  # counted from trial N on (see table1_row)
    strict_speedups: dict[str, tuple[float | None, ...]]
    fixed_budget: int                        # smallest budget common to every run of the task
    test_at_budget: dict[str, Estimate]      # every method of TABLE_METHODS that has runs


def _sem(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def accuracy_at_budget(seeds: Sequence[Sequence[Trial]], budget: int, n: int) -> Estimate:
    """Test accuracy-topN after `budget` trials, mean over seeds ± 2 s.e.m.

    With one seed the s.e.m. is across its top-N trials instead (no seed variation to show).
    """
    curves = [top_n_curve(list(trials)[:budget], n) for trials in seeds]
    values = [float(c.test[-1]) for c in curves]
    if len(values) > 1:
        return Estimate(float(np.mean(values)), 2 * _sem(values), "seeds", len(values))
    return Estimate(values[0], 2 * float(curves[0].test_sem[-1]), "top-N trials", 1)


def table1_row(task: str, by_method: Mapping[str, Sequence[Sequence[Trial]]], n: int
               ) -> Table1Row:
    """One task's row. `by_method` maps method -> finished trials per seed; needs RANDOM.

    Trials to target and speed-ups come twice: counting from trial 1 (the paper's way) and
    strictly, from trial `n` on, where accuracy-topN is first a mean over N trials.
    """
    curves = {m: [top_n_curve(trials, n) for trials in by_method[m]]
              for m in TABLE_METHODS if by_method.get(m)}
    target = float(np.mean([c.valid[-1] for c in curves[RANDOM]]))
    needed: dict[int, dict[str, TrialsNeeded]] = {1: {}, n: {}}
    speedups: dict[int, dict[str, tuple[float | None, ...]]] = {1: {}, n: {}}
    for method in COMPARED_METHODS:
        if method not in curves:
            continue
        budget = max(len(t) for t in by_method[method])
        for first in (1, n):
            per_seed = tuple(trials_to_target(c, target, first) for c in curves[method])
            needed[first][method] = TrialsNeeded(per_seed, budget)
            # Seeds are paired in run order (seed0 with seed0, ...), each against its own RS.
            speedups[first][method] = tuple(speedup(rs, x, from_trial=first)
                                            for rs, x in zip(curves[RANDOM], curves[method]))
    fixed_budget = min(len(trials) for m in curves for trials in by_method[m])
    tests = {m: accuracy_at_budget(by_method[m], fixed_budget, n) for m in curves}
    return Table1Row(task=task, rs_budget=max(len(t) for t in by_method[RANDOM]), target=target,
                     trials_needed=needed[1], speedups=speedups[1],
                     strict_trials_needed=needed[n], strict_speedups=speedups[n],
                     fixed_budget=fixed_budget,
                     test_at_budget=tests)
