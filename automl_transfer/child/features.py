"""Per-task and per-(task, module) inputs of the child, computed once per process and reused.

Every trial on a task needs the same tokenisation, wide-tower vocabulary and (for a frozen module)
the same mean embeddings; recomputing them per trial would cost more than training most children.
Documents are stored as ragged id lists (flat `values` + `row_splits`) so the training graph can
gather a batch and look rows up sparsely.

Wide-tower features (`wide_features`, one per task and setting): the terms are the document's
tokens, and with n-gram range 2 also its bigrams ("a b"). The vocabulary is the `vocab_size`
terms of the train split in the most documents (ties broken alphabetically); other terms have no
wide feature (a term never seen in training would only ever keep its zero weight). The ranking
is computed once per (task, n-gram range) up to the largest size searched, so a smaller
vocabulary is a prefix of it and its ids are those below its size. Weighting `binary` (the
paper's): each term of a document counts once, no weights stored. `tfidf`: term count times the
smoothed train idf, ln((1 + documents) / (1 + document frequency)) + 1, l2-normalised over the
document's in-vocabulary terms (what scikit-learn's TfidfVectorizer computes).

Modules with `token_ids` and `embeddings` (ours): the module's rows for every distinct token of
the task's texts (all splits) that the module knows form a small "restricted" table; a document's
deep feature is the mean of its known tokens' rows (repeats counted), exactly what the module
computes (stored as each document's distinct rows weighted by their counts). Fine-tuning trains
a copy of this restricted table, sparsely. Other (generic TF-Hub)
modules: frozen features are `module(texts)`; fine-tuning calls the module on batch strings.

Image tasks (see child/image_features.py): the wide tower's bags are binned low-resolution pixels
and the deep tower's frozen features are the image module's feature vectors, computed once per
(task, module) and cached on disk beside the task's decoded images. Fine-tuning an image module
(only with `fine_tune_images`) calls it on batches of the task's images at its input size.
"""
from __future__ import annotations

import array
import collections
import dataclasses
import functools
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from automl_transfer.child import image_features
from automl_transfer.modules.loading import load_module
from automl_transfer.tasks import load_task
from automl_transfer.text import tokenize

MAX_WIDE_VOCAB_SIZE = 300_000  # the largest wide vocabulary any search space offers
SPLITS = ("train", "valid", "test")
_FROZEN_CHUNK = 2048  # strings per module call when precomputing a generic module's features
MEAN_CHUNK_VALUES = 1 << 16  # ids per group in `mean_rows`: 80 MB of gathered rows at dim 300
_CACHE_SIZE = 16
# Settings of a big task's wide features (bigrams of imdb: ~200 MB each) kept at once.
_WIDE_CACHE_SIZE = 6


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """Names a task for `evaluate`: a registered name or a CSV path, its data root and split seed."""

    name: str
    data_dir: str | None = None
    split_seed: int = 0


@dataclasses.dataclass(frozen=True)
class Bags:
    """Ragged id lists, one per document: document i holds values[row_splits[i]:row_splits[i+1]]."""

    values: np.ndarray  # int64
    row_splits: np.ndarray  # int64, len = documents + 1
    weights: np.ndarray | None = None  # float32, one per value; None: every value weighs 1

    @classmethod
    def counted(cls, lists: Iterable[list[int]]) -> "Bags":
        """Each document's distinct ids (ascending), weighted by how often each occurs. For the
        restricted table: the same mean as the ids with repeats, from fewer rows (long documents
        repeat their words: brown 2.9x, newsgroups20 2.0x, imdb 1.7x), so a fine-tuned table trains
        that much faster (docs/performance.md). Documents are read one at a time (pass a
        generator): a big task's id lists are many Python objects (imdb's bigrams: 15M)."""
        values, weights, lengths = array.array("q"), array.array("f"), array.array("q", [0])
        for ids in lists:
            distinct = sorted(collections.Counter(ids).items())
            values.extend(i for i, _ in distinct)
            weights.extend(c for _, c in distinct)
            lengths.append(len(distinct))
        return cls(values=np.frombuffer(values, np.int64), row_splits=np.cumsum(np.frombuffer(lengths, np.int64)),
                   weights=np.frombuffer(weights, np.float32))

    def documents(self) -> np.ndarray:
        """The document of every value."""
        return np.repeat(np.arange(len(self.row_splits) - 1), np.diff(self.row_splits))


@dataclasses.dataclass(frozen=True, eq=False)
class TaskFeatures:
    """Labels, texts and tokens of each split; an image task's wide features instead of text."""

    num_classes: int
    labels: dict[str, np.ndarray]
    texts: dict[str, tuple[str, ...]]
    # Tuples of shared strings: the garbage collector stops scanning a tuple of strings after its
    # first pass (evaluate collects after every trial; imdb's tokens are 11.7M references).
    tokens: dict[str, list[tuple[str, ...]]]
    pixel_wide: "WideFeatures | None" = None  # image tasks: binned low-resolution pixels

    @property
    def majority_class(self) -> int:
        return int(np.argmax(np.bincount(self.labels["train"], minlength=self.num_classes)))


