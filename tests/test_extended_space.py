"""The extended search space: the paper space unchanged, the wide tower's n-gram / weighting /
vocabulary features on a tiny real task, the space recorded with stores and controllers and
refused across spaces, and real short CLI runs of random search and TPE in it.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import HANG_GUARD_S
from conftest import write_glove2k, write_task_sample

from automl_transfer.child.evaluate import TaskRef, evaluate
from automl_transfer.child.features import task_features, terms, wide_features
from automl_transfer.child.model import _bag_lookup
from automl_transfer.errors import ResumeError, UserError
from automl_transfer.experiment import open_store
from automl_transfer.search_space import Config, SearchSpace
from automl_transfer.searchers.controller_searcher import ControllerSearcher
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.searchers.tpe import TPESearcher
from automl_transfer.store import STORE_FILE, TrialStore
from automl_transfer.trial import Status

REPO_ROOT = Path(__file__).resolve().parent.parent
# The paper space's fingerprint before the extended space existed: saved controllers and stores
# check it, so it must never change.
PAPER_FINGERPRINT = {("a", "b"): "a62a8d4226c1c9d5"}
TRIALS = 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data_dir) -> Path:
    root = tmp_path_factory.mktemp("extended")
    write_task_sample(shared_data_dir, "subj", 300, root / "subj.csv")
    write_glove2k(shared_data_dir, root / "glove2k")
    return root


def test_paper_fingerprint_is_unchanged_and_the_extended_one_differs():
    for modules, fingerprint in PAPER_FINGERPRINT.items():
        paper, extended = SearchSpace(modules), SearchSpace(modules, "extended")
        assert paper.fingerprint() == fingerprint
        assert extended.fingerprint() != fingerprint
        assert len(paper) == 12 and len(extended) == 15
        assert SearchSpace.from_json(extended.to_json()).name == "extended"
        assert SearchSpace.from_json(paper.to_json()).name == "paper"


def test_paper_configurations_are_stored_as_before_and_extended_ones_are_not_paper():
    paper, extended = SearchSpace(["a"]), SearchSpace(["a"], "extended")
    config = paper.to_config(paper.sample_actions(np.random.default_rng(0)))
    assert "wide_ngrams" not in config.to_json()  # stored as by the code before the flag
    assert Config.from_json(config.to_json()) == config
    wide = extended.to_config([0] * 12 + [1, 1, 2])
    assert (wide.wide_ngrams, wide.wide_weighting, wide.wide_vocab_size) == (2, "tfidf", 300_000)
    assert Config.from_json(wide.to_json()) == wide
    assert extended.to_actions(wide) == [0] * 12 + [1, 1, 2]
    with pytest.raises(ValueError, match="not in the paper search space"):
        paper.to_actions(wide)


def test_bigram_tfidf_features_on_a_real_task(workdir):
    task = TaskRef(str(workdir / "subj.csv"))
    unigrams = wide_features(task, 1, "binary", 30_000)
    bigrams = wide_features(task, 2, "tfidf", 300_000)
    assert all(" " not in term for term in unigrams.vocab)
    bigram_ids = {i for i, term in enumerate(bigrams.vocab) if " " in term}
    train = bigrams.bags["train"]
    assert bigram_ids and bigram_ids & set(train.values.tolist())
    assert unigrams.bags["train"].weights is None
    # One document by hand: its unique in-vocabulary terms, tf * idf, l2-normalised.
    doc = task_features(task).tokens["train"][0]
    index = {term: i for i, term in enumerate(bigrams.vocab)}
    ids = sorted({index[t] for t in terms(doc, 2) if t in index})
    start, end = train.row_splits[0], train.row_splits[1]
    assert train.values[start:end].tolist() == ids
    raw = np.array([terms(doc, 2).count(bigrams.vocab[i]) * bigrams.idf[i] for i in ids])
    np.testing.assert_allclose(train.weights[start:end], raw / np.linalg.norm(raw), rtol=1e-5)
    # A smaller vocabulary is a prefix of the ranking: its ids are the ones below its size.
    small = wide_features(task, 2, "binary", 50)
    assert small.vocab == bigrams.vocab[:50]
    assert set(small.bags["train"].values.tolist()) == {v for v in train.values.tolist() if v < 50}


def test_weighted_wide_lookup_has_a_sparse_gradient():
    table = tf.Variable(np.ones((10, 2), np.float32))
    values, splits = tf.constant([1, 4, 4, 7], tf.int64), tf.constant([0, 1, 4], tf.int64)
    with tf.GradientTape() as tape:
        out = _bag_lookup(table, values, splits, mean=False,
                          weights=tf.constant([1.0, 0.5, 0.25, 2.0]))
        loss = tf.reduce_sum(out)
    np.testing.assert_allclose(out.numpy(), [[1.0, 1.0], [2.75, 2.75]])
    gradient = tape.gradient(loss, table)
    assert isinstance(gradient, tf.IndexedSlices)
    assert sorted(gradient.indices.numpy().tolist()) == [1, 4, 4, 7]


@pytest.mark.parametrize("setting", [(2, "tfidf", 300_000), (2, "binary", 100_000),
                                     (1, "tfidf", 30_000)])
def test_extended_child_trains_on_a_real_task(workdir, setting):
    ngrams, weighting, vocab = setting
    config = Config(module="glove", fine_tune=False, num_layers=1, layer_size=8,
                    activation="relu", normalization="none", dropout=0.0,
                    deep_learning_rate=0.1, deep_l2="disable", wide_learning_rate=0.3, wide_l1=0.0,
                    train_samples=3000, wide_ngrams=ngrams, wide_weighting=weighting,
                    wide_vocab_size=vocab)
    task = TaskRef(str(workdir / "subj.csv"))
    result = evaluate(config, task, {}, seed=0)
    assert result.status == Status.COMPLETED, result.error
    labels = task_features(task).labels["valid"]
    majority = np.mean(labels == np.argmax(np.bincount(task_features(task).labels["train"])))
    assert result.valid_accuracy > majority


def test_a_store_without_a_space_is_a_paper_store(tmp_path):
    old = {"mode": "random", "tasks": ["t"], "seed": 0, "trials_per_task": 5}  # today's settings
    open_store(tmp_path, old).close()
    with pytest.raises(ResumeError, match="space='paper', not 'extended'"):
        open_store(tmp_path, {**old, "space": "extended"})
    store = open_store(tmp_path, {**old, "space": "paper"})
    assert store.get_meta("settings")["space"] == "paper"  # recorded from now on
    store.close()


def test_a_controller_of_one_space_is_refused_in_the_other(tmp_path):
    paper = SearchSpace(["glove"])
    ControllerSearcher(paper, 0, ["a"]).save(str(tmp_path))
    with pytest.raises(UserError, match="saved for --space=paper, this run uses --space=extended"):
        ControllerSearcher.from_saved(tmp_path, ["b"], 0, space=SearchSpace(["glove"], "extended"))
    assert ControllerSearcher.from_saved(tmp_path, ["b"], 0).space.name == "paper"
    extended = ControllerSearcher(SearchSpace(["glove"], "extended"), 0, ["a"])
    trial = extended.suggest(0, "a", ["glove"])
    assert len(trial.actions) == 15 and trial.config.wide_vocab_size in (30_000, 100_000, 300_000)


def _cheap_seed(make_searcher) -> int:
    """A seed whose first TRIALS suggestions all train at most 100 steps (TPE's first trials are
    random and independent of rewards, so suggesting without results predicts them)."""
    space = SearchSpace(["glove"], "extended")
    for seed in range(1000):
        searcher = make_searcher(space, seed)
        if all(searcher.suggest(i, "subj", ["glove"]).config.train_steps <= 100
               for i in range(TRIALS)):
            return seed
    raise AssertionError("no cheap seed")


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "run_experiment.py"), *args],
                          capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)


@pytest.mark.parametrize("mode, make_searcher", [("random", RandomSearcher), ("tpe", TPESearcher)])
def test_cli_runs_in_the_extended_space(workdir, mode, make_searcher):
    seed = _cheap_seed(make_searcher)
    experiment = workdir / f"exp_{mode}"
    common = [f"--tasks={workdir / 'subj.csv'}", f"--trials={TRIALS}", f"--seed={seed}",
              f"--module_handles=glove={workdir / 'glove2k'}", "--tensorboard=false",
              "--max_in_flight=1"]
    done = _cli(f"--mode={mode}", "--space=extended", f"--experiment_dir={experiment}", *common)
    assert done.returncode == 0, done.stderr
    assert "space=extended" in done.stdout and "subj: 3 trials" in done.stdout
    # The stored trials are the searcher's suggestions (TPE's first ones are its random start).
    expected = make_searcher(SearchSpace(["glove"], "extended"), seed)
    with TrialStore(experiment / STORE_FILE) as store:
        stored = store.trials()
    assert [t.config for t in stored] == [expected.suggest(i, "subj", ["glove"]).config
                                          for i in range(TRIALS)]
    assert all(t.result.status == Status.COMPLETED for t in stored)
    refused = _cli(f"--mode={mode}", "--space=paper", f"--experiment_dir={experiment}", *common)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "space='extended', not 'paper'" in last
