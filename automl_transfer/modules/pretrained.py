"""Import a published embedding table (vocab.txt + vectors.npy) under our text normalisation.

A module only ever sees tokens that automl_transfer.text.tokenize produces, so a source word is
kept only if, lower-cased, it is one whole token ("Apple" -> "apple"); phrases ("crown_prince"),
words with digits written "#" ("###th") and punctuation are dropped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from automl_transfer.errors import UserError
from automl_transfer.text import tokenize


def normalise_vocabulary(words: list[str]) -> list[tuple[int, str]]:
    """(source row, token) pairs for the words a module can be asked for, in source order.

    When several source words share a token ("Apple", "apple", "APPLE") the first one in the
    source wins (GloVe is in frequency order), except that a word already equal to its token
    beats cased variants (GoogleNews is alphabetical, so "Apple" would otherwise shadow "apple").
    """
    chosen: dict[str, tuple[int, bool]] = {}
    for row, word in enumerate(words):
        token = word.lower()
        if tokenize(word) != [token]:
            continue
        exact = word == token
        if token not in chosen or (exact and not chosen[token][1]):
            chosen[token] = (row, exact)
    return sorted((row, token) for token, (row, _) in chosen.items())


def load_pretrained_table(directory: str | Path) -> tuple[list[str], np.ndarray]:
    """(vocabulary, table) of a published table in `directory`, normalised as tokenize does."""
    directory = Path(directory)
    try:
        words = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
        vectors = np.load(directory / "vectors.npy")
    except OSError as err:
        raise UserError(f"{directory}: cannot read vocab.txt / vectors.npy ({err})") from None
    if words and words[-1] == "":
        words = words[:-1]
    if len(words) != len(vectors):
        raise UserError(f"{directory}: vocab.txt has {len(words)} words, "
                        f"vectors.npy {len(vectors)} rows")
    kept = normalise_vocabulary(words)
    rows = np.array([row for row, _ in kept], dtype=np.int64)
    return [token for _, token in kept], np.asarray(vectors[rows], dtype=np.float32)
