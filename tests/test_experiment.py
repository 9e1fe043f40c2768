"""The experiment loop: schedule, determinism, hidden test accuracy, resume and replay, refusal.

Trials here are scored by `_score`, a small deterministic function of the configuration (no
training): the loop and store logic is what is under test. The real child is exercised through
the CLI in test_cli.py.
"""
import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from automl_transfer import cli_process
from automl_transfer.errors import ResumeError, UserError
from automl_transfer.executors import ProcessExecutor, SequentialExecutor, ThreadExecutor
from automl_transfer.experiment import (Callback, hide_test_accuracy, run_experiment,
                                        task_schedule)
from automl_transfer.progress import ProgressDisplay
from automl_transfer.search import StopWhenSignalled
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.store import SEARCHER_STATE_KEY, STORE_FILE, TrialStore
from automl_transfer.trial import Status, Trial, TrialResult

MODULES = ["en-a", "en-b", "img-c"]
ALLOWED = {"t1": ["en-a", "en-b"], "t2": ["en-a", "en-b"], "t3": ["img-c"]}


def _score(trial: Trial) -> TrialResult:
    """Validation accuracy grows with the layer size; test accuracy differs from it on purpose."""
    valid = trial.config.layer_size / 256
    return TrialResult(Status.COMPLETED, valid, 1.0 - valid, steps=trial.config.train_steps)


class LearningSearcher(RandomSearcher):
    """Random suggestions plus real state: the ids it learned from, in order, and a 'weights' file."""

    name = "learning"

    def __init__(self, space, seed):
        super().__init__(space, seed)
        self.seen: list[int] = []
        self.test_seen: list[float] = []

    def update(self, trials):
        self.seen.extend(t.trial_id for t in trials)
        self.test_seen.extend(t.result.test_accuracy for t in trials)

    def get_state(self):
        return {"seen": list(self.seen)}

    def set_state(self, state):
        self.seen = list(state["seen"])

    def save(self, directory):
        np.save(Path(directory) / "weights.npy", np.array(self.seen, dtype=np.int64))

    def restore(self, directory):
        assert list(np.load(Path(directory) / "weights.npy")) == self.seen


def _run(exp_dir, trials_per_task=3, tasks=("t1", "t2"), seed=1, searcher=None, evaluate=_score,
         **kwargs):
    searcher = searcher or LearningSearcher(SearchSpace(MODULES), seed)
    schedule = task_schedule(list(tasks), trials_per_task, seed, interleave=True)
    settings = {"mode": "test", "tasks": list(tasks), "seed": seed, "trials_per_task": trials_per_task}
    return run_experiment(exp_dir, searcher, schedule, ALLOWED, evaluate, settings, **kwargs), searcher


def test_task_schedule_exact_budget_seeded_and_extendable():
    tasks = ["t1", "t2", "t3"]
    schedule = task_schedule(tasks, 20, seed=4, interleave=True)
    assert sorted(schedule) == sorted(tasks * 20)
    assert schedule == task_schedule(tasks, 20, seed=4, interleave=True)
    assert schedule != task_schedule(tasks, 20, seed=5, interleave=True)
    assert schedule[:3 * 7] == task_schedule(tasks, 7, seed=4, interleave=True)
    assert schedule[:6] != tasks * 2  # actually shuffled
    assert task_schedule(tasks, 2, seed=4, interleave=False) == tasks * 2
    with pytest.raises(ValueError, match="at least 1"):
        task_schedule(tasks, 0, seed=0, interleave=False)


def test_run_records_budget_with_allowed_modules_and_hides_test_accuracy(tmp_path):
    trials, searcher = _run(tmp_path / "exp", trials_per_task=4, tasks=("t1", "t3"))
    assert [t.trial_id for t in trials] == list(range(8))
    assert sorted(t.task for t in trials) == ["t1"] * 4 + ["t3"] * 4
    assert all(t.config.module == "img-c" for t in trials if t.task == "t3")
    assert all(t.result.test_accuracy == 1.0 - t.result.valid_accuracy for t in trials)
    assert len(searcher.test_seen) == 8 and all(math.isnan(x) for x in searcher.test_seen)
    with TrialStore(tmp_path / "exp" / STORE_FILE) as store:
        assert store.get_meta(SEARCHER_STATE_KEY)["trials_seen"] == 8
        assert store.get_meta("settings")["searcher"]["searcher"] == "learning"
    checkpoint = json.loads((tmp_path / "exp" / "searcher" / "checkpoint.json").read_text())
    assert checkpoint["state"]["seen"] == searcher.seen and checkpoint["trials_seen"] == 8


