"""The child end to end on tiny real data: a cut of sms_spam and a 2000-word real GloVe module."""
import csv
import dataclasses
import gzip
import pickle

import numpy as np
import pytest
import tensorflow as tf

from automl_transfer.child.evaluate import TaskRef, evaluate
from automl_transfer.child.features import module_features, task_features, wide_features
from automl_transfer.child.model import WideDeepChild
from automl_transfer.errors import UserError
from automl_transfer.modules.loading import load_module
from automl_transfer.modules.text_embedding import TextEmbeddingModule, export_text_module
from automl_transfer.search_space import Config
from automl_transfer.text import tokenize
from automl_transfer.trial import Status

ROWS = 600
MODULE_WORDS = 2000


@pytest.fixture(scope="module")
def task(shared_data_dir, tmp_path_factory) -> TaskRef:
    with gzip.open(shared_data_dir / "text" / "sms_spam" / "data.csv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:ROWS]
    path = tmp_path_factory.mktemp("task") / "spam.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return TaskRef(name=str(path))


@pytest.fixture(scope="module")
def glove_rows(shared_data_dir) -> tuple[list[str], np.ndarray]:
    """The first MODULE_WORDS real GloVe words that are single tokens, and their vectors."""
    source = shared_data_dir / "embeddings" / "glove-6b-50d-top50k"
    words = (source / "vocab.txt").read_text(encoding="utf-8").split("\n")
    vectors = np.load(source / "vectors.npy")
    keep = [i for i, w in enumerate(words[:len(vectors)]) if tokenize(w) == [w]][:MODULE_WORDS]
    return [words[i] for i in keep], vectors[keep]


@pytest.fixture(scope="module")
def handles(glove_rows, tmp_path_factory) -> dict[str, str]:
    directory = str(tmp_path_factory.mktemp("module") / "glove")
    return {"glove": export_text_module(directory, *glove_rows)}


def make_config(**overrides) -> Config:
    values = dict(module="glove", fine_tune=False, num_layers=1, layer_size=32, activation="relu",
                  normalization="none", dropout=0.0, deep_learning_rate=0.1, deep_l2=0.0,
                  wide_learning_rate=0.1, wide_l1=0.0, train_samples=10000)
    values.update(overrides)
    return Config(**values)


def majority_accuracy(task: TaskRef) -> float:
    feats = task_features(task)
    return float(np.mean(feats.labels["valid"] == feats.majority_class))


@pytest.mark.parametrize("overrides", [
    dict(fine_tune=False), dict(fine_tune=True), dict(deep_l2="disable"),
    dict(wide_l1="disable", num_layers=2, normalization="batch", dropout=0.1),
], ids=["frozen", "fine-tuned", "wide-only", "deep-only"])
def test_child_beats_majority_class(task, handles, overrides):
    result = evaluate(make_config(**overrides), task, handles, seed=0)
    assert result.status == Status.COMPLETED, result.error
    assert result.steps == 100
    assert result.valid_accuracy > majority_accuracy(task)
    assert result.train_time_s > 0 and result.eval_time_s > 0


def test_both_towers_disabled_predicts_majority_class(task, handles):
    result = evaluate(make_config(deep_l2="disable", wide_l1="disable"), task, handles, seed=0)
    feats = task_features(task)
    assert result.status == Status.COMPLETED and result.steps == 0
    assert result.valid_accuracy == majority_accuracy(task)
    assert result.test_accuracy == float(np.mean(feats.labels["test"] == feats.majority_class))


def test_exploding_child_is_diverged(task, glove_rows, tmp_path):
    # Adagrad's step is bounded by the learning rate, so no configuration of the space has made a
    # child diverge here on its own; a real module with huge (finite) vectors makes the forward
    # pass overflow, as a badly scaled module would.
    words, vectors = glove_rows
    huge = export_text_module(str(tmp_path / "huge"), words, vectors * 1e36)
    config = make_config(num_layers=3, layer_size=256, deep_learning_rate=3.0, wide_learning_rate=3.0,
                         train_samples=1000)
    result = evaluate(config, task, {"glove": huge}, seed=0)
    assert result.status == Status.DIVERGED
    assert result.valid_accuracy == 0.0 and result.test_accuracy == 0.0 and result.reward == 0.0


def test_missing_module_directory_is_failed_with_its_error(task, tmp_path):
    result = evaluate(make_config(), task, {"glove": str(tmp_path / "nowhere")}, seed=0)
    assert result.status == Status.FAILED and result.reward == 0.0
    assert result.error.startswith("ModuleError:") and "does not exist" in result.error
    assert "\n" not in result.error


def test_unknown_task_propagates_user_error(handles, tmp_path):
    with pytest.raises(UserError):
        evaluate(make_config(), TaskRef(str(tmp_path / "missing.csv")), handles, seed=0)


def test_same_seed_same_metrics(task, handles):
    config = make_config(fine_tune=True, num_layers=2, normalization="batch", dropout=0.3,
                         train_samples=3000)
    first, second = (evaluate(config, task, handles, seed=7) for _ in range(2))
    assert first.status == Status.COMPLETED
    assert (first.valid_accuracy, first.test_accuracy, first.steps) == \
        (second.valid_accuracy, second.test_accuracy, second.steps)
    a, b = (WideDeepChild(config, task_features(task), module_features(task, handles["glove"]),
                          wide_features(task, *config.wide_setting()), seed=3) for _ in range(2))
    batches = np.random.default_rng(0).integers(len(task_features(task).labels["train"]), size=(20, 100))
    np.testing.assert_array_equal(a.train_and_score(batches)[2], b.train_and_score(batches)[2])


@pytest.mark.parametrize("chunk_steps", [1, 7, 20])
def test_training_in_chunks_gives_the_one_call_result(task, handles, chunk_steps):
    # A stop signal acts between chunks; chunking must not change what a seed gives.
    config = make_config(fine_tune=True, num_layers=2, normalization="batch", dropout=0.3)
    batches = np.random.default_rng(0).integers(len(task_features(task).labels["train"]), size=(20, 100))
    results = [WideDeepChild(config, task_features(task), module_features(task, handles["glove"]),
                             wide_features(task, *config.wide_setting()), seed=3
                             ).train_and_score(batches, chunk_steps=chunk) for chunk in (len(batches), chunk_steps)]
    (steps, finite, valid, test), (chunked_steps, chunked_finite, chunked_valid, chunked_test) = results
    assert (steps, finite) == (chunked_steps, chunked_finite) == (20, True)
    np.testing.assert_array_equal(valid, chunked_valid)
    np.testing.assert_array_equal(test, chunked_test)


def test_a_loss_gone_non_finite_in_an_early_chunk_ends_training_there(task, glove_rows, tmp_path):
    words, vectors = glove_rows
    infinite = export_text_module(str(tmp_path / "infinite"), words, np.full_like(vectors, np.inf))
    config = make_config()
    child = WideDeepChild(config, task_features(task), module_features(task, infinite),
                          wide_features(task, *config.wide_setting()), seed=0)
    batches = np.random.default_rng(0).integers(len(task_features(task).labels["train"]), size=(30, 100))
    steps, finite, valid, test = child.train_and_score(batches, chunk_steps=5)
    assert not finite and steps == 1  # the first step's loss is NaN: no later step, no later chunk
    assert valid.shape == (len(task_features(task).labels["valid"]), task_features(task).num_classes)
    assert test.shape[0] == len(task_features(task).labels["test"])


@pytest.mark.parametrize("overrides", [dict(fine_tune=True), dict(wide_l1="disable"), dict(deep_l2="disable")])
def test_a_trial_leaves_no_child_behind_for_the_garbage_collector(task, handles, overrides):
    """A child and its graph's objects form reference cycles holding its copies of the task's
    data; left to Python's automatic collection, a big task's process grew trial after trial."""
    import gc

    gc.collect()
    gc.disable()  # what evaluate leaves behind must be gone now, not whenever a collection runs
    try:
        result = evaluate(make_config(train_samples=2000, **overrides), task, handles, seed=0)
        assert result.status == Status.COMPLETED, result.error
        assert not [o for o in gc.get_objects() if isinstance(o, WideDeepChild)]
    finally:
        gc.enable()


def test_frozen_features_equal_module_output(task, handles):
    feats = module_features(task, handles["glove"])
    module = load_module(handles["glove"])
    for split in ("train", "valid"):
        expected = module(tf.constant(task_features(task).texts[split])).numpy()
        np.testing.assert_allclose(feats.frozen[split], expected, rtol=1e-5, atol=1e-6)
    assert module_features(task, handles["glove"]) is feats  # computed once, reused


def test_fine_tuning_changes_only_restricted_rows_of_batch_tokens(task, handles):
    feats, mod = task_features(task), module_features(task, handles["glove"])
    assert mod.table.shape[0] < MODULE_WORDS  # restricted to tokens of the task
    before_module = load_module(handles["glove"]).embeddings.numpy().copy()
    child = WideDeepChild(make_config(fine_tune=True, wide_l1="disable"), feats, mod, None, seed=0)
    batches = np.random.default_rng(1).integers(len(feats.labels["train"]), size=(5, 100))
    steps, finite, _, _ = child.train_and_score(batches)
    assert steps == 5 and finite
    changed = np.flatnonzero(np.any(child.table.numpy() != mod.table, axis=1))
    bags = mod.bags["train"]
    used = {int(i) for d in np.unique(batches) for i in bags.values[bags.row_splits[d]:bags.row_splits[d + 1]]}
    assert len(changed) > 0 and set(changed.tolist()) <= used
    np.testing.assert_array_equal(load_module(handles["glove"]).embeddings.numpy(), before_module)


def test_evaluate_and_task_ref_are_picklable(task):
    assert pickle.loads(pickle.dumps(evaluate)) is evaluate
    assert pickle.loads(pickle.dumps(task)) == task
    assert pickle.loads(pickle.dumps(dataclasses.replace(task, split_seed=3))).split_seed == 3


@pytest.fixture(scope="module")
def generic_handle(glove_rows, tmp_path_factory) -> str:
    """The same real rows as a module without `token_ids`: like a TF-Hub module, only __call__."""
    directory = tmp_path_factory.mktemp("generic")
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(glove_rows[0]) + "\n", encoding="utf-8")
    module = TextEmbeddingModule(str(vocab_file), glove_rows[1])
    module.token_ids = None  # not exported: the child must take the generic path
    tf.saved_model.save(module, str(directory / "module"), signatures={"default": module.__call__})
    return str(directory / "module")


