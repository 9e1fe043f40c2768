"""TrialStore: round trip, plain-sqlite3 readability, meta, and the commit-order view."""
import math
import sqlite3

import numpy as np
import pytest

from automl_transfer.search_space import SearchSpace
from automl_transfer.store import SEARCHER_STATE_KEY, TrialStore
from automl_transfer.trial import Status, Trial, TrialResult

SPACE = SearchSpace(["en-a", "en-b"])


def _trial(trial_id: int, task: str = "t1", valid: float = 0.5, status: Status = Status.COMPLETED
           ) -> Trial:
    actions = SPACE.sample_actions(np.random.default_rng(trial_id))
    return Trial(trial_id=trial_id, task=task, config=SPACE.to_config(actions), seed=trial_id * 7,
                 searcher="random", actions=tuple(actions), log_prob=-3.5,
                 result=TrialResult(status, valid, valid - 0.1, 0.1, 1.5, 0.2, 100,
                                    error="" if status == Status.COMPLETED else "boom"))


def test_round_trip_keeps_every_field(tmp_path):
    trials = [_trial(2, "t2", 0.7), _trial(0, "t1", 0.9), _trial(1, "t1", 0.0, Status.FAILED)]
    with TrialStore(tmp_path / "trials.sqlite") as store:
        for trial in trials:
            store.record(trial)
    with TrialStore(tmp_path / "trials.sqlite") as store:  # reopened: nothing was only in memory
        assert store.trials() == sorted(trials, key=lambda t: t.trial_id)
        assert [t.trial_id for t in store.trials(task="t1")] == [0, 1]
        assert store.finished_ids() == {0, 1, 2}
        assert store.trials(task="t1")[1].result.error == "boom"


def test_plain_sqlite3_reads_the_file_with_the_trial_row_columns(tmp_path):
    trial = _trial(5, "sms_spam", 0.875)
    with TrialStore(tmp_path / "trials.sqlite") as store:
        store.record(trial, searcher_state={"state": {"n": 1}, "trials_seen": 1, "last_trial_id": 5})
    db = sqlite3.connect(tmp_path / "trials.sqlite")
    columns = [row[1] for row in db.execute("PRAGMA table_info(trials)")]
    assert columns == list(trial.to_row()) + ["finished_at"]
    task, valid, config, finished_at = db.execute(
        "SELECT task, valid_accuracy, config, finished_at FROM trials").fetchone()
    assert (task, valid, config) == ("sms_spam", 0.875, trial.config.to_json())
    assert finished_at.startswith("20")
    (state,) = db.execute("SELECT value FROM meta WHERE key = ?", (SEARCHER_STATE_KEY,)).fetchone()
    assert '"last_trial_id": 5' in state


def test_record_replaces_a_trial_with_the_same_id_and_refuses_pending_ones(tmp_path):
    with TrialStore(tmp_path / "s.sqlite") as store:
        store.record(_trial(0, valid=0.1))
        store.record(_trial(0, valid=0.6))
        assert [t.result.valid_accuracy for t in store.trials()] == [0.6]
        with pytest.raises(ValueError, match="no result"):
            store.record(Trial(1, "t1", _trial(1).config, 0, "random"))


def test_meta_values_are_json_and_commit_order_is_kept(tmp_path):
    with TrialStore(tmp_path / "s.sqlite") as store:
        assert store.get_meta("settings") is None
        store.set_meta("settings", {"tasks": ["a", "b"], "seed": 3, "nan": None})
        for trial_id in (3, 1, 2):  # out of id order, as when several trials are in flight
            store.record(_trial(trial_id))
        assert store.get_meta("settings") == {"tasks": ["a", "b"], "seed": 3, "nan": None}
        assert [t.trial_id for t in store.trials_in_commit_order()] == [3, 1, 2]
        assert [t.trial_id for t in store.trials()] == [1, 2, 3]
        assert not math.isnan(store.trials()[0].result.test_accuracy)
