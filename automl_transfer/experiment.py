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
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from automl_transfer import directory
from automl_transfer.directory import LOCK_FILE
from automl_transfer.errors import ResumeError, UserError
from automl_transfer.executors import Executor, SequentialExecutor, TrialFn
from automl_transfer.fingerprints import first_change
from automl_transfer.search_space import PAPER
from automl_transfer.searchers.base import Searcher
from automl_transfer.store import SEARCHER_STATE_KEY, STORE_FILE, TrialStore
from automl_transfer.trial import Status, Trial, TrialResult

SETTINGS_KEY = "settings"
FINGERPRINTS_KEY = "fingerprints"  # {"tasks": {name: fingerprint}, "modules": {...}}
CHECKPOINT_FILE = "checkpoint.json"
# Failed trials held back at a session's start before a run that fails them all the same way stops.
STOP_AFTER_FAILURES = 3
# Settings a resume may change: a larger budget simply extends the run; where the task files and
# modules are (`sources`, read by an export) may move between runs without changing them.
EXTENDABLE_SETTINGS = frozenset({"trials_per_task", "sources"})
# Settings that stores written before they existed lack, with the value those runs used: such a
# store resumes as if it had recorded it (a store without `space` was made in the paper space).
SETTING_DEFAULTS = {"space": PAPER, "fine_tune_images": False}


class TaskSchedule(Sequence[str]):
    """The task of every trial id: `schedule[i]` is the task of trial i; each task gets exactly
    `trials_per_task` trials.

    Without `interleave` tasks take turns in the given order (round robin). With it, every round of
    len(tasks) trials is a seeded random permutation of the tasks, so each trial's task is uniform
    among the tasks. Either way the schedule for a budget is a prefix of the schedule for any larger
    budget: extending a run never changes the task of a trial already run. Entries are computed
    when asked for, so a huge budget costs nothing up front.
    """

    def __init__(self, tasks: Sequence[str], trials_per_task: int, seed: int, interleave: bool):
        if trials_per_task < 1:
            raise ValueError(f"trials_per_task must be at least 1, got {trials_per_task}")
        if not tasks:
            raise ValueError("a schedule needs at least one task")
        self.tasks = list(tasks)
        self.trials_per_task = trials_per_task
        self.seed = seed
        self.interleave = interleave
        self._last_round: tuple[int, tuple[int, ...]] = (-1, ())  # consecutive ids share a round

    def __len__(self) -> int:
        return len(self.tasks) * self.trials_per_task

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"trial {index} is outside the schedule of {len(self)} trials")
        round_index, position = divmod(index, len(self.tasks))
        return self.tasks[self._order(round_index)[position]]

    def _order(self, round_index: int) -> tuple[int, ...]:
        if not self.interleave:
            return tuple(range(len(self.tasks)))
        if self._last_round[0] != round_index:
            rng = np.random.default_rng([self.seed, round_index])
            order = tuple(int(i) for i in rng.permutation(len(self.tasks)))
            self._last_round = (round_index, order)
        return self._last_round[1]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Sequence) and len(self) == len(other)
                and all(a == b for a, b in zip(self, other)))

    __hash__ = None  # type: ignore[assignment]


def task_schedule(tasks: Sequence[str], trials_per_task: int, seed: int, interleave: bool
                  ) -> TaskSchedule:
    """The schedule of a run (see TaskSchedule)."""
    return TaskSchedule(tasks, trials_per_task, seed, interleave)


def schedule_tasks(schedule: Sequence[str]) -> list[str]:
    """The distinct tasks of `schedule` in first-seen order; a TaskSchedule names them, so a huge
    budget is never walked (10^8 trials would take minutes)."""
    return list(schedule.tasks if isinstance(schedule, TaskSchedule) else dict.fromkeys(schedule))


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

    def close(self) -> None:
        """Last, however the run ended (budget done, error, Ctrl-C): release files the callback
        holds, so nothing it wrote is left to finalizers at interpreter exit."""


@dataclasses.dataclass(frozen=True)
class ChildEvaluator:
    """The picklable function executors run: evaluates a trial's config with the real child.

    TensorFlow is imported at the first trial, not before: bad settings are refused in a second.
    """

    tasks: Mapping[str, str]  # task name -> registered name or CSV path, as load_task takes
    module_handles: Mapping[str, str]
    data_dir: str | None = None
    split_seed: int = 0
    fine_tune_images: bool = False

    def __call__(self, trial: Trial) -> TrialResult:
        from automl_transfer.child.evaluate import TaskRef, evaluate
        task = TaskRef(self.tasks[trial.task], self.data_dir, self.split_seed)
        return evaluate(trial.config, task, self.module_handles, trial.seed, self.fine_tune_images)


@contextlib.contextmanager
def exclusive(experiment_dir: str | Path):
    """Hold the experiment directory's lock: two runs writing one store would mix their trials.

    Raises:
        UserError: another process holds it, or the directory cannot be created.
    """
    experiment_dir = Path(experiment_dir)
    directory.check_usable(experiment_dir)
    try:
        experiment_dir.mkdir(parents=True, exist_ok=True)
        lock = open(experiment_dir / LOCK_FILE, "w")
    except OSError as err:
        raise directory.os_error(experiment_dir, err, "create the experiment directory") from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise directory.in_use(experiment_dir) from None
        yield  # the lock goes with the file's closing, also when the process is killed