def test_generic_module_frozen_and_fine_tuned(task, handles, generic_handle):
    generic = module_features(task, generic_handle)
    assert not generic.restricted
    np.testing.assert_allclose(generic.frozen["valid"], module_features(task, handles["glove"]).frozen["valid"],
                               rtol=1e-5, atol=1e-6)
    shared = load_module(generic_handle).embeddings
    before = shared.numpy().copy()
    for fine_tune in (False, True):
        result = evaluate(make_config(fine_tune=fine_tune, train_samples=2000), task,
                          {"glove": generic_handle}, seed=0)
        assert result.status == Status.COMPLETED and result.steps == 20, result.error
        assert result.valid_accuracy > majority_accuracy(task)
    np.testing.assert_array_equal(shared.numpy(), before)  # the shared module is left as loaded


def test_bag_helpers_match_numpy():
    from automl_transfer.child.features import Bags, mean_rows
    from automl_transfer.child.model import _bag_lookup, _gather_bags

    # ids with repeats kept, unweighted: [[0, 2, 2], [], [1], [3, 0]] (an empty document, a repeat)
    bags = Bags(values=np.array([0, 2, 2, 1, 3, 0]), row_splits=np.array([0, 3, 3, 4, 6]))
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    docs = tf.constant([3, 1, 3, 0], tf.int32)
    values, splits = _gather_bags(tf.constant(bags.values), tf.constant(bags.row_splits), docs)
    expected = [bags.values[bags.row_splits[d]:bags.row_splits[d + 1]] for d in docs.numpy()]
    np.testing.assert_array_equal(values, np.concatenate(expected))
    np.testing.assert_array_equal(splits, np.cumsum([0] + [len(e) for e in expected]))
    np.testing.assert_allclose(_bag_lookup(tf.constant(table), tf.constant(bags.values),
                                           tf.constant(bags.row_splits), mean=True), mean_rows(table, bags))
    sums = _bag_lookup(tf.constant(table), values, splits, mean=False).numpy()
    np.testing.assert_allclose(sums, [table[e].sum(axis=0) for e in expected])
    counted = Bags.counted([[0, 2, 2], [], [1], [3, 0]])  # distinct ids weighted by their counts
    np.testing.assert_array_equal(counted.values, [0, 2, 1, 0, 3])
    np.testing.assert_array_equal(counted.weights, [1, 2, 1, 1, 1])
    np.testing.assert_allclose(mean_rows(table, counted), mean_rows(table, bags), rtol=1e-6)
    np.testing.assert_allclose(_bag_lookup(tf.constant(table), tf.constant(counted.values),
                                           tf.constant(counted.row_splits), mean=True,
                                           weights=tf.constant(counted.weights)),
                               mean_rows(table, bags), rtol=1e-6)