def test_same_seed_same_configurations_other_seed_others(tmp_path):
    a, _ = _run(tmp_path / "a", seed=7)
    b, _ = _run(tmp_path / "b", seed=7)
    c, _ = _run(tmp_path / "c", seed=8)
    assert [t.config for t in a] == [t.config for t in b]
    assert [t.config for t in a] != [t.config for t in c]


def test_resume_replays_trials_committed_after_the_checkpoint(tmp_path):
    exp = tmp_path / "exp"
    snapshot = tmp_path / "snapshot"

    class Snapshot(Callback):
        def on_trial_end(self, trial, searcher, store):
            if len(searcher.seen) == 2:
                shutil.copytree(exp / "searcher", snapshot)

    first, _ = _run(exp, trials_per_task=2, callbacks=[Snapshot()])
    # As if killed after committing trials 3 and 4 but before checkpointing the searcher.
    shutil.rmtree(exp / "searcher")
    snapshot.rename(exp / "searcher")
    trials, searcher = _run(exp, trials_per_task=3)  # resume, and extend the budget
    assert [t.trial_id for t in trials] == list(range(6))
    assert trials[:4] == first
    order = [t.trial_id for t in first] + [4, 5]
    assert searcher.seen == order  # each trial learned exactly once, none lost
    uninterrupted, _ = _run(tmp_path / "other", trials_per_task=3)
    assert [t.config for t in trials] == [t.config for t in uninterrupted]


def test_resume_without_checkpoint_dir_replays_everything(tmp_path):
    _run(tmp_path / "exp", trials_per_task=2)
    shutil.rmtree(tmp_path / "exp" / "searcher")
    trials, searcher = _run(tmp_path / "exp", trials_per_task=2)
    assert searcher.seen == [t.trial_id for t in trials]


def test_resume_with_other_settings_is_refused_and_overwrite_starts_afresh(tmp_path):
    _run(tmp_path / "exp", trials_per_task=2)
    with pytest.raises(ResumeError, match=r"tasks=\['t1', 't2'\], not \['t1'\].*--overwrite"):
        _run(tmp_path / "exp", trials_per_task=2, tasks=("t1",))
    with pytest.raises(ResumeError, match="seed=1, not 2"):
        _run(tmp_path / "exp", trials_per_task=2, seed=2)
    trials, searcher = _run(tmp_path / "exp", trials_per_task=1, tasks=("t1",), overwrite=True)
    assert [t.task for t in trials] == ["t1"] and searcher.seen == [0]


@pytest.mark.parametrize("executor", [lambda: ThreadExecutor(3), lambda: ProcessExecutor(2)])
def test_trials_in_flight_give_the_same_trials(tmp_path, executor):
    sequential, _ = _run(tmp_path / "a", trials_per_task=3, executor=SequentialExecutor())
    parallel, searcher = _run(tmp_path / "b", trials_per_task=3, executor=executor())
    assert parallel == sequential
    assert sorted(searcher.seen) == list(range(6))


@dataclasses.dataclass(frozen=True)
class KillWorkerOn:
    """Scores like `_score`, except that the worker running trial `victim` kills itself with
    SIGKILL: every time, or only the first time when `once_marker` names a file to create."""

    victim: int
    once_marker: str = ""

    def __call__(self, trial: Trial) -> TrialResult:
        if trial.trial_id == self.victim:
            if not self.once_marker:
                os.kill(os.getpid(), signal.SIGKILL)
            with contextlib.suppress(FileExistsError):
                open(self.once_marker, "x").close()
                os.kill(os.getpid(), signal.SIGKILL)
        return _score(trial)


def test_a_worker_killed_once_mid_trial_loses_nothing(tmp_path):
    sequential, _ = _run(tmp_path / "a", trials_per_task=3, executor=SequentialExecutor())
    marker = tmp_path / "killed_once"
    with ProcessExecutor(2) as executor:
        trials, searcher = _run(tmp_path / "b", trials_per_task=3, executor=executor,
                                evaluate=KillWorkerOn(victim=1, once_marker=str(marker)))
    assert marker.exists()  # the worker really died
    assert trials == sequential and sorted(searcher.seen) == list(range(6))


def test_a_trial_whose_worker_always_dies_fails_with_the_reason_and_the_run_goes_on(tmp_path):
    sequential, _ = _run(tmp_path / "a", trials_per_task=3, executor=SequentialExecutor())
    with ProcessExecutor(2) as executor:
        trials, _ = _run(tmp_path / "b", trials_per_task=3, executor=executor,
                         evaluate=KillWorkerOn(victim=1))
    assert [t.trial_id for t in trials] == list(range(6))
    assert trials[1].result.status == Status.FAILED
    assert trials[1].result.error.startswith("worker process died during the trial")
    assert [t for t in trials if t.trial_id != 1] == [t for t in sequential if t.trial_id != 1]