@dataclasses.dataclass(frozen=True, eq=False)
class ModuleFeatures:
    """A module's view of a task: frozen features always; the restricted table when available."""

    module: Any
    frozen: dict[str, np.ndarray]  # split -> [documents, dim] float32
    table: np.ndarray | None = None  # restricted rows (None for a generic module)
    table_tokens: tuple[str, ...] | None = None  # the token of each restricted row (for export)
    bags: dict[str, Bags] | None = None  # split -> distinct ids into `table`, weighted by count
    tunable: bool = True  # False: fine_tune trains the frozen path (image modules, see docs)
    pixels: dict[str, np.ndarray] | None = None  # a tunable image module: split -> its input images

    @property
    def restricted(self) -> bool:
        return self.table is not None


@dataclasses.dataclass(frozen=True, eq=False)
class WideFeatures:
    """The wide tower's input for one setting: bags of unique vocabulary ids per split."""

    vocab: tuple[str, ...]  # term of each id (a bigram is "a b")
    bags: dict[str, Bags]  # weights set for tfidf
    idf: np.ndarray | None = None  # per id, for tfidf

    @property
    def size(self) -> int:
        return len(self.vocab)


@dataclasses.dataclass(frozen=True, eq=False)
class _RankedTerms:
    """Every split's term counts over the largest vocabulary (ids = rank in the train split)."""

    vocab: tuple[str, ...]
    document_frequency: np.ndarray  # per id, in train
    bags: dict[str, Bags]  # ids sorted per document; weights = the term's count in it


@functools.lru_cache(maxsize=_CACHE_SIZE)
def task_features(task: TaskRef) -> TaskFeatures:
    """Load and tokenise a task once."""
    loaded = load_task(task.name, data_dir=task.data_dir, seed=task.split_seed)
    splits = {"train": loaded.train, "valid": loaded.valid, "test": loaded.test}
    labels = {name: np.asarray(split.labels, np.int64) for name, split in splits.items()}
    if loaded.modality == "image":
        vocab, bags = image_features.pixel_bags({name: split.images for name, split in splits.items()})
        return TaskFeatures(num_classes=loaded.num_classes, labels=labels, texts={}, tokens={},
                            pixel_wide=WideFeatures(vocab=vocab,
                                                    bags={n: Bags(*b) for n, b in bags.items()}))
    shared: dict[str, str] = {}  # one str object per distinct token: imdb's 11.7M tokens are 122k words
    return TaskFeatures(num_classes=loaded.num_classes, labels=labels,
                        texts={name: split.texts for name, split in splits.items()},
                        tokens={name: [tuple(shared.setdefault(tok, tok) for tok in tokenize(t)) for t in split.texts]
                                for name, split in splits.items()})


def terms(tokens: Sequence[str], ngrams: int) -> list[str]:
    """A document's wide-tower terms: its tokens, then (n-gram range 2) its bigrams."""
    if ngrams == 1:
        return list(tokens)
    return [*tokens, *(f"{a} {b}" for a, b in zip(tokens, tokens[1:]))]


@functools.lru_cache(maxsize=4)
def _ranked_terms(task: TaskRef, ngrams: int) -> _RankedTerms:
    if ngrams not in (1, 2):
        raise ValueError(f"wide n-gram range must be 1 or 2, got {ngrams}")
    # A document's terms are made when needed, not kept for the whole task: imdb's bigrams are
    # 15M strings (docs/performance.md).
    tokens = task_features(task).tokens
    frequency: collections.Counter[str] = collections.Counter()
    for doc in tokens["train"]:
        frequency.update(set(terms(doc, ngrams)))
    ranked = sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:MAX_WIDE_VOCAB_SIZE]
    del frequency
    index = {term: i for i, (term, _) in enumerate(ranked)}
    bags = {name: Bags.counted([index[t] for t in terms(doc, ngrams) if t in index] for doc in split)
            for name, split in tokens.items()}
    return _RankedTerms(vocab=tuple(term for term, _ in ranked),
                        document_frequency=np.array([n for _, n in ranked], np.float32),
                        bags=bags)


