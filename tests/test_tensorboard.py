"""TensorBoardLogger driven by the real experiment loop; the event files are read back, and a real
TensorBoard server shows a small real run's logs.

Except in the server test, the children are replaced by a fixed accuracy per trial id (those test
logging, not training).
"""
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import HANG_GUARD_S, TASKS, cli, command, make_workdir

from automl_transfer.experiment import run_experiment
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.controller_searcher import ControllerSearcher
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.tensorboard_logging import TensorBoardLogger
from automl_transfer.trial import Status, Trial, TrialResult

SPACE = SearchSpace(["en-glove-50", "en-skipgram-50"])
ALLOWED = {"airline": SPACE.modules, "sst": SPACE.modules}


class ReportingSearcher(RandomSearcher):
    """A searcher exposing the optional hooks a controller may provide."""

    def last_update_stats(self, task):
        return {"baseline": 0.5, "advantage": -1.25, "entropy": 2.0,
                "option_probabilities": {"module": [0.25, 0.75]}}

    def task_embeddings(self):
        return ["a", "b"], np.array([[1.0, 0.0], [0.6, 0.8]])


def fixed_accuracy(trial: Trial) -> TrialResult:
    """valid = 0.5 + id / 100, test = 0.4; trial 2 diverges."""
    if trial.trial_id == 2:
        return TrialResult(Status.DIVERGED, 0.0, 0.0)
    return TrialResult(Status.COMPLETED, 0.5 + trial.trial_id / 100, 0.4, train_time_s=1.0)


def run(directory, searcher, schedule, **logger_args):
    logger = TensorBoardLogger(directory, **logger_args)
    run_experiment(directory, searcher, schedule, ALLOWED, fixed_accuracy, {"mode": searcher.name},
                   callbacks=[logger])
    return read_events(Path(directory) / "tensorboard")


def read_events(directory: Path):
    """{(run, tag): [(step, float value or None)]} of every summary under `directory`."""
    events = {}
    for path in sorted(directory.rglob("events.out.tfevents.*")):
        run_name = path.parent.relative_to(directory).as_posix()
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
                number = float(array) if array is not None and array.ndim == 0 \
                    and array.dtype.kind == "f" else None
                events.setdefault((run_name, value.tag), []).append((event.step, number))
    return events


def test_scalars_controller_stats_image_and_hparams(tmp_path):
    events = run(tmp_path, ReportingSearcher(SPACE, seed=0), ["airline"] * 4, top_n=2,
                 image_every=3)
    task = "tasks/airline"
    assert [v for _, v in events[task, "reward"]] == pytest.approx([0.5, 0.51, 0.0, 0.53])
    # top-2 of valid (0.5, 0.51, 0 diverged, 0.53) after 4 trials = (0.53 + 0.51) / 2
    assert events[task, "accuracy_top2/valid"][-1] == (4, pytest.approx(0.52))
    assert events[task, "accuracy_top2/test"][-1][1] == pytest.approx(0.4)
    assert len(events[task, "trials_per_minute"]) == 4
    assert events[task, "controller/advantage"][0][1] == pytest.approx(-1.25)
    assert events[task, "option_probability/module/en-skipgram-50"][0][1] == pytest.approx(0.75)
    # one image every 3 trials, and one at the end of the run
    assert [step for step, _ in events["controller", "task_embedding_similarity"]] == [3, 4]

    sessions = {run_name for run_name, tag in events if tag == "_hparams_/session_start_info"}
    assert sessions == {f"hparams/trial_{i:06d}" for i in range(4)}
    assert ("hparams", "_hparams_/experiment") in events
    assert events["hparams/trial_000001", "valid_accuracy"][0][1] == pytest.approx(0.51)


def test_resumed_run_continues_the_step_and_plain_searcher_logs_no_controller(tmp_path):
    run(tmp_path, RandomSearcher(SPACE, seed=1), ["airline"] * 3)
    events = run(tmp_path, RandomSearcher(SPACE, seed=1), ["airline"] * 4)
    # The resumed run counts the three stored trials: its one new point is step 4, not 1.
    steps = [step for step, _ in events["tasks/airline", "accuracy_top10/valid"]]
    assert sorted(steps) == [1, 2, 3, 4]
    assert not any(tag.startswith("controller/") for _, tag in events)
    assert not any(tag == "task_embedding_similarity" for _, tag in events)