@dataclasses.dataclass(frozen=True)
class ScoreAndSayWho:
    """Scores like `_score` and writes the worker's pid to `pid_file`."""

    pid_file: str

    def __call__(self, trial: Trial) -> TrialResult:
        Path(self.pid_file).write_text(str(os.getpid()))
        return _score(trial)


def test_a_trial_submitted_after_a_worker_died_between_trials_runs(tmp_path):
    """The race CI can hit: a worker dies after `wait` returned and before the next `submit`."""
    space = SearchSpace(MODULES)
    first, second = (RandomSearcher(space, 0).suggest(i, "t1", ["en-a"]) for i in (0, 1))
    pid_file = tmp_path / "worker.pid"
    with ProcessExecutor(1) as executor:
        executor.submit(first, ScoreAndSayWho(str(pid_file)))
        assert executor.wait() == [first.with_result(_score(first))]
        worker = int(pid_file.read_text())
        os.kill(worker, signal.SIGKILL)
        for _ in range(6000):  # the pool marks itself broken before it reaps the dead worker
            if not Path(f"/proc/{worker}").exists():
                break
            time.sleep(0.1)
        executor.submit(second, ScoreAndSayWho(str(pid_file)))
        assert executor.wait() == [second.with_result(_score(second))]
        assert int(pid_file.read_text()) != worker


def test_progress_reports_each_trial_and_best_per_task(tmp_path):
    stream = io.StringIO()
    trials, _ = _run(tmp_path / "exp", trials_per_task=2, callbacks=[ProgressDisplay(stream)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("trials 4/4 | best valid ")
    best_t1 = max(t.result.valid_accuracy for t in trials if t.task == "t1")
    assert f"t1 {best_t1:.3f}" in lines[-1] and "trials/min" in lines[-1]
    stream = io.StringIO()
    _run(tmp_path / "exp", trials_per_task=3, callbacks=[ProgressDisplay(stream)])
    assert stream.getvalue().splitlines()[0] == "resuming: 4/6 trials already finished"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_rewrites_one_line(tmp_path):
    stream = _Terminal()
    _run(tmp_path / "exp", trials_per_task=2, callbacks=[ProgressDisplay(stream)])
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 4 and text.count("\n") == 1 and text.endswith("\n")


def test_hide_test_accuracy_keeps_everything_else():
    space = SearchSpace(MODULES)
    trial = RandomSearcher(space, 0).suggest(0, "t1", ["en-a"])
    finished = trial.with_result(_score(trial))
    hidden = hide_test_accuracy(finished)
    assert math.isnan(hidden.result.test_accuracy)
    assert hidden.result.valid_accuracy == finished.result.valid_accuracy
    assert hidden.config == finished.config and finished.result.test_accuracy >= 0


def test_a_second_run_on_a_directory_in_use_is_refused(tmp_path):
    seen_refusal = []

    class SecondRun(Callback):
        def on_trial_end(self, trial, searcher, store):
            if not seen_refusal:
                with pytest.raises(UserError, match="another run is using this experiment directory"):
                    _run(tmp_path / "exp", trials_per_task=2)
                seen_refusal.append(trial.trial_id)

    trials, _ = _run(tmp_path / "exp", trials_per_task=2, callbacks=[SecondRun()])
    assert seen_refusal == [trials[0].trial_id] and len(trials) == 4
    again, _ = _run(tmp_path / "exp", trials_per_task=2)  # released at the end
    assert again == trials


class _SwallowsItsSignal:
    """Where a stop signal can land without stopping anything: Python only prints an exception
    raised inside a __del__ (TensorFlow's resource deleters run in the main thread)."""

    def __del__(self):
        cli_process._raise_interrupted(signal.SIGINT, None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # on purpose
def test_a_swallowed_stop_signal_still_stops_the_run_at_the_next_trial(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_process, "_received", [])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def evaluate(trial):
        if trial.trial_id == 2:
            _SwallowsItsSignal()  # collected at once: its Interrupted is printed, not raised
        return _score(trial)

    try:
        with contextlib.redirect_stderr(io.StringIO()), pytest.raises(cli_process.Interrupted):
            _run(tmp_path / "exp", evaluate=evaluate, callbacks=[StopWhenSignalled()])
    finally:
        for stop_signal, handler in handlers.items():
            signal.signal(stop_signal, handler)
    # Trial 2 is committed (the signal came during it); nothing after it ran; resume finishes.
    assert sorted(TrialStore(tmp_path / "exp" / STORE_FILE).finished_ids()) == [0, 1, 2]
    monkeypatch.setattr(cli_process, "_received", [])
    trials, _ = _run(tmp_path / "exp", callbacks=[StopWhenSignalled()])
    assert len(trials) == 6
