"""The TPE searcher's contract: seeded, resumable like the others, blind to test accuracy, module
decision masked per task, and better than random on a reward it can model.

Trials are scored by `_score`, a deterministic function of the configuration (the loop and the
searcher are under test); the real child runs in test_extended_space.py's CLI run.
"""
import shutil

import numpy as np
import pytest

from automl_transfer.experiment import run_experiment, task_schedule
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.searchers.synthetic_reward import random_target, run_search
from automl_transfer.searchers.tpe import TPESearcher
from automl_transfer.trial import Status, Trial, TrialResult

MODULES = ["en-a", "en-b", "en-c", "img-d"]
ALLOWED = {"t1": ["en-a", "en-b", "en-c"], "t2": ["img-d"]}
TRIALS = 14  # per task: past the 10 random start-up trials, so TPE's model is used


def _score(trial: Trial, test_offset: float = 0.0) -> TrialResult:
    """Validation accuracy rises with the layer size and the wide learning rate; test accuracy
    is another number on purpose."""
    valid = trial.config.layer_size / 512 + trial.config.wide_learning_rate / 6
    return TrialResult(Status.COMPLETED, valid, 1.0 - valid + test_offset, steps=1)


def _run(exp_dir, trials=TRIALS, seed=0, space="extended", score=_score):
    tasks = list(ALLOWED)
    searcher = TPESearcher(SearchSpace(MODULES, space), seed)
    schedule = task_schedule(tasks, trials, seed, interleave=False)
    settings = {"mode": "tpe", "tasks": tasks, "seed": seed, "trials_per_task": trials}
    return run_experiment(exp_dir, searcher, schedule, ALLOWED, score, settings), searcher


def _configs(trials):
    return [(t.task, t.config, t.seed) for t in trials]


def test_same_seed_same_trials_other_seed_others(tmp_path):
    first, _ = _run(tmp_path / "a")
    second, _ = _run(tmp_path / "b")
    other, _ = _run(tmp_path / "c", seed=1)
    assert _configs(first) == _configs(second)
    assert _configs(first) != _configs(other)


def test_resume_continues_as_an_uninterrupted_run(tmp_path):
    uninterrupted, _ = _run(tmp_path / "whole")
    _run(tmp_path / "resumed", trials=11)
    resumed, searcher = _run(tmp_path / "resumed")  # a larger budget extends the run
    assert _configs(resumed) == _configs(uninterrupted)
    assert searcher.get_state() == {"observations": 2 * TRIALS}
    # Without its checkpoint the searcher is rebuilt from every committed trial.
    shutil.rmtree(tmp_path / "resumed" / "searcher")
    extended, _ = _run(tmp_path / "resumed", trials=TRIALS + 2)
    longer, _ = _run(tmp_path / "longer", trials=TRIALS + 2)
    assert _configs(extended) == _configs(longer)


def test_test_accuracy_never_changes_a_suggestion(tmp_path):
    plain, _ = _run(tmp_path / "a")
    shifted, _ = _run(tmp_path / "b", score=lambda trial: _score(trial, test_offset=0.5))
    assert _configs(plain) == _configs(shifted)
    assert [t.result.test_accuracy for t in plain] != [t.result.test_accuracy for t in shifted]


def test_module_decision_stays_within_each_tasks_modules(tmp_path):
    trials, _ = _run(tmp_path / "exp", space="paper")
    for trial in trials:
        assert trial.config.module in ALLOWED[trial.task]
    assert {t.config.module for t in trials if t.task == "t1"} == set(ALLOWED["t1"])
    assert all(len(t.actions) == 12 for t in trials)


def test_tpe_finds_better_configurations_than_random_search():
    space = SearchSpace(MODULES, "extended")
    target = {"t1": random_target(space, 0, ALLOWED["t1"])}
    budget = 60
    late = {}
    for searcher in (TPESearcher(space, 0), RandomSearcher(space, 0)):
        trials = run_search(searcher, target, budget, {"t1": ALLOWED["t1"]}, noise=0.0)
        late[searcher.name] = np.mean([t.result.reward for t in trials[budget // 2:]])
    assert late["tpe"] > late["random"] + 0.05


def test_update_refuses_a_trial_of_another_space():
    searcher = TPESearcher(SearchSpace(MODULES, "extended"), 0)
    paper = SearchSpace(MODULES)
    trial = RandomSearcher(paper, 0).suggest(0, "t1", ALLOWED["t1"])
    with pytest.raises(ValueError, match="not a finished trial of this space"):
        searcher.update([trial.with_result(_score(trial))])
