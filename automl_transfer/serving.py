"""A trained child as a self-contained SavedModel: raw strings in, class probabilities out.

`ServingModel` wraps a trained `WideDeepChild` in a tf.Module whose `serve` turns raw strings into
exactly the inputs the child trained on, all in TensorFlow ops, and calls the child's own
inference (`_logits`), so the two cannot drift apart:
- tokens: `text.tf_tokenize`, the rule the Python tokeniser follows;
- wide tower: the wide vocabulary of the configuration's setting as a lookup table over each
  document's terms (tokens, and bigrams for n-gram range 2); its distinct known ids, weighted by
  count x idf and l2-normalised for tf-idf weighting, as `child.features.wide_features` computes;
- deep tower over one of our modules: the module's rows for the task's tokens (the "restricted"
  table) with a token -> row lookup table; a document's feature is the mean of its known rows.
  Tokens the task never contained have no row: the child never saw them either;
- deep tower over a generic TF-Hub module: the module itself, saved inside the model.
The SavedModel needs only TensorFlow: `tf.saved_model.load(dir).signatures["serving_default"]`
takes `text` (a batch of strings) and returns `probabilities` [batch, classes] and `label`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import tensorflow as tf

from automl_transfer.child.model import WideDeepChild, _bag_lookup
from automl_transfer.predict import SIGNATURE
from automl_transfer.text import tf_tokenize


def _lookup_table(tokens: Sequence[str]) -> tf.lookup.StaticHashTable:
    """token -> its index in `tokens`, -1 for any other token."""
    # Tokens are never empty, so a placeholder key keeps an empty vocabulary a valid table.
    keys = list(tokens) or [""]
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, tf.string), tf.range(len(keys), dtype=tf.int64))
    return tf.lookup.StaticHashTable(initializer, default_value=-1)


def _known(ids: tf.RaggedTensor) -> tf.RaggedTensor:
    return tf.ragged.boolean_mask(ids, ids >= 0)


class ServingModel(tf.Module):
    """Serves a trained child; keep the child's module unrestored until it is saved."""

    def __init__(self, child: WideDeepChild, class_names: Sequence[str]):
        super().__init__()
        self._child = child  # plain Python: its variables are tracked through `weights` below
        self.class_names = tf.constant(list(class_names), tf.string)
        self.weights = child.deep_vars + child.wide_vars + [
            layer[key] for layer in child.layers for key in ("moving_mean", "moving_var") if key in layer]
        module = child.module
        self.restricted = child.deep and module.restricted
        if self.restricted:
            self.token_rows = _lookup_table(module.table_tokens)
            # Fine-tuned: the child's trained copy; frozen: the module's rows, as the child used them.
            self.table = child.table if child.tune_table else tf.Variable(module.table, trainable=False)
        elif child.deep:
            self.text_module = module.module
        if child.wide:
            wide = child.wide_features
            self.wide_ids = _lookup_table(wide.vocab)
            self.wide_size = tf.constant(max(1, wide.size), tf.int64)
            self.wide_idf = None if wide.idf is None else tf.constant(wide.idf, tf.float32)

    def _inputs(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """The child's inputs (keys as `WideDeepChild.inputs_for`) of a batch of raw strings."""
        child, inputs = self._child, {}
        tokens = tf_tokenize(text)
        if self.restricted:
            rows = _known(self.token_rows.lookup(tokens))
            if child.tune_table:
                inputs.update(ids=rows.values, id_splits=rows.row_splits)
            else:
                inputs["dense"] = _bag_lookup(self.table, rows.values, rows.row_splits, mean=True)
        elif child.tune_module:
            inputs["texts"] = text
        elif child.deep:
            inputs["dense"] = self.text_module(text)
        if child.wide:
            inputs.update(self._wide_bags(tokens, tf.size(text, out_type=tf.int64)))
        return inputs

    def _wide_bags(self, tokens: tf.RaggedTensor, num_docs: tf.Tensor) -> dict[str, tf.Tensor]:
        """Each document's distinct known wide ids, ascending, with their tf-idf weights when the
        setting weights them (as the task's wide bags)."""
        terms = tokens
        if self._child.config.wide_ngrams == 2:
            terms = tf.concat([tokens, tf.strings.ngrams(tokens, 2, separator=" ")], axis=1)
        ids = _known(self.wide_ids.lookup(terms))
        keys, _, counts = tf.unique_with_counts(ids.value_rowids() * self.wide_size + ids.values)
        order = tf.argsort(keys)
        keys, counts = tf.gather(keys, order), tf.gather(counts, order)
        rows = keys // self.wide_size
        bags = tf.RaggedTensor.from_value_rowids(keys % self.wide_size, rows, nrows=num_docs)
        inputs = {"wide": bags.values, "wide_splits": bags.row_splits}
        if self.wide_idf is not None:
            weights = tf.cast(counts, tf.float32) * tf.gather(self.wide_idf, bags.values)
            norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(weights), rows, num_docs))
            inputs["wide_weights"] = weights / tf.gather(norms, rows)
        return inputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        """Class probabilities and the most likely class name of each string."""
        probabilities = tf.nn.softmax(self._child._logits(self._inputs(text), training=False))
        return {"probabilities": probabilities,
                "label": tf.gather(self.class_names, tf.argmax(probabilities, axis=1))}


def save_serving_model(child: WideDeepChild, class_names: Sequence[str], directory: str | Path) -> None:
    """Write the child as a SavedModel with a `serving_default` signature (see the module doc)."""
    model = ServingModel(child, class_names)
    tf.saved_model.save(model, str(directory), signatures={SIGNATURE: model.serve})