@functools.lru_cache(maxsize=_WIDE_CACHE_SIZE)
def wide_features(task: TaskRef, ngrams: int, weighting: str, vocab_size: int) -> WideFeatures:
    """The wide tower's bags for one setting (see the module docstring), computed once. An image
    task's wide features are its pixel bags whatever the setting."""
    pixels = task_features(task).pixel_wide
    if pixels is not None:
        return pixels
    if weighting not in ("binary", "tfidf"):
        raise ValueError(f"wide weighting must be binary or tfidf, got {weighting!r}")
    ranked = _ranked_terms(task, ngrams)
    size = min(vocab_size, len(ranked.vocab))
    num_train = len(task_features(task).labels["train"])
    idf = np.log((1 + num_train) / (1 + ranked.document_frequency[:size])) + 1
    bags = {}
    for name, counted in ranked.bags.items():
        keep = counted.values < size
        documents = counted.documents()[keep]
        num_docs = len(counted.row_splits) - 1
        splits = np.concatenate([[0], np.cumsum(np.bincount(documents, minlength=num_docs))])
        values, weights = counted.values[keep], None
        if weighting == "tfidf":
            weights = counted.weights[keep] * idf[values]
            norms = np.sqrt(np.bincount(documents, weights=weights ** 2, minlength=num_docs))
            weights = (weights / norms[documents]).astype(np.float32)
        bags[name] = Bags(values=values, row_splits=splits.astype(np.int64), weights=weights)
    return WideFeatures(vocab=ranked.vocab[:size], bags=bags,
                        idf=idf.astype(np.float32) if weighting == "tfidf" else None)


def has_token_table(module: Any) -> bool:
    """Whether a loaded module exposes `token_ids` and `embeddings` (our modules do)."""
    return hasattr(module, "token_ids") and hasattr(module, "embeddings")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def module_features(task: TaskRef, handle: str, fine_tune_images: bool = False) -> ModuleFeatures:
    """Load a module and compute its frozen features (and restricted table) for a task, once.

    An image module is tunable only with `fine_tune_images` (then its input images come along):
    fine-tuning a CNN costs hours per trial on a CPU (docs/modules.md).
    """
    module = load_module(handle)
    loaded = load_task(task.name, data_dir=task.data_dir, seed=task.split_seed)
    if loaded.modality == "image":
        frozen = image_features.frozen_features(loaded, module, handle)
        if not fine_tune_images:
            return ModuleFeatures(module=module, frozen=frozen, tunable=False)
        return ModuleFeatures(module=module, frozen=frozen,
                              pixels=image_features.module_pixels(loaded, module, handle))
    feats = task_features(task)
    if not has_token_table(module):
        frozen = {name: _call_in_chunks(module, feats.texts[name]) for name in SPLITS}
        return ModuleFeatures(module=module, frozen=frozen)
    distinct = sorted({tok for name in SPLITS for doc in feats.tokens[name] for tok in doc})
    rows = module.token_ids(tf.constant(distinct, tf.string)).numpy() if distinct else np.zeros(0, np.int64)
    known = rows >= 0
    table = tf.gather(module.embeddings, rows[known]).numpy().astype(np.float32)
    restricted_id = dict(zip((t for t, k in zip(distinct, known) if k), range(int(known.sum()))))
    bags = {name: Bags.counted([restricted_id[t] for t in doc if t in restricted_id]
                               for doc in feats.tokens[name]) for name in SPLITS}
    frozen = {name: mean_rows(table, bags[name]) for name in SPLITS}
    return ModuleFeatures(module=module, frozen=frozen, table=table, bags=bags,
                          table_tokens=tuple(restricted_id))


def mean_rows(table: np.ndarray, bags: Bags, chunk_values: int = MEAN_CHUNK_VALUES) -> np.ndarray:
    """Weighted mean of each document's rows (zeros for a document with none), as the module
    computes it. Documents go in groups of about `chunk_values` ids: the gathered rows of a whole
    split are [ids, dim] floats, which the process keeps once allocated (imdb's train split at
    dim 300: 3 GB, twice over with the weights; docs/performance.md). A document's sum is the
    same whatever the grouping."""
    num_docs = len(bags.row_splits) - 1
    weights = np.ones(len(bags.values), np.float32) if bags.weights is None else bags.weights
    out = np.zeros((num_docs, table.shape[1]), np.float32)
    first = 0
    while first < num_docs:
        start = bags.row_splits[first]
        last = int(np.searchsorted(bags.row_splits, start + chunk_values, side="right")) - 1
        last = min(max(last, first + 1), num_docs)  # a document longer than a chunk goes alone
        end = bags.row_splits[last]
        segment = np.repeat(np.arange(last - first), np.diff(bags.row_splits[first:last + 1]))
        sums = tf.math.unsorted_segment_sum(tf.gather(table, bags.values[start:end]) * weights[start:end, None],
                                            segment, last - first)
        totals = np.bincount(segment, weights=weights[start:end], minlength=last - first)
        out[first:last] = tf.math.divide_no_nan(sums, totals.astype(np.float32)[:, None]).numpy()
        first = last
    return out


def _call_in_chunks(module: Any, texts: tuple[str, ...]) -> np.ndarray:
    parts = [module(tf.constant(texts[i:i + _FROZEN_CHUNK], tf.string)).numpy()
             for i in range(0, len(texts), _FROZEN_CHUNK)]
    return np.concatenate(parts).astype(np.float32)
