"""Train a skip-gram or CBOW table with gensim on tokenised real sentences."""
from __future__ import annotations

import numpy as np
from gensim.models import Word2Vec

ALGORITHMS = {"skipgram": 1, "cbow": 0}
SEED = 0
# One worker: gensim's result then depends only on the seed (and the machine has 2 shared cores).
WORKERS = 1


def train_table(sentences: list[list[str]], algorithm: str, dim: int, epochs: int,
                min_count: int, window: int) -> tuple[list[str], np.ndarray]:
    """(vocabulary in frequency order, float32 table) of a word2vec model trained on sentences."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown word2vec algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    model = Word2Vec(sentences=sentences, vector_size=dim, sg=ALGORITHMS[algorithm],
                     window=window, min_count=min_count, epochs=epochs, seed=SEED,
                     workers=WORKERS, negative=5, sample=1e-3)
    return list(model.wv.index_to_key), np.asarray(model.wv.vectors, dtype=np.float32)


def centre_and_normalise(table: np.ndarray) -> np.ndarray:
    """Rows minus the table mean, scaled to unit length.

    Raw word2vec rows share a common direction (tied to word frequency) that dominates a mean
    bag-of-words; removing it and equalising norms keeps what tells words apart.
    """
    centred = table - table.mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return (centred / np.maximum(norms, 1e-12)).astype(np.float32)