def test_similarity_image_from_the_saved_controller(tmp_path):
    searcher = ControllerSearcher(SPACE, seed=0, tasks=["airline", "sst"])
    events = run(tmp_path, searcher, ["airline", "sst"])
    assert [step for step, _ in events["controller", "task_embedding_similarity"]] == [2]
    assert {run_name for run_name, _ in events} >= {"tasks/airline", "tasks/sst"}
    # resumed in a new process: its image is at the run's trial count, not the process's
    events = run(tmp_path, ControllerSearcher(SPACE, seed=0, tasks=["airline", "sst"]),
                 ["airline", "sst"] * 2)
    assert [step for step, _ in events["controller", "task_embedding_similarity"]] == [2, 4]


def test_an_interrupted_run_leaves_its_trials_in_the_event_files(tmp_path):
    def stopped_at_trial_2(trial: Trial) -> TrialResult:
        if trial.trial_id == 2:
            raise KeyboardInterrupt
        return fixed_accuracy(trial)

    with pytest.raises(KeyboardInterrupt):
        run_experiment(tmp_path, RandomSearcher(SPACE, seed=0), ["airline"] * 4, ALLOWED,
                       stopped_at_trial_2, {"mode": "random"},
                       callbacks=[TensorBoardLogger(tmp_path)])
    # Read in this process, before interpreter exit: each trial's events are on disk already.
    events = read_events(tmp_path / "tensorboard")
    assert [step for step, _ in events["tasks/airline", "reward"]] == [1, 2]


@pytest.fixture
def tensorboard_server():
    """Start a real TensorBoard on `logdir` (127.0.0.1, a port it picks); yield its base URL."""
    servers = []

    def serve(logdir: Path) -> str:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", "--host=127.0.0.1",
             "--port=0", "--load_fast=false", "--reload_interval=0", "--reload_task=blocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        servers.append(proc)
        # With a blocking load, the server announces its address only once every event file
        # is read: that line is the readiness signal (no clock involved).
        for line in proc.stderr:
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            if found:
                return found.group(1)
        raise AssertionError(f"tensorboard exited with code {proc.wait()} before serving")

    yield serve
    for proc in servers:
        proc.kill()
        proc.wait()


def _get(url: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}",
                                timeout=HANG_GUARD_S) as response:
        return json.loads(response.read())


def test_tensorboard_shows_every_decision_and_the_task_as_hyperparameters(
        tmp_path, shared_data_dir, tensorboard_server):
    """A user's view: a small real CLI run, then TensorBoard's own HTTP API."""
    exp = tmp_path / "exp"
    workdir = make_workdir(tmp_path, shared_data_dir)
    result = cli(command(workdir, exp, trials=1))
    assert result.returncode == 0, result.stderr
    url = tensorboard_server(exp / "tensorboard")

    experiment = _get(url, "/data/plugin/hparams/experiment",
                      request=json.dumps({"experimentName": ""}))
    columns = {info["name"]: info for info in experiment["hparamInfos"]}
    space = SearchSpace(["glove"])
    assert sorted(columns) == sorted([d.name for d in space.decisions] + ["task", "searcher"])
    assert len(space.decisions) == 12
    assert columns["task"]["domainDiscrete"] == TASKS
    assert columns["num_layers"]["domainDiscrete"] == [1, 2, 3, 5, 7]
    assert columns["deep_l2"]["domainDiscrete"][-1] == "disable"
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= {"valid_accuracy", "reward"}

    groups = _get(url, "/data/plugin/hparams/session_groups", request=json.dumps(
        {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
         "colParams": [{"hparam": name} for name in columns], "startIndex": 0,
         "sliceSize": 100}))
    assert groups["totalSize"] == len(TASKS)  # one session per trial, every column filled
    for group in groups["sessionGroups"]:
        assert set(group["hparams"]) == set(columns)
        assert group["hparams"]["task"] in TASKS

    tags = _get(url, "/data/plugin/scalars/tags")
    for task in TASKS:
        assert {"reward", "accuracy_top10/valid", "accuracy_top10/test",
                "trials_per_minute"} <= set(tags[f"tasks/{task}"])
