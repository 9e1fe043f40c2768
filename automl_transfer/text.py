"""Text normalisation and tokenisation shared by embedding modules and the child's wide tower.

The paper's modules lower-case the input, strip rare characters and split on white space. One
definition here keeps a module's vocabulary and a task's vocabulary in agreement. The same rule is
written twice: in Python (for building vocabularies) and in TensorFlow ops (inside SavedModels,
which must not depend on Python code); tests check they agree.
"""
import re

import tensorflow as tf

# Letters (any script), digits and the apostrophe survive; everything else separates tokens.
_SEPARATORS = r"[^\p{L}\p{N}']+"
_PY_SEPARATORS = re.compile(r"[^\w']+|_+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased tokens of one string, rare characters stripped."""
    return [t for t in _PY_SEPARATORS.split(text.lower()) if t and t != "'"]


def tf_tokenize(texts: tf.Tensor) -> tf.RaggedTensor:
    """The same rule as `tokenize`, in TensorFlow ops, for a batch of strings."""
    lowered = tf.strings.lower(texts, encoding="utf-8")
    spaced = tf.strings.regex_replace(lowered, _SEPARATORS, " ")
    tokens = tf.strings.split(spaced)
    keep = tf.not_equal(tokens, "'")
    return tf.ragged.boolean_mask(tokens, keep)
