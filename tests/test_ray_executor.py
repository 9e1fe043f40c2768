"""The Ray executor on a real local Ray with two worker actors: same trials as one at a time, a
worker killed mid-trial, workers finding data and modules, the real child.

One Ray session serves the whole module (starting Ray costs seconds). Test evaluators are shipped
to workers by value: workers do not have tests/ on their path.
"""
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
from conftest import write_task_sample

from automl_transfer import paths
from automl_transfer.executors import SequentialExecutor, make_executor
from automl_transfer.experiment import ChildEvaluator, run_experiment, task_schedule
from automl_transfer.modules.text_embedding import export_text_module
from automl_transfer.ray_executor import RayExecutor, connect
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.trial import Status, Trial, TrialResult

MODULES = ["en-a", "en-b"]
TASKS = ["t1", "t2"]
WAIT_S = 600  # bound of every poll: a broken executor fails the test instead of hanging it


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray with 2 CPUs whose workers were given a data and a cache directory by env."""
    root = tmp_path_factory.mktemp("ray_env")
    env = {paths.DATA_DIR_ENV: str(root / "data"), paths.CACHE_DIR_ENV: str(root / "cache")}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        assert connect("")
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield env
    ray.shutdown()


def score(trial: Trial) -> TrialResult:
    """A deterministic stand-in for training: validation accuracy grows with the layer size."""
    valid = trial.config.layer_size / 256
    return TrialResult(Status.COMPLETED, valid, 1.0 - valid, steps=trial.config.train_steps)


@dataclasses.dataclass(frozen=True)
class BlockOnVictim:
    """Scores like `score`, except trial `victim`: its worker writes its pid to `pid_file`, then
    blocks until it is killed (a trial that cannot finish by itself: no timing involved)."""

    victim: int
    pid_file: str

    def __call__(self, trial: Trial) -> TrialResult:
        if trial.trial_id == self.victim:
            tmp = f"{self.pid_file}.tmp"
            Path(tmp).write_text(str(os.getpid()))
            os.rename(tmp, self.pid_file)  # atomic: the test never reads half a pid
            threading.Event().wait()
        return score(trial)


def worker_paths(trial: Trial) -> TrialResult:
    """Reports, in the error field, the data and cache directories the worker resolves."""
    return TrialResult(Status.COMPLETED, 0.5, 0.5,
                       error=f"{paths.data_dir()}|{paths.cache_dir()}|{os.getpid()}")


def _run(exp_dir: Path, fn, executor, trials_per_task: int = 3) -> list[Trial]:
    schedule = task_schedule(TASKS, trials_per_task, 1, interleave=True)
    settings = {"mode": "test", "tasks": TASKS, "trials_per_task": trials_per_task}
    return run_experiment(exp_dir, RandomSearcher(SearchSpace(MODULES), 1), schedule,
                          {task: MODULES for task in TASKS}, fn, settings, executor=executor)


def _wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def _evaluate_all(executor, trials: list[Trial], fn) -> list[Trial]:
    """Every trial through `executor`, as many at once as it takes."""
    pending, finished = list(trials), []
    while pending or executor.in_flight:
        while pending and executor.can_submit():
            executor.submit(pending.pop(0), fn)
        finished += executor.wait()
    return finished


def test_two_ray_workers_give_the_same_trials_as_one_at_a_time(local_ray, tmp_path):
    sequential = _run(tmp_path / "a", score, SequentialExecutor())
    with RayExecutor(2) as executor:
        assert executor.max_in_flight == 2
        on_ray = _run(tmp_path / "b", score, executor)
    assert on_ray == sequential


def test_a_worker_killed_mid_trial_fails_that_trial_and_the_run_goes_on(local_ray, tmp_path):
    pid_file = tmp_path / "victim.pid"
    killed = []

    def kill_victim() -> None:
        pid = int(_wait_for_file(pid_file))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_victim, daemon=True)
    killer.start()
    with RayExecutor(2) as executor:
        trials = _run(tmp_path / "exp", BlockOnVictim(victim=1, pid_file=str(pid_file)), executor)
    killer.join(timeout=WAIT_S)
    assert killed, "the victim's worker was never killed"
    assert [t.trial_id for t in trials] == list(range(6))  # none lost, none hanging
    victim = trials[1]
    assert victim.result.status == Status.FAILED
    assert victim.result.error.startswith("worker process died during the trial")
    assert all(t.result.status == Status.COMPLETED for t in trials if t.trial_id != 1)
    expected = _run(tmp_path / "ref", score, SequentialExecutor())
    assert [t.config for t in trials] == [t.config for t in expected]


def test_workers_find_data_and_modules_through_the_driver_environment(local_ray, tmp_path):
    with RayExecutor(2) as executor:
        trials = _run(tmp_path / "exp", worker_paths, executor, trials_per_task=4)
    reported = [t.result.error.split("|") for t in trials]
    wanted = [str(Path(local_ray[paths.DATA_DIR_ENV]).resolve()),
              str(Path(local_ray[paths.CACHE_DIR_ENV]).resolve())]
    assert all(found[:2] == wanted for found in reported)
    assert len({found[2] for found in reported}) == 2  # both workers took trials
    assert str(os.getpid()) not in {found[2] for found in reported}


def test_real_child_on_ray_matches_one_at_a_time(local_ray, shared_data_dir, tmp_path):
    csv = write_task_sample(shared_data_dir, "sms_spam", 200, tmp_path / "sms_spam.csv")
    glove = shared_data_dir / "embeddings" / "glove-6b-50d-top50k"
    vocab = (glove / "vocab.txt").read_text(encoding="utf-8").splitlines()[:2000]
    module = export_text_module(str(tmp_path / "glove2k"), vocab,
                                np.load(glove / "vectors.npy")[:2000])
    evaluator = ChildEvaluator({"sms_spam": str(csv)}, {"glove": module}, str(shared_data_dir))
    space = SearchSpace(["glove"])
    searcher = RandomSearcher(space, 0)
    cheap = [i for i in range(200)
             if searcher.suggest(i, "sms_spam", ["glove"]).config.train_steps <= 100][:4]
    trials = [searcher.suggest(i, "sms_spam", ["glove"]) for i in cheap]
    with make_executor(2, kind="ray") as executor:
        results = _evaluate_all(executor, trials, evaluator)
    results.sort(key=lambda t: t.trial_id)
    assert [t.trial_id for t in results] == cheap
    assert all(t.result.status == Status.COMPLETED for t in results), [t.result for t in results]
    alone = [evaluator(t) for t in trials]
    assert [t.result.valid_accuracy for t in results] == [r.valid_accuracy for r in alone]
    assert [t.result.test_accuracy for t in results] == [r.test_accuracy for r in alone]
