"""The served model computes exactly what the trained child computes, from raw strings.

Real child, real tiny sms_spam cut and real GloVe rows (fixtures shared with test_child): for
each kind of deep tower (frozen or fine-tuned restricted table, frozen or fine-tuned generic
module), wide-only, each normalisation and the extended space's wide settings (bigrams, tf-idf), the ServingModel's probabilities on the raw
validation and test texts equal the softmax of the child's own inference logits.
"""
import numpy as np
import pytest
import tensorflow as tf
from test_child import generic_handle, glove_rows, handles, make_config, task  # noqa: F401 (fixtures)

from automl_transfer.child.evaluate import trained_child
from automl_transfer.serving import ServingModel
from automl_transfer.tasks import load_task
from automl_transfer.trial import Status

CASES = {
    "frozen_table": dict(),
    "fine_tuned_table": dict(fine_tune=True),
    "wide_only": dict(deep_l2="disable"),
    "deep_only_batch_norm_swish": dict(wide_l1="disable", normalization="batch",
                                       activation="swish", num_layers=2, dropout=0.2),
    "layer_norm": dict(normalization="layer"),
    "generic_frozen": dict(),
    "generic_fine_tuned": dict(fine_tune=True),
    # The extended space's wide settings: bigram terms, tf-idf weights, a larger vocabulary.
    "wide_bigrams_binary": dict(deep_l2="disable", wide_ngrams=2, wide_vocab_size=100_000),
    "wide_bigrams_tfidf": dict(wide_ngrams=2, wide_weighting="tfidf", wide_vocab_size=300_000),
    "wide_unigrams_tfidf": dict(deep_l2="disable", wide_weighting="tfidf"),
}


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_serving_model_equals_the_trained_child(task, handles, generic_handle, case):
    module = {"glove": generic_handle} if case.startswith("generic") else handles
    config = make_config(train_samples=2000, **CASES[case])
    label_names = load_task(task.name).label_names
    with trained_child(config, task, module, seed=3) as (child, result):
        assert result.status == Status.COMPLETED, result.error
        model = ServingModel(child, label_names)
        for split, accuracy in (("valid", result.valid_accuracy), ("test", result.test_accuracy)):
            out = model.serve(tf.constant(child.task.texts[split]))
            probabilities = out["probabilities"].numpy()
            np.testing.assert_allclose(probabilities, _softmax(child.logits(split)), atol=1e-5)
            labels = [v.decode() for v in out["label"].numpy()]
            assert labels == [label_names[i] for i in probabilities.argmax(axis=1)]
            truth = [label_names[i] for i in child.task.labels[split]]
            assert np.mean(np.array(labels) == np.array(truth)) == accuracy
