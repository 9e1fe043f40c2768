"""`evaluate`: train and score one configuration on one task. Pure and picklable: the unit of work
an executor runs, in this process or another.

A trial-level problem never raises: a child whose loss or weights become NaN/inf is DIVERGED, any
other exception inside the trial is FAILED with its one-line error; both have accuracy 0. Only
a task that cannot be loaded (the user's fault, UserError) propagates.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import time
from typing import Iterator, Mapping

import numpy as np

from automl_transfer.child.features import TaskRef, module_features, task_features, wide_features
from automl_transfer.child.model import BATCH_SIZE, WideDeepChild
from automl_transfer.errors import ModuleError
from automl_transfer.search_space import Config
from automl_transfer.trial import Status, TrialResult

__all__ = ["TaskRef", "evaluate", "trained_child"]


def evaluate(config: Config, task: TaskRef, module_handles: Mapping[str, str], seed: int,
             fine_tune_images: bool = False) -> TrialResult:
    """Train the child `config` on `task` (module handle = module_handles[config.module]) with `seed`;
    `fine_tune_images`: fine_tune trains an image module's weights too (else its frozen path).

    Same seed, same metrics. Per-task and per-(task, module) work is cached in the process.
    Times: setup_time_s = features (first trial of a task/module/wide setting only) and building
    the child;
    train_time_s = tracing the one graph that trains and then scores valid and test, and running
    it (in chunks of steps); eval_time_s = accuracies from the logits.
    """
    _freeze_objects_made_before_trials()
    with trained_child(config, task, module_handles, seed, fine_tune_images) as (child, result):
        del child  # nothing may hold it at the collection below
    # A trained child and TensorFlow's objects for its graph form reference cycles that hold its
    # copies of the task's data until a full collection, which Python runs too rarely here:
    # without this, imdb's process grew by about 90 MB per trial (docs/performance.md).
    gc.collect()
    return result


@functools.cache
def _freeze_objects_made_before_trials() -> None:
    """Once per process: the ~425k objects alive before the first trial (mostly TensorFlow's
    modules) live as long as it does, so the collection after each trial need not scan them
    (0.5 s a collection with them here, milliseconds without)."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def trained_child(config: Config, task: TaskRef, module_handles: Mapping[str, str], seed: int,
                  fine_tune_images: bool = False) -> Iterator[tuple[WideDeepChild | None, TrialResult]]:
    """`evaluate`, keeping the trained child for the `with` block (an export saves it there).

    Yields (child, result); the child is None unless the trial COMPLETED with at least one tower.
    A fine-tuned shared module gets its weights back when the block ends.
    """
    start = time.perf_counter()
    features = task_features(task)  # an unknown or bad task raises UserError here
    child = None
    try:
        if not (config.deep_enabled or config.wide_enabled):
            result = _majority_result(features.labels, features.majority_class, time.perf_counter() - start)
        else:
            module = None
            if config.deep_enabled:
                if config.module not in module_handles:
                    raise ModuleError(f"no handle for module {config.module!r}; known: {', '.join(module_handles)}")
                module = module_features(task, module_handles[config.module], fine_tune_images)
            wide = wide_features(task, *config.wide_setting()) if config.wide_enabled else None
            child = WideDeepChild(config, features, module, wide, seed)
            result = _train_and_score(child, features.labels, start)
    except Exception as err:  # noqa: BLE001 - any failure inside a trial is its result, not a crash
        message = (str(err).strip().splitlines() or [""])[0]
        result = TrialResult(Status.FAILED, 0.0, 0.0, setup_time_s=time.perf_counter() - start,
                             error=f"{type(err).__name__}: {message}")
    try:
        yield (child if result.status == Status.COMPLETED else None), result
    finally:
        if child is not None:
            child.restore_module()


def _train_and_score(child: WideDeepChild, labels: Mapping[str, np.ndarray], start: float) -> TrialResult:
    """Train a built child on its seeded batches; accuracies, or DIVERGED at a non-finite loss."""
    batches = np.random.default_rng([child.seed, 0]).integers(
        len(labels["train"]), size=(child.config.train_steps, BATCH_SIZE))
    setup = time.perf_counter()
    steps, finite, valid_logits, test_logits = child.train_and_score(batches)
    trained = time.perf_counter()  # scoring runs in the training graph: counted as training
    accuracies = {split: float(np.mean(np.argmax(logits, axis=1) == labels[split]))
                  for split, logits in (("valid", valid_logits), ("test", test_logits))}
    done = time.perf_counter()
    if not finite:
        return TrialResult(Status.DIVERGED, 0.0, 0.0, setup - start, trained - setup, done - trained,
                           steps, error="loss or weights became NaN/inf")
    return TrialResult(Status.COMPLETED, accuracies["valid"], accuracies["test"], setup - start,
                       trained - setup, done - trained, steps)


def _majority_result(labels: Mapping[str, np.ndarray], majority: int, elapsed: float) -> TrialResult:
    """Both towers disabled: predict train's majority class (defined reward, no training)."""
    return TrialResult(Status.COMPLETED, float(np.mean(labels["valid"] == majority)),
                       float(np.mean(labels["test"] == majority)), setup_time_s=elapsed, steps=0)
