"""From a finished search to a deployable model: choose robustly, train, save, describe.

A configuration's validation accuracy in the search comes from one seed, and the best of many
trials is partly the luckiest seed. So the export re-trains the top-k distinct configurations (by
search validation accuracy) with fresh seeds, through the same `evaluate` the search uses, and
picks the best mean validation accuracy. That configuration is trained once more (the first of its
fresh seeds, so its figures repeat one re-training) and written as a SavedModel (serving.py),
with `card.json` beside it: task, configuration, the exported model's validation and test
accuracy, module, class names, the trials the configuration came from and every re-training.

The run must have recorded where its task and modules live (settings key `sources`, written by
every search since exports exist; rerunning an older run's command once records them).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from automl_transfer.errors import UserError
from automl_transfer.experiment import SETTINGS_KEY
from automl_transfer.predict import CARD_FILE
from automl_transfer.search_space import Config
from automl_transfer.store import STORE_FILE, TrialStore
from automl_transfer.trial import Status, Trial

DEFAULT_TOP_K = 5
DEFAULT_RETRAIN_SEEDS = 3
SOURCES_KEY = "sources"  # in the run settings: {"tasks": {name: source}, "module_handles", "data_dir"}
_EXPORT_SEED = 20_240_917  # fresh seeds: (this, candidate rank, i), never a search trial's seed
_CHECK_TOLERANCE = 1e-4  # exported vs trained child's probabilities on the validation split


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A distinct configuration of the search, its trials, and its re-training figures."""

    config: Config
    trial_ids: tuple[int, ...]
    search_valid_accuracy: float  # the best of its trials
    seeds: tuple[int, ...] = ()
    valid_accuracies: tuple[float, ...] = ()

    @property
    def mean_valid_accuracy(self) -> float:
        return float(np.mean(self.valid_accuracies)) if self.valid_accuracies else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "trial_ids": list(self.trial_ids),
                "search_valid_accuracy": self.search_valid_accuracy, "seeds": list(self.seeds),
                "valid_accuracies": list(self.valid_accuracies),
                "mean_valid_accuracy": self.mean_valid_accuracy}


def top_candidates(trials: Sequence[Trial], top_k: int) -> list[Candidate]:
    """The `top_k` distinct configurations by their best validation accuracy (ties: earliest
    trial). Configurations with both towers off predict a constant and are not deployable."""
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        if trial.finished and trial.result.status == Status.COMPLETED and (
                trial.config.deep_enabled or trial.config.wide_enabled):
            groups.setdefault(trial.config.to_json(), []).append(trial)
    ranked = sorted(groups.values(), key=lambda g: (-max(t.result.reward for t in g),
                                                    min(t.trial_id for t in g)))
    return [Candidate(group[0].config, tuple(sorted(t.trial_id for t in group)),
                      max(t.result.reward for t in group)) for group in ranked[:top_k]]


def read_run(experiment_dir: str | Path, task: str | None) -> tuple[dict[str, Any], str, list[Trial]]:
    """(run settings, the task to export, its finished trials); one-line UserError otherwise."""
    experiment_dir = Path(experiment_dir).expanduser()
    if not (experiment_dir / STORE_FILE).is_file():
        raise UserError(f"{experiment_dir}: no trials here ({STORE_FILE} is missing); "
                        f"export needs the directory of a search")
    with TrialStore(experiment_dir / STORE_FILE) as store:
        settings = store.get_meta(SETTINGS_KEY) or {}
        run_tasks = list(settings.get("tasks", []))
        if task is None:
            if len(run_tasks) != 1:
                raise UserError(f"{experiment_dir}: the run has tasks {','.join(run_tasks) or 'none'}; "
                                f"name the one to export with --tasks")
            task = run_tasks[0]
        if task not in run_tasks:
            raise UserError(f"{experiment_dir}: task {task!r} is not one of the run's tasks "
                            f"({','.join(run_tasks) or 'none'})")
        trials = store.trials(task)
    if SOURCES_KEY not in settings:
        raise UserError(f"{experiment_dir}: the run did not record where its data and modules are; "
                        f"rerun its search command once (it resumes, then records them)")
    return settings, task, trials


