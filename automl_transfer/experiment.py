"""The experiment loop: schedule -> suggest -> run -> store -> update -> checkpoint -> callbacks.

The loop never asks which searcher or executor it has. Several trials may be in flight; each is
committed to the store the moment it finishes, then the searcher learns from it.

What a searcher sees: a copy of each finished trial whose `test_accuracy` is NaN. Test accuracy is
stored and reported but never reaches a searcher, so no search decision can depend on it.

Resume: the store is the source of truth. A rerun on the same directory keeps finished trials,
restores the searcher from its last checkpoint (`<searcher.state_dirname>/`, e.g. `controller/`:
`get_state` JSON plus whatever `save` wrote, replaced atomically) and replays `update` on trials committed after that
checkpoint, so a run killed between a commit and a checkpoint loses no learning. The `meta` table
also holds the small state committed with each trial (key `searcher_state`), for inspection.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from automl_transfer.errors import ResumeError, UserError
from automl_transfer.executors import Executor, SequentialExecutor, TrialFn
from automl_transfer.searchers.base import Searcher
from automl_transfer.store import SEARCHER_STATE_KEY, STORE_FILE, TrialStore
from automl_transfer.trial import Trial, TrialResult

SETTINGS_KEY = "settings"
CHECKPOINT_FILE = "checkpoint.json"
LOCK_FILE = ".lock"
# Settings a resume may change: a larger budget simply extends the run; where the task files and
# modules are (`sources`, read by an export) may move between runs without changing them.
EXTENDABLE_SETTINGS = frozenset({"trials_per_task", "sources"})


def task_schedule(tasks: Sequence[str], trials_per_task: int, seed: int, interleave: bool
                  ) -> list[str]:
    """The task of every trial id: `schedule[i]` is the task of trial i; each task gets exactly
    `trials_per_task` trials.

    Without `interleave` tasks take turns in the given order (round robin). With it, every round of
    len(tasks) trials is a seeded random permutation of the tasks, so each trial's task is uniform
    among the tasks. Either way the schedule for a budget is a prefix of the schedule for any larger
    budget: extending a run never changes the task of a trial already run.
    """
    if trials_per_task < 1:
        raise ValueError(f"trials_per_task must be at least 1, got {trials_per_task}")
    if not tasks:
        raise ValueError("a schedule needs at least one task")
    schedule: list[str] = []
    for round_index in range(trials_per_task):
        order = list(tasks)
        if interleave:
            order = [tasks[i] for i in np.random.default_rng([seed, round_index]).permutation(len(tasks))]
        schedule.extend(order)
    return schedule


def hide_test_accuracy(trial: Trial) -> Trial:
    """The copy of a finished trial a searcher may see: test accuracy replaced by NaN."""
    if trial.result is None:
        raise ValueError(f"trial {trial.trial_id} has no result to hide")
    return trial.with_result(dataclasses.replace(trial.result, test_accuracy=math.nan))


class Callback:
    """Hooks called by the loop (progress display, TensorBoard, ...). Override what you need."""

    def on_run_start(self, store: TrialStore, searcher: Searcher, schedule: Sequence[str]) -> None:
        """Before the first new trial; `store` already holds the trials of earlier runs."""

    def on_trial_end(self, trial: Trial, searcher: Searcher, store: TrialStore) -> None:
        """After `trial` is committed and the searcher has learned from it."""

    def on_run_end(self, store: TrialStore, searcher: Searcher) -> None:
        """After the last trial of the budget (not called when the run is interrupted)."""


@dataclasses.dataclass(frozen=True)
class ChildEvaluator:
    """The picklable function executors run: evaluates a trial's config with the real child.

    TensorFlow is imported at the first trial, not before: bad settings are refused in a second.
    """

    tasks: Mapping[str, str]  # task name -> registered name or CSV path, as load_task takes
    module_handles: Mapping[str, str]
    data_dir: str | None = None
    split_seed: int = 0

    def __call__(self, trial: Trial) -> TrialResult:
        from automl_transfer.child.evaluate import TaskRef, evaluate
        task = TaskRef(self.tasks[trial.task], self.data_dir, self.split_seed)
        return evaluate(trial.config, task, self.module_handles, trial.seed)


@contextlib.contextmanager
def exclusive(experiment_dir: str | Path):
    """Hold the experiment directory's lock: two runs writing one store would mix their trials.

    Raises:
        UserError: another process holds it.
    """
    experiment_dir = Path(experiment_dir)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    with open(experiment_dir / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{experiment_dir}: another run is using this experiment directory; "
                            f"wait for it to finish or use another --experiment_dir") from None
        yield  # the lock goes with the file's closing, also when the process is killed


def open_store(experiment_dir: str | Path, settings: Mapping[str, Any], overwrite: bool = False
               ) -> TrialStore:
    """The experiment's store, new or resumed; a resume with settings it cannot honour is refused.

    Raises:
        ResumeError: the directory holds a run whose settings differ (other than EXTENDABLE ones).
    """
    experiment_dir = Path(experiment_dir)
    if overwrite and (experiment_dir / STORE_FILE).exists():  # only a directory holding our store
        for path in experiment_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != LOCK_FILE:  # held by this run
                path.unlink()
    store = TrialStore(experiment_dir / STORE_FILE)
    saved = store.get_meta(SETTINGS_KEY)
    settings = json.loads(json.dumps(dict(settings)))  # compare as stored: tuples become lists
    difference = _first_difference(saved, settings) if saved is not None else None
    if difference is not None:
        store.close()
        raise ResumeError(f"{experiment_dir} holds a run with {difference}: rerun with the same "
                          f"settings, use another --experiment_dir, or pass --overwrite to start afresh")
    store.set_meta(SETTINGS_KEY, settings)
    return store


def _first_difference(saved: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = ""
                      ) -> str | None:
    """'key=saved, not wanted' for the first setting (in `wanted`'s order) a resume cannot honour."""
    for key in list(wanted) + [k for k in saved if k not in wanted]:
        old, new = saved.get(key), wanted.get(key)
        if prefix + key in EXTENDABLE_SETTINGS or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            return _first_difference(old, new, f"{prefix}{key}.")
        return f"{prefix}{key}={old!r}, not {new!r}"
    return None


def run_experiment(experiment_dir: str | Path, searcher: Searcher, schedule: Sequence[str],
                   allowed_modules: Mapping[str, Sequence[str]], evaluate_fn: TrialFn,
                   settings: Mapping[str, Any], executor: Executor | None = None,
                   callbacks: Sequence[Callback] = (), overwrite: bool = False,
                   checkpoint_every: int = 1) -> list[Trial]:
    """Run (or resume) the trials of `schedule` and return every finished trial, ordered by id.

    Args:
        experiment_dir: holds trials.sqlite and the searcher checkpoint.
        searcher: proposes configurations and learns from finished trials.
        schedule: the task of each trial id (see `task_schedule`).
        allowed_modules: task -> module names a trial of that task may use.
        evaluate_fn: trial -> TrialResult (picklable for process executors).
        settings: recorded in the store; a resume must match them (see `open_store`).
        executor: where trials run; one at a time in this process by default.
        callbacks: hooks after each trial and at the end.
        overwrite: discard an earlier run in `experiment_dir` instead of resuming it.
        checkpoint_every: write the searcher's big state every this many trials (the small state
            is committed with every trial; replay on resume covers the gap).
    """
    settings = {**settings, "searcher": searcher.settings()}
    executor = executor or SequentialExecutor()
    with exclusive(experiment_dir), open_store(experiment_dir, settings, overwrite) as store:
        _check_schedule(store, schedule, experiment_dir)
        loop = _Loop(Path(experiment_dir), store, searcher, checkpoint_every)
        loop.restore()
        for callback in callbacks:
            callback.on_run_start(store, searcher, schedule)
        finished = store.finished_ids()
        todo = iter([i for i in range(len(schedule)) if i not in finished])
        next_id = next(todo, None)
        try:
            with executor:
                while True:
                    while next_id is not None and executor.can_submit():
                        task = schedule[next_id]
                        executor.submit(searcher.suggest(next_id, task, allowed_modules[task]),
                                        evaluate_fn)
                        next_id = next(todo, None)
                    if executor.in_flight == 0:
                        break
                    for trial in executor.wait():
                        loop.finish(trial)
                        for callback in callbacks:
                            callback.on_trial_end(trial, searcher, store)
        finally:
            loop.checkpoint()
        for callback in callbacks:
            callback.on_run_end(store, searcher)
        return store.trials()


def _check_schedule(store: TrialStore, schedule: Sequence[str], experiment_dir: str | Path) -> None:
    """Finished trials must belong to the task the schedule gives their id, or results would mix."""
    for trial in store.trials():
        if trial.trial_id < len(schedule) and schedule[trial.trial_id] != trial.task:
            raise ResumeError(f"{experiment_dir}: trial {trial.trial_id} ran on task {trial.task!r} "
                              f"but the schedule now gives {schedule[trial.trial_id]!r}: pass "
                              f"--overwrite or use another --experiment_dir")


class _Loop:
    """Keeps the searcher, the store and the searcher checkpoint in step."""

    def __init__(self, experiment_dir: Path, store: TrialStore, searcher: Searcher,
                 checkpoint_every: int):
        self.dir = experiment_dir
        self.store = store
        self.searcher = searcher
        self.checkpoint_every = max(1, checkpoint_every)
        self.trials_seen = 0          # committed trials the searcher has learned from
        self.checkpointed = 0         # trials_seen at the last checkpoint
        self.last_trial_id: int | None = None

    def _state(self) -> dict[str, Any]:
        return {"state": self.searcher.get_state(), "trials_seen": self.trials_seen,
                "last_trial_id": self.last_trial_id}

    def finish(self, trial: Trial) -> None:
        """Learn from a finished trial, commit it with the state that reflects it, checkpoint."""
        self.searcher.update([hide_test_accuracy(trial)])
        self.trials_seen += 1
        self.last_trial_id = trial.trial_id
        self.store.record(trial, searcher_state=self._state())
        if self.trials_seen - self.checkpointed >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Atomically replace the searcher's state folder with its current state."""
        if self.trials_seen == self.checkpointed:
            return
        name = self.searcher.state_dirname
        final, tmp, old = self.dir / name, self.dir / f"{name}.tmp", self.dir / f"{name}.old"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.searcher.save(str(tmp))
        # Written last: a directory without it is incomplete and never restored.
        (tmp / CHECKPOINT_FILE).write_text(json.dumps(self._state(), sort_keys=True))
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        self.checkpointed = self.trials_seen

    def restore(self) -> None:
        """Restore the searcher from its newest complete checkpoint, then replay `update` on the
        trials committed after it. Without a checkpoint directory the searcher starts fresh and
        replays every committed trial: the small state in `meta` alone could disagree with the
        big state (weights) it belongs to, so it is kept for inspection, not restored."""
        name = self.searcher.state_dirname
        for directory in (self.dir / name, self.dir / f"{name}.old"):
            if (directory / CHECKPOINT_FILE).is_file():  # .old: killed between the two renames
                saved = json.loads((directory / CHECKPOINT_FILE).read_text())
                self.searcher.set_state(saved["state"])
                self.searcher.restore(str(directory))
                self.trials_seen = self.checkpointed = saved["trials_seen"]
                self.last_trial_id = saved["last_trial_id"]
                break
        for trial in self.store.trials_in_commit_order()[self.trials_seen:]:
            self.searcher.update([hide_test_accuracy(trial)])
            self.trials_seen += 1
            self.last_trial_id = trial.trial_id
        if self.trials_seen > self.checkpointed:
            self.store.set_meta(SEARCHER_STATE_KEY, self._state())
            self.checkpoint()
