"""A trained child as a self-contained SavedModel: raw strings in, class probabilities out.

`ServingModel` wraps a trained `WideDeepChild` in a tf.Module whose `serve` turns raw strings into
exactly the inputs the child trained on, all in TensorFlow ops, and calls the child's own
inference (`_logits`), so the two cannot drift apart:
- tokens: `text.tf_tokenize`, the rule the Python tokeniser follows;
- wide tower: the task's wide vocabulary as a lookup table; each document's distinct known ids;
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
            self.wide_ids = _lookup_table(child.task.wide_vocab)
            self.wide_size = tf.constant(max(1, len(child.task.wide_vocab)), tf.int64)

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
        """Each document's distinct known wide ids, ascending (as the task's wide bags)."""
        ids = _known(self.wide_ids.lookup(tokens))
        keys = tf.sort(tf.unique(ids.value_rowids() * self.wide_size + ids.values).y)
        bags = tf.RaggedTensor.from_value_rowids(keys % self.wide_size, keys // self.wide_size,
                                                 nrows=num_docs)
        return {"wide": bags.values, "wide_splits": bags.row_splits}

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

