"""A cheap stand-in for training children: reward = fraction of decisions matching a hidden target.

Used by the controller's tests and learning benchmark, never by experiments. It keeps the real
search space and the real Searcher/Trial flow (suggest -> finish -> update, several trials in
flight), and swaps only the minutes-long child for a noisy lookup.
"""
from __future__ import annotations

import collections
from typing import Mapping, Sequence

import numpy as np

from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.base import Searcher
from automl_transfer.trial import Status, Trial, TrialResult


def random_target(space: SearchSpace, seed: int, allowed_modules: Sequence[str] | None = None
                  ) -> tuple[int, ...]:
    """A hidden optimum: one option index per decision."""
    return tuple(space.sample_actions(np.random.default_rng([seed, 977]), allowed_modules))


def near_target(target: Sequence[int], space: SearchSpace, changes: int, seed: int
                ) -> tuple[int, ...]:
    """`target` with `changes` decisions (not the module) moved to another option: a related
    task's optimum."""
    rng = np.random.default_rng(seed)
    moved = list(target)
    for i in rng.choice(np.arange(1, len(space.sizes)), size=changes, replace=False):
        moved[i] = (moved[i] + 1 + int(rng.integers(space.sizes[i] - 1))) % space.sizes[i]
    return tuple(moved)


def match_fraction(actions: Sequence[int], target: Sequence[int]) -> float:
    return float(np.mean([a == t for a, t in zip(actions, target)]))


def finish(trial: Trial, target: Sequence[int], noise: float) -> Trial:
    """The trial with a synthetic result: match fraction plus Gaussian noise (seeded by the
    trial). Test accuracy is NaN: a searcher that read it would stop learning."""
    rng = np.random.default_rng([trial.seed, 31])
    reward = match_fraction(trial.actions, target) + noise * float(rng.standard_normal())
    return trial.with_result(TrialResult(status=Status.COMPLETED, valid_accuracy=reward,
                                         test_accuracy=float("nan")))


def run_search(searcher: Searcher, targets: Mapping[str, Sequence[int]], num_trials: int,
               allowed_modules: Mapping[str, Sequence[str]] | None = None, noise: float = 0.02,
               in_flight: int = 1, first_trial_id: int = 0) -> list[Trial]:
    """Suggest `num_trials` trials, cycling over the tasks of `targets`, with up to `in_flight`
    trials pending; each finished trial is given to `update` oldest first, as an executor with
    `in_flight` workers would. Returns the finished trials in suggestion order."""
    tasks = list(targets)
    pending: collections.deque[Trial] = collections.deque()
    finished: list[Trial] = []

    def complete_oldest() -> None:
        trial = pending.popleft()
        done = finish(trial, targets[trial.task], noise)
        searcher.update([done])
        finished.append(done)

    for i in range(num_trials):
        task = tasks[i % len(tasks)]
        modules = (allowed_modules or {}).get(task, searcher.space.modules)
        pending.append(searcher.suggest(first_trial_id + i, task, modules))
        if len(pending) >= in_flight:
            complete_oldest()
    while pending:
        complete_oldest()
    finished.sort(key=lambda t: t.trial_id)
    return finished


def trials_to_target(trials: Sequence[Trial], targets: Mapping[str, Sequence[int]],
                     threshold: float, task: str | None = None) -> int | None:
    """1-based count of `task`'s trials (all tasks if None) until one matches at least
    `threshold` of its target's decisions; None if none does."""
    count = 0
    for trial in trials:
        if task is not None and trial.task != task:
            continue
        count += 1
        if match_fraction(trial.actions, targets[trial.task]) >= threshold:
            return count
    return None