def test_mean_rows_in_groups_of_ids_equals_the_whole_split_exactly():
    """Grouping documents (to bound the gathered rows' memory) changes no bit of the features."""
    from automl_transfer.child.features import Bags, mean_rows

    rng = np.random.default_rng(0)
    lists = [list(rng.integers(0, 40, size=rng.integers(0, 12))) for _ in range(60)]  # some empty
    bags = Bags.counted(lists)
    table = rng.normal(size=(40, 7)).astype(np.float32)
    whole = mean_rows(table, bags, chunk_values=len(bags.values) + 1)
    for chunk_values in (1, 5, 37):  # 1: every document alone, even those longer than a group
        np.testing.assert_array_equal(mean_rows(table, bags, chunk_values=chunk_values), whole)
    expected = [table[ids].mean(axis=0) if ids else np.zeros(7) for ids in lists]
    np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-6)


def test_swish_is_silu():
    from automl_transfer.child.model import _ACTIVATIONS

    h = tf.constant(np.linspace(-8, 8, 33, dtype=np.float32))
    np.testing.assert_allclose(_ACTIVATIONS["swish"](h), tf.nn.silu(h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("steps", [10, 1000], ids=["short-grappler-off", "long-grappler-on"])
def test_grappler_setting_is_restored_and_trials_stay_deterministic(task, handles, steps):
    from automl_transfer.child.model import GRAPPLER_MIN_STEPS

    assert 10 < GRAPPLER_MIN_STEPS <= 1000  # the two cases take the two paths
    config = make_config(normalization="batch", dropout=0.2, train_samples=steps * 100)
    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    first, second = (evaluate(config, task, handles, seed=5) for _ in range(2))
    assert first.status == Status.COMPLETED and first.steps == steps, first.error
    assert (first.valid_accuracy, first.test_accuracy) == (second.valid_accuracy, second.test_accuracy)
    assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False) == before