def check_experiment_dir(experiment_dir: str | Path, settings: Mapping[str, Any],
                         overwrite: bool = False,
                         fingerprints: Mapping[str, Mapping[str, str]] | None = None
                         ) -> dict[str, Any] | None:
    """What can be checked before anything is built or TensorFlow is imported: the directory is
    usable and not in use, a new run does not land among the user's files, and a resume matches
    the given settings (any subset of the run's) and fingerprints. Creates nothing.

    Returns:
        The settings recorded by an earlier run that will be resumed; None for a new run.
    Raises:
        UserError: one line naming the directory or file and what to do.
    """
    directory.check_usable(experiment_dir)
    directory.check_not_in_use(experiment_dir)
    if overwrite or not (Path(experiment_dir) / STORE_FILE).is_file():
        if not overwrite:
            directory.check_new_run_allowed(experiment_dir)
        return None
    with TrialStore(Path(experiment_dir) / STORE_FILE) as store:
        saved = store.get_meta(SETTINGS_KEY)
        _check_resume(experiment_dir, store, saved, settings, fingerprints, only_given=True)
    return saved


def open_store(experiment_dir: str | Path, settings: Mapping[str, Any], overwrite: bool = False,
               fingerprints: Mapping[str, Mapping[str, str]] | None = None) -> TrialStore:
    """The experiment's store, new or resumed; a resume it cannot honour is refused.

    `--overwrite` deletes only what the project wrote in the directory. A resume keeps the larger
    of the recorded and the given budget. Fingerprints (see `fingerprints.py`) not recorded yet,
    e.g. by a run started before they existed, are recorded now.

    Raises:
        ResumeError: the directory holds a run whose settings (other than EXTENDABLE ones) or
            data differ.
    """
    experiment_dir = Path(experiment_dir)
    if overwrite:
        directory.remove_ours(experiment_dir)
    else:
        directory.check_new_run_allowed(experiment_dir)
    store = TrialStore(experiment_dir / STORE_FILE)
    try:
        saved = store.get_meta(SETTINGS_KEY)
        settings = json.loads(json.dumps(dict(settings)))  # compare as stored: tuples become lists
        _check_resume(experiment_dir, store, saved, settings, fingerprints, only_given=False)
        budget = "trials_per_task"  # a smaller budget never shrinks the recorded one
        if saved is not None and budget in settings and saved.get(budget, 0) > settings[budget]:
            settings[budget] = saved[budget]
        store.set_meta(SETTINGS_KEY, settings)
        if fingerprints is not None:
            recorded = store.get_meta(FINGERPRINTS_KEY, {})
            merged = {**recorded, **fingerprints}
            store.set_meta(FINGERPRINTS_KEY, {kind: {**recorded.get(kind, {}), **names}
                                              for kind, names in merged.items()})
    except BaseException:
        store.close()
        raise
    return store


def _check_resume(experiment_dir: str | Path, store: TrialStore, saved: Mapping[str, Any] | None,
                  settings: Mapping[str, Any],
                  fingerprints: Mapping[str, Mapping[str, str]] | None, only_given: bool) -> None:
    """Refuse a resume whose settings or fingerprints differ from those recorded."""
    hint = "use another --experiment_dir, or pass --overwrite to start afresh"
    if saved is not None:
        saved = {**{k: v for k, v in SETTING_DEFAULTS.items() if k in settings}, **saved}
        settings = json.loads(json.dumps(dict(settings)))
        difference = _first_difference(saved, settings, only_given=only_given)
        if difference is not None:
            raise ResumeError(f"{experiment_dir} holds a run with {difference}: rerun with the "
                              f"same settings, {hint}")
    if fingerprints is not None:
        change = first_change(store.get_meta(FINGERPRINTS_KEY, {}), dict(fingerprints))
        if change is not None:
            raise ResumeError(f"{experiment_dir}: {change}: restore what the run used, {hint}")


def _first_difference(saved: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "",
                      only_given: bool = False) -> str | None:
    """'key=saved, not wanted' for the first setting (in `wanted`'s order) a resume cannot honour.

    A key the saved settings lack was added after that run started: it is recorded, not refused.
    With `only_given`, keys of `saved` missing from `wanted` are not compared (a partial check).
    """
    extra = [] if only_given else [k for k in saved if k not in wanted]
    for key in list(wanted) + extra:
        if key not in saved:
            continue
        old, new = saved.get(key), wanted.get(key)
        if prefix + key in EXTENDABLE_SETTINGS or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            return _first_difference(old, new, f"{prefix}{key}.", only_given)
        return f"{prefix}{key}={old!r}, not {new!r}"
    return None


