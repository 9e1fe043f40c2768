"""Saving and loading a controller: a TensorFlow SavedModel plus a JSON describing its use.

Layout of a controller directory (the experiment loop uses `<experiment_dir>/controller/`):
- `saved_model.pb`, `variables/`: a SavedModel of a module that tracks every weight (restored
  trainable, under stable names) and serves `probabilities(task_index, actions, module_mask)`:
  the teacher-forced option probabilities, [decisions, max options], zero-padded;
- `controller.json`: what reuse needs: the search space, the task name of every embedding row,
  the network's shape, the normaliser state and the searcher's settings;
- `optimizer.npz`: Adam's step count and moment slots, so a resumed run continues the same
  optimisation (absent after a transfer, which starts a fresh optimizer).
Loading builds a fresh Keras controller and assigns the saved values by name.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from automl_transfer.errors import UserError
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.controller_network import ControllerNetwork

METADATA_FILE = "controller.json"
OPTIMIZER_FILE = "optimizer.npz"
FORMAT_VERSION = 1


class ControllerLoadError(UserError):
    """A controller directory that is missing, broken, or made for another search space."""


@dataclasses.dataclass
class LoadedController:
    network: ControllerNetwork
    tasks: list[str]
    normaliser: dict[str, Any]
    settings: dict[str, Any]
    extra_state: dict[str, Any]


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _key(name: str) -> str:
    return name.replace("/", "__")  # checkpoint dependency names must not contain '/'


class _ExportModule(tf.Module):
    """Tracks the controller's variables by stable name and serves its probabilities."""

    def __init__(self, network: ControllerNetwork):
        super().__init__()
        self.named_weights = {_key(name): w.value for name, w in network.named_weights()}
        num_modules = network.sizes[0]

        @tf.function(input_signature=[
            tf.TensorSpec([], tf.int32), tf.TensorSpec([len(network.sizes)], tf.int32),
            tf.TensorSpec([num_modules], tf.bool)])
        def probabilities(task_index, actions, module_mask):
            return network.padded_probabilities(task_index, actions, module_mask)

        self.probabilities = probabilities


def save_controller(directory: str | Path, network: ControllerNetwork, space: SearchSpace,
                    tasks: list[str], normaliser: dict[str, Any], settings: dict[str, Any],
                    extra_state: dict[str, Any] | None = None,
                    optimizer: keras.optimizers.Optimizer | None = None) -> None:
    """Write the SavedModel, the JSON beside it and (if given) the optimizer's slots."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if len(tasks) != network.num_tasks:
        raise ValueError(f"{len(tasks)} task names for {network.num_tasks} embedding rows")
    try:
        tf.saved_model.save(_ExportModule(network), str(directory))
    except tf.errors.OpError as err:  # e.g. a full disk: one line, the last checkpoint is kept
        raise UserError(f"{directory}: cannot save the controller ({_first_line(err)}): free "
                        f"some space, then rerun the same command to resume") from None
    metadata = {
        "format": FORMAT_VERSION, "space": space.to_json(),
        "space_fingerprint": space.fingerprint(),
        "tasks": list(tasks), "network": {"sizes": network.sizes, "seed": network.seed,
                                          "units": network.units,
                                          "embedding_size": network.embedding_size,
                                          "init_scale": network.init_scale},
        "normaliser": normaliser, "settings": settings, "extra_state": extra_state or {}}
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=1, sort_keys=True))
    optimizer_path = directory / OPTIMIZER_FILE
    if optimizer is not None:
        np.savez(optimizer_path, *[np.asarray(v.numpy()) for v in optimizer.variables])
    elif optimizer_path.exists():
        optimizer_path.unlink()


def load_controller(directory: str | Path, space: SearchSpace) -> LoadedController:
    """Read a controller saved by `save_controller`; it must match `space` exactly."""
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    if not meta_path.is_file():
        raise ControllerLoadError(f"no saved controller at {directory}: {METADATA_FILE} is missing")
    try:
        metadata = json.loads(meta_path.read_text())
        saved_space = metadata["space"]
        tasks = list(metadata["tasks"])
        shape = metadata["network"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ControllerLoadError(f"{meta_path} is not a readable controller description: {err}"
                                  ) from None
    if saved_space != space.to_json():
        raise ControllerLoadError(
            f"controller at {directory} was saved for another search space: "
            f"{space.describe_difference(saved_space)}")
    try:
        loaded = tf.saved_model.load(str(directory))
        values = {key: v.numpy() for key, v in loaded.named_weights.items()}
    except (OSError, ValueError, AttributeError, IndexError, tf.errors.OpError) as err:
        raise ControllerLoadError(f"cannot load the SavedModel in {directory}: "
                                  f"{_first_line(err)}") from None
    network = ControllerNetwork(shape["sizes"], len(tasks), seed=shape["seed"],
                                units=shape["units"], embedding_size=shape["embedding_size"],
                                init_scale=shape["init_scale"])
    try:
        network.set_named_values({name: values[_key(name)] for name, _ in network.named_weights()
                                  if _key(name) in values})
    except ValueError as err:
        raise ControllerLoadError(f"controller at {directory} does not fit its description: {err}"
                                  ) from None
    return LoadedController(network=network, tasks=tasks, normaliser=metadata["normaliser"],
                            settings=metadata["settings"],
                            extra_state=metadata.get("extra_state", {}))


def restore_optimizer(directory: str | Path, optimizer: keras.optimizers.Optimizer) -> bool:
    """Assign saved slots to a built `optimizer` (in order, shapes checked); the learning rate
    stays the current setting. Returns False when there is nothing (compatible) to restore."""
    path = Path(directory) / OPTIMIZER_FILE
    if not path.is_file():
        return False
    try:
        with np.load(path) as data:
            arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ControllerLoadError(f"{path}: damaged optimizer state ({_first_line(err)})"
                                  ) from None
    variables = optimizer.variables
    if len(arrays) != len(variables) or any(
            tuple(a.shape) != tuple(v.shape) for a, v in zip(arrays, variables)):
        return False
    for array, variable in zip(arrays, variables):
        if not variable.path.endswith("learning_rate"):
            variable.assign(array)
    return True
