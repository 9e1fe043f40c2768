"""Our text-embedding SavedModel, in the TF-Hub text-embedding format.

A batch of strings in, one mean-bag-of-words vector per string out (the paper's modules: lower-case,
strip rare characters, split, look up, average; unknown tokens are skipped, an empty string gives
zeros). Besides the `default` signature it exports `token_ids` (token -> table row, -1 if unknown)
so a child can restrict a fine-tuned table to a task's vocabulary instead of updating the whole
table densely. It subclasses tf.train.Checkpoint because tf.Module's `variables` is read-only and
TF-Hub's reusable-SavedModel interface wants `variables`, `trainable_variables` and
`regularization_losses` attributes.
"""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np
import tensorflow as tf

from automl_transfer.text import tf_tokenize

VOCAB_ASSET = "vocab.txt"


class TextEmbeddingModule(tf.train.Checkpoint):
    """Mean bag-of-words over a fixed vocabulary and a trainable table."""

    def __init__(self, vocab_file: str, table: np.ndarray):
        super().__init__()
        self.vocab_asset = tf.saved_model.Asset(vocab_file)
        initializer = tf.lookup.TextFileInitializer(
            self.vocab_asset, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
        self.lookup = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self.embeddings = tf.Variable(np.asarray(table, np.float32), name="embeddings")
        self.variables = [self.embeddings]
        self.trainable_variables = [self.embeddings]
        self.regularization_losses = []

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        ids = self.lookup.lookup(tf_tokenize(texts))
        ids = tf.ragged.boolean_mask(ids, ids >= 0)
        vectors = tf.gather(self.embeddings, ids)  # ragged [batch, tokens, dim]
        counts = tf.cast(tf.expand_dims(ids.row_lengths(), 1), tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(vectors, axis=1), counts)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def token_ids(self, tokens: tf.Tensor) -> tf.Tensor:
        """Row of each (already normalised) token in `embeddings`, -1 where unknown."""
        return self.lookup.lookup(tokens)


def export_text_module(directory: str, vocab: Sequence[str], table: np.ndarray) -> str:
    """Write a TextEmbeddingModule SavedModel to `directory` (created) and return it.

    `vocab[i]` names row i of `table`; tokens must already be normalised as text.tokenize does.
    """
    if len(vocab) != len(table):
        raise ValueError(f"vocabulary has {len(vocab)} words but the table has {len(table)} rows")
    if any("\n" in w or not w for w in vocab):
        raise ValueError("vocabulary words must be non-empty and contain no newline")
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocabulary words must be unique")
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        vocab_file = os.path.join(staging, VOCAB_ASSET)  # the asset keeps this base name
        with open(vocab_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(vocab) + "\n")
        module = TextEmbeddingModule(vocab_file, table)
        tf.saved_model.save(module, directory, signatures={"default": module.__call__})
    return directory