def run_experiment(experiment_dir: str | Path, searcher: Searcher, schedule: Sequence[str],
                   allowed_modules: Mapping[str, Sequence[str]], evaluate_fn: TrialFn,
                   settings: Mapping[str, Any], executor: Executor | None = None,
                   callbacks: Sequence[Callback] = (), overwrite: bool = False,
                   checkpoint_every: int = 1,
                   fingerprints: Mapping[str, Mapping[str, str]] | None = None,
                   stop_after_failures: int = STOP_AFTER_FAILURES) -> list[Trial]:
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
        overwrite: discard an earlier run in `experiment_dir` instead of resuming it (only the
            files the project wrote are deleted).
        checkpoint_every: write the searcher's big state every this many trials (the small state
            is committed with every trial; replay on resume covers the gap).
        fingerprints: {"tasks": {name: fingerprint}, "modules": {...}}; a resume must match the
            recorded ones (see `fingerprints.py`).
        stop_after_failures: failed trials at the start of a session are held back, uncommitted;
            when this many all failed with the same error the run stops with a UserError, so a
            fixed rerun retries them. 0 commits every trial at once.
    """
    settings = {**settings, "searcher": searcher.settings()}
    executor = executor or SequentialExecutor()
    check_experiment_dir(experiment_dir, settings, overwrite, fingerprints)
    with exclusive(experiment_dir), open_store(experiment_dir, settings, overwrite,
                                               fingerprints) as store, _closing(callbacks):
        _check_schedule(store, schedule, experiment_dir)
        loop = _Loop(Path(experiment_dir), store, searcher, checkpoint_every, stop_after_failures)
        loop.restore()
        for callback in callbacks:
            callback.on_run_start(store, searcher, schedule)
        finished = store.finished_ids()
        todo = (i for i in range(len(schedule)) if i not in finished)
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
                    for result in executor.wait():
                        for trial in loop.release(result):
                            _commit(loop, trial, callbacks)
                for trial in loop.release(None):  # a budget smaller than the hold
                    _commit(loop, trial, callbacks)
        finally:
            loop.checkpoint()
        for callback in callbacks:
            callback.on_run_end(store, searcher)
        return store.trials()


@contextlib.contextmanager
def _closing(callbacks: Sequence[Callback]) -> Iterator[None]:
    """Close every callback when the run ends, however it ends."""
    try:
        yield
    finally:
        for callback in callbacks:
            callback.close()


def _commit(loop: "_Loop", trial: Trial, callbacks: Sequence[Callback]) -> None:
    loop.finish(trial)
    for callback in callbacks:
        callback.on_trial_end(trial, loop.searcher, loop.store)


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
                 checkpoint_every: int, stop_after_failures: int = 0):
        self.dir = experiment_dir
        self.store = store
        self.searcher = searcher
        self.checkpoint_every = max(1, checkpoint_every)
        self.trials_seen = 0          # committed trials the searcher has learned from
        self.checkpointed = 0         # trials_seen at the last checkpoint
        self.last_trial_id: int | None = None
        self.stop_after_failures = stop_after_failures
        # Failed trials of this session not committed yet; None once a trial has not failed.
        self.held: list[Trial] | None = [] if stop_after_failures > 0 else None

    def release(self, trial: Trial | None) -> list[Trial]:
        """The trials to commit now that `trial` finished (None: the budget is done).

        While every trial of the session has failed, failures are held back: a broken module or
        setting fails every trial the same way, and committing those zeros would keep them in the
        results after the cause is fixed.

        Raises:
            UserError: the first `stop_after_failures` trials all failed with the same error.
        """
        if self.held is None:
            return [] if trial is None else [trial]
        if trial is not None and trial.result.status == Status.FAILED:
            self.held.append(trial)
            errors = {t.result.error for t in self.held}
            if len(self.held) < self.stop_after_failures:
                return []
            if len(errors) == 1:
                raise UserError(f"the first {len(self.held)} trials all failed with: "
                                f"{errors.pop()}; nothing was recorded: fix the cause and rerun "
                                f"the same command")
            trial = None
        released, self.held = self.held + ([] if trial is None else [trial]), None
        return released

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
        try:
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
        except OSError as err:  # the previous checkpoint and every committed trial are intact
            raise directory.os_error(tmp, err, "write the searcher checkpoint") from None
        self.checkpointed = self.trials_seen

    def restore(self) -> None:
        """Restore the searcher from its newest complete checkpoint, then replay `update` on the
        trials committed after it. Without a checkpoint directory the searcher starts fresh and
        replays every committed trial: the small state in `meta` alone could disagree with the
        big state (weights) it belongs to, so it is kept for inspection, not restored."""
        name = self.searcher.state_dirname
        for state_dir in (self.dir / name, self.dir / f"{name}.old"):
            if (state_dir / CHECKPOINT_FILE).is_file():  # .old: killed between the two renames
                saved = json.loads((state_dir / CHECKPOINT_FILE).read_text())
                self.searcher.set_state(saved["state"])
                try:
                    self.searcher.restore(str(state_dir))
                except UserError as err:
                    raise ResumeError(
                        f"{err}; to resume, move {state_dir} aside (the searcher is then rebuilt "
                        f"by replaying the stored trials) or start afresh with --overwrite"
                        ) from None
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
