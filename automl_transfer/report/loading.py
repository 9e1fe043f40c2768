"""Find and read the runs under an experiment directory (read-only, plain sqlite3).

A run is any folder holding `trials.sqlite`; nothing is assumed about the folder layout.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from automl_transfer.errors import UserError
from automl_transfer.trial import Trial

STORE_NAME = "trials.sqlite"
# Where a run's saved controller is: the experiment loop checkpoints controllers in `controller/`.
CONTROLLER_DIRS = ("controller",)
# Methods in the order tables and legends show them, with the paper's names.
METHOD_LABELS = {"random": "RS", "tpe": "TPE", "single": "NAML", "multitask": "multitask NAML",
                 "transfer": "T-NAML"}


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_order(methods: "set[str] | list[str]") -> list[str]:
    known = [m for m in METHOD_LABELS if m in methods]
    return known + sorted(set(methods) - set(known))


@dataclasses.dataclass(frozen=True)
class Run:
    """One search: its method (random | tpe | single | multitask | transfer), seed and trials."""

    path: Path
    label: str                    # the run folder relative to the experiment dir
    method: str
    seed: int | None
    settings: dict[str, Any]
    trials: tuple[Trial, ...]     # every stored trial, pending included, by trial id

    @property
    def tasks(self) -> list[str]:
        return sorted({t.task for t in self.trials})

    def finished(self, task: str) -> list[Trial]:
        """Finished trials on `task` in run order (the input of automl_transfer.metrics)."""
        return [t for t in self.trials if t.task == task and t.finished]

    @property
    def controller_dir(self) -> Path | None:
        """The first of CONTROLLER_DIRS holding a SavedModel (random search saves none)."""
        for name in CONTROLLER_DIRS:
            if (self.path / name / "saved_model.pb").is_file():
                return self.path / name
        return None


def read_trials(store: Path) -> tuple[list[Trial], dict[str, Any]]:
    """All trials (by id) and the meta table (JSON values) of one store, opened read-only."""
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise UserError(f"{store}: cannot open the trial store ({err})") from err
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM trials ORDER BY trial_id").fetchall()
        trials = [Trial.from_row(dict(row)) for row in rows]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta = {}
        if "meta" in tables:
            meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    except (sqlite3.Error, KeyError, ValueError, TypeError) as err:
        raise UserError(f"{store}: not a readable trial store ({err})") from err
    finally:
        conn.close()
    return trials, meta


def _method(trials: list[Trial], settings: dict[str, Any]) -> str:
    """The searcher column (most common value) is the truth; the settings' mode otherwise."""
    if trials:
        return collections.Counter(t.searcher for t in trials).most_common(1)[0][0]
    return str(settings.get("mode") or settings.get("searcher") or "unknown")


def _seed(settings: dict[str, Any], run_dir: Path) -> int | None:
    searcher_settings = settings.get("searcher")
    for seed in (settings.get("seed"),
                 searcher_settings.get("seed") if isinstance(searcher_settings, dict) else None):
        if isinstance(seed, int):
            return seed
    match = re.fullmatch(r"seed[_-]?(\d+)", run_dir.name)
    return int(match.group(1)) if match else None


def load_run(run_dir: Path, experiment_dir: Path) -> Run:
    trials, meta = read_trials(run_dir / STORE_NAME)
    settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    label = run_dir.relative_to(experiment_dir).as_posix()
    return Run(path=run_dir, label=label if label != "." else run_dir.name,
               method=_method(trials, settings), seed=_seed(settings, run_dir),
               settings=settings, trials=tuple(trials))


def load_runs(experiment_dir: str | Path) -> tuple[list[Run], list[str]]:
    """Every run under `experiment_dir`, and one line per store that could not be read."""
    root = Path(experiment_dir)
    if not root.is_dir():
        raise UserError(f"{root}: experiment directory not found")
    runs, problems = [], []
    for store in sorted(root.rglob(STORE_NAME)):
        try:
            runs.append(load_run(store.parent, root))
        except UserError as err:
            problems.append(str(err))
    return runs, problems


def _embedding_variables(controller_dir: Path) -> list[np.ndarray]:
    """2-D variables whose name or checkpoint path contains 'task_embedding'."""
    import tensorflow as tf  # imported late: reports of random search need no TensorFlow

    found = []
    try:
        # A restored tf.Module has no `variables` list: walk its object graph instead.
        loaded = tf.saved_model.load(str(controller_dir))
        for var in tf.train.TrackableView(loaded).descendants():
            if (isinstance(var, tf.Variable) and "task_embedding" in var.name.lower()
                    and len(var.shape) == 2):
                found.append(var.numpy())
    except (OSError, ValueError, tf.errors.OpError):
        pass
    if not found:
        try:
            reader = tf.train.load_checkpoint(str(controller_dir / "variables" / "variables"))
            for key, shape in sorted(reader.get_variable_to_shape_map().items()):
                if "task_embedding" in key.lower() and len(shape) == 2 and "OPTIMIZER" not in key:
                    found.append(reader.get_tensor(key))
        except (OSError, ValueError, tf.errors.OpError):
            pass
    return found


def _task_names(controller_dir: Path) -> list[str] | None:
    for path in sorted(controller_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("tasks"), list):
            return [str(name) for name in data["tasks"]]
    return None


def load_task_embeddings(controller_dir: str | Path) -> tuple[list[str], np.ndarray] | None:
    """(task names, [tasks, dim] embedding matrix) of a saved controller, or None if absent.

    Looks for a variable named like '*task_embedding*' in the SavedModel (its restored
    `variables`, else its checkpoint keys) and a JSON file in the dir with a "tasks" list.
    Rows beyond the named tasks (e.g. a table sized for tasks added later) are dropped.
    """
    controller_dir = Path(controller_dir)
    if not controller_dir.is_dir():
        return None
    names = _task_names(controller_dir)
    if not names:
        return None
    for matrix in _embedding_variables(controller_dir):
        if matrix.shape[0] >= len(names):
            return names, np.asarray(matrix[:len(names)], dtype=float)
    return None
