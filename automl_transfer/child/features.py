"""Per-task and per-(task, module) inputs of the child, computed once per process and reused.

Every trial on a task needs the same tokenisation, wide-tower vocabulary and (for a frozen module)
the same mean embeddings; recomputing them per trial would cost more than training most children.
Documents are stored as ragged id lists (flat `values` + `row_splits`) so the training graph can
gather a batch and look rows up sparsely.

Wide-tower vocabulary: the WIDE_VOCAB_SIZE most frequent tokens of the train split (ties broken
alphabetically); other tokens have no wide feature (a token never seen in training would only
ever keep its zero weight).

Modules with `token_ids` and `embeddings` (ours): the module's rows for every distinct token of
the task's texts (all splits) that the module knows form a small "restricted" table; a document's
deep feature is the mean of its known tokens' rows (repeats counted), exactly what the module
computes. Fine-tuning trains a copy of this restricted table, sparsely. Other (generic TF-Hub)
modules: frozen features are `module(texts)`; fine-tuning calls the module on batch strings.

Image tasks (see child/image_features.py): the wide tower's bags are binned low-resolution pixels
and the deep tower's frozen features are the image module's feature vectors, computed once per
(task, module) and cached on disk beside the task's decoded images.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any

import numpy as np
import tensorflow as tf

from automl_transfer.child import image_features
from automl_transfer.modules.loading import load_module
from automl_transfer.tasks import load_task
from automl_transfer.text import tokenize

WIDE_VOCAB_SIZE = 30_000
SPLITS = ("train", "valid", "test")
_FROZEN_CHUNK = 2048  # strings per module call when precomputing a generic module's features
_CACHE_SIZE = 16


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

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> "Bags":
        lengths = np.fromiter((len(x) for x in lists), np.int64, count=len(lists))
        splits = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        values = np.fromiter((i for x in lists for i in x), np.int64, count=int(splits[-1]))
        return cls(values=values, row_splits=splits)


@dataclasses.dataclass(frozen=True, eq=False)
class TaskFeatures:
    """Labels, texts and wide-tower bags (unique train-vocabulary ids) of each split."""

    num_classes: int
    labels: dict[str, np.ndarray]
    texts: dict[str, tuple[str, ...]]
    tokens: dict[str, list[list[str]]]
    wide_vocab: tuple[str, ...]
    wide_bags: dict[str, Bags]

    @property
    def majority_class(self) -> int:
        return int(np.argmax(np.bincount(self.labels["train"], minlength=self.num_classes)))


@dataclasses.dataclass(frozen=True, eq=False)
class ModuleFeatures:
    """A module's view of a task: frozen features always; the restricted table when available."""

    module: Any
    frozen: dict[str, np.ndarray]  # split -> [documents, dim] float32
    table: np.ndarray | None = None  # restricted rows (None for a generic module)
    bags: dict[str, Bags] | None = None  # split -> ids into `table`, repeats kept
    tunable: bool = True  # False: fine_tune trains the frozen path (image modules, see docs)

    @property
    def restricted(self) -> bool:
        return self.table is not None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def task_features(task: TaskRef) -> TaskFeatures:
    """Tokenise a task once and build its wide-tower vocabulary and bags."""
    loaded = load_task(task.name, data_dir=task.data_dir, seed=task.split_seed)
    splits = {"train": loaded.train, "valid": loaded.valid, "test": loaded.test}
    labels = {name: np.asarray(split.labels, np.int64) for name, split in splits.items()}
    if loaded.modality == "image":
        vocab, bags = image_features.pixel_bags({name: split.images for name, split in splits.items()})
        return TaskFeatures(num_classes=loaded.num_classes, labels=labels, texts={}, tokens={},
                            wide_vocab=vocab, wide_bags={n: Bags(*b) for n, b in bags.items()})
    tokens = {name: [tokenize(t) for t in split.texts] for name, split in splits.items()}
    counts = collections.Counter(tok for doc in tokens["train"] for tok in set(doc))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:WIDE_VOCAB_SIZE]
    vocab = tuple(tok for tok, _ in ranked)
    index = {tok: i for i, tok in enumerate(vocab)}
    wide_bags = {name: Bags.from_lists([sorted({index[t] for t in doc if t in index}) for doc in docs])
                 for name, docs in tokens.items()}
    return TaskFeatures(num_classes=loaded.num_classes, labels=labels,
                        texts={name: split.texts for name, split in splits.items()},
                        tokens=tokens, wide_vocab=vocab, wide_bags=wide_bags)


def has_token_table(module: Any) -> bool:
    """Whether a loaded module exposes `token_ids` and `embeddings` (our modules do)."""
    return hasattr(module, "token_ids") and hasattr(module, "embeddings")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def module_features(task: TaskRef, handle: str) -> ModuleFeatures:
    """Load a module and compute its frozen features (and restricted table) for a task, once."""
    module = load_module(handle)
    loaded = load_task(task.name, data_dir=task.data_dir, seed=task.split_seed)
    if loaded.modality == "image":
        return ModuleFeatures(module=module, frozen=image_features.frozen_features(loaded, module, handle),
                              tunable=False)
    feats = task_features(task)
    if not has_token_table(module):
        frozen = {name: _call_in_chunks(module, feats.texts[name]) for name in SPLITS}
        return ModuleFeatures(module=module, frozen=frozen)
    distinct = sorted({tok for name in SPLITS for doc in feats.tokens[name] for tok in doc})
    rows = module.token_ids(tf.constant(distinct, tf.string)).numpy() if distinct else np.zeros(0, np.int64)
    known = rows >= 0
    table = tf.gather(module.embeddings, rows[known]).numpy().astype(np.float32)
    restricted_id = dict(zip((t for t, k in zip(distinct, known) if k), range(int(known.sum()))))
    bags = {name: Bags.from_lists([[restricted_id[t] for t in doc if t in restricted_id]
                                   for doc in feats.tokens[name]]) for name in SPLITS}
    frozen = {name: mean_rows(table, bags[name]) for name in SPLITS}
    return ModuleFeatures(module=module, frozen=frozen, table=table, bags=bags)


def mean_rows(table: np.ndarray, bags: Bags) -> np.ndarray:
    """Mean of each document's rows (zeros for a document with none), as the module computes it."""
    num_docs = len(bags.row_splits) - 1
    segment = np.repeat(np.arange(num_docs), np.diff(bags.row_splits))
    sums = tf.math.unsorted_segment_sum(tf.gather(table, bags.values), segment, num_docs)
    counts = tf.cast(np.diff(bags.row_splits)[:, None], tf.float32)
    return tf.math.divide_no_nan(sums, counts).numpy()


def _call_in_chunks(module: Any, texts: tuple[str, ...]) -> np.ndarray:
    parts = [module(tf.constant(texts[i:i + _FROZEN_CHUNK], tf.string)).numpy()
             for i in range(0, len(texts), _FROZEN_CHUNK)]
    return np.concatenate(parts).astype(np.float32)