def export_model(experiment_dir: str | Path, export_dir: str | Path, task: str | None = None,
                 top_k: int = DEFAULT_TOP_K, retrain_seeds: int = DEFAULT_RETRAIN_SEEDS,
                 log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Choose, train and write the model of `task` (the run's only task by default) to
    `export_dir` (replaced); returns the card also written there as card.json."""
    if top_k < 1 or retrain_seeds < 1:
        raise UserError("export needs top_k >= 1 and at least one re-training seed")
    export_dir = Path(export_dir).expanduser()
    if export_dir.exists() and any(export_dir.iterdir()) and not (export_dir / CARD_FILE).is_file():
        raise UserError(f"{export_dir}: exists and holds something other than an exported model; "
                        f"choose another --export_dir")
    settings, task, trials = read_run(experiment_dir, task)
    candidates = top_candidates(trials, top_k)
    if not candidates:
        raise UserError(f"{experiment_dir}: task {task!r} has no completed trial to export")
    from automl_transfer.child.evaluate import TaskRef, evaluate, trained_child  # TensorFlow
    from automl_transfer.tasks import load_task
    sources = settings[SOURCES_KEY]
    ref = TaskRef(sources["tasks"][task], sources.get("data_dir"))
    loaded = load_task(ref.name, ref.data_dir)
    if loaded.modality != "text":
        raise UserError(f"{experiment_dir}: task {task!r} is an {loaded.modality} task; export "
                        f"writes text classifiers (raw strings in) only")
    handles = sources["module_handles"]
    retrained = []
    for rank, candidate in enumerate(candidates):
        seeds = tuple(int(s) for s in np.random.default_rng([_EXPORT_SEED, rank]).integers(
            2**31 - 1, size=retrain_seeds))
        accuracies = tuple(evaluate(candidate.config, ref, handles, seed).reward for seed in seeds)
        retrained.append(dataclasses.replace(candidate, seeds=seeds, valid_accuracies=accuracies))
        log(f"candidate {rank + 1}/{len(candidates)} (trials {list(candidate.trial_ids)}): search "
            f"valid {candidate.search_valid_accuracy:.4f}, re-trained mean "
            f"{retrained[-1].mean_valid_accuracy:.4f} over {retrain_seeds} seeds")
    chosen = max(retrained, key=lambda c: c.mean_valid_accuracy)  # first (best searched) on ties
    class_names = loaded.label_names
    with trained_child(chosen.config, ref, handles, chosen.seeds[0]) as (child, result):
        if child is None:
            raise UserError(f"the chosen configuration did not train ({result.status.value}: "
                            f"{result.error}); nothing exported")
        _write(child, class_names, export_dir)
    card = {
        "task": task, "task_source": ref.name, "class_names": list(class_names),
        "config": chosen.config.to_dict(), "module": chosen.config.module if chosen.config.deep_enabled else None,
        "module_handle": handles.get(chosen.config.module) if chosen.config.deep_enabled else None,
        "seed": chosen.seeds[0], "valid_accuracy": result.valid_accuracy,
        "test_accuracy": result.test_accuracy, "trial_ids": list(chosen.trial_ids),
        "retraining": {"top_k": top_k, "seeds_per_config": retrain_seeds,
                       "candidates": [c.to_json() for c in retrained]},
        "experiment_dir": str(Path(experiment_dir).expanduser().resolve()),
        "search": {k: settings.get(k) for k in ("mode", "seed", "profile", "searcher")},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    (export_dir / CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log(f"exported to {export_dir}: valid {result.valid_accuracy:.4f}, test {result.test_accuracy:.4f}")
    return card


def _write(child: Any, class_names: Sequence[str], export_dir: Path) -> None:
    """Save the child, check the saved model reproduces it on the validation split, then move it
    into place (an export that fails leaves no half-written model behind)."""
    from automl_transfer.predict import Predictor
    from automl_transfer.serving import save_serving_model
    staging = export_dir.with_name(export_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    save_serving_model(child, class_names, staging)
    (staging / CARD_FILE).write_text(json.dumps({"class_names": list(class_names)}), encoding="utf-8")
    logits = child.logits("valid")
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got, _ = Predictor(staging).predict(child.task.texts["valid"])
    if not np.allclose(got, expected, atol=_CHECK_TOLERANCE):
        raise RuntimeError(f"exported model differs from the trained child by "
                           f"{np.abs(got - expected).max():.2g} on the validation split")
    shutil.rmtree(export_dir, ignore_errors=True)
    staging.rename(export_dir)
