"""Live TensorBoard view of a search: `TensorBoardLogger`, a callback of the experiment loop.

Pass it to `experiment.run_experiment(..., callbacks=[TensorBoardLogger(experiment_dir)])`.

Writes under <log_dir>/tensorboard/ (open with `tensorboard --logdir <log_dir>/tensorboard`):
- tasks/<task>/: per finished trial of that task (step = trials finished on the task so far,
  counting those a resumed run found in the store):
  `reward`, `accuracy_top{N}/valid`, `accuracy_top{N}/test`, `trials_per_minute`, and, when the
  searcher reports them, `controller/baseline`, `controller/advantage`, `controller/entropy`,
  `option_probability/<decision>/<option>`.
- controller/: `task_embedding_similarity`, a cosine-similarity heatmap image, every
  `image_every` trials and at the end of the run.
- hparams/: the HParams dashboard's experiment: every search decision with its options, the task
  and the searcher as hyperparameters; valid/test accuracy, reward and wall time as metrics.
  hparams/trial_<id>/: one session per trial, reporting those hyperparameters and metrics.

Optional searcher hooks (looked up with getattr; any searcher works without them):
- `last_update_stats(task) -> dict | None`, the controller's last update on that task, with keys
  `baseline` (float), `advantage` (float: the normalised advantage), `entropy` (float) and
  `option_probabilities` ({decision name: [probability per option]}); any key may be absent.
- `task_embeddings() -> (task names, [tasks, dim] matrix) | None`. Without it, the similarity
  image is drawn at the end of the run from the controller the loop saved in <log_dir>/controller/, if any.
- `space`: a SearchSpace, to label options by value instead of by index.
"""
from __future__ import annotations

import json

import re
import time
from pathlib import Path
from typing import Any, Sequence

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from automl_transfer import metrics
from automl_transfer.experiment import Callback, schedule_tasks
from automl_transfer.report.figures import similarity_heatmap_png
from automl_transfer.report.loading import CONTROLLER_DIRS, load_task_embeddings
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.base import Searcher
from automl_transfer.store import TrialStore
from automl_transfer.trial import Trial

_METRICS = ("valid_accuracy", "test_accuracy", "reward", "wall_time_s")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


# These hold a float or "disable": their columns are strings so a column's type never changes.
_STRING_DECISIONS = ("deep_l2", "wide_l1")


def _column_value(decision: str, value: Any) -> Any:
    return str(value) if decision in _STRING_DECISIONS else value


def _hparams(trial: Trial) -> dict[str, Any]:
    """A trial's session values for the HParams dashboard: one type per column. The stored form of
    the config: a paper-space trial has the paper's 12 decisions, not the extended wide fields."""
    stored = json.loads(trial.config.to_json())
    values = {name: _column_value(name, value) for name, value in stored.items()}
    values.update(task=trial.task, searcher=trial.searcher)
    return values


def _hparams_experiment(space: SearchSpace, tasks: Sequence[str], searchers: Sequence[str]
                        ) -> list[hp.HParam]:
    """The dashboard's columns: every decision with all its options (the dashboard's filters
    list them), then the task and the searcher."""
    columns = [hp.HParam(d.name, hp.Discrete([_column_value(d.name, o) for o in d.options]))
               for d in space.decisions]
    return columns + [hp.HParam("task", hp.Discrete(list(tasks))),
                      hp.HParam("searcher", hp.Discrete(list(searchers)))]


class TensorBoardLogger(Callback):
    """Experiment-loop callback writing scalars, images and HParams sessions as trials finish.

    Args:
        log_dir: the experiment (run) directory; events go to <log_dir>/tensorboard/.
        top_n: N of accuracy-topN.
        image_every: trials between two task-similarity images.
    """

    def __init__(self, log_dir: str | Path, *, top_n: int = metrics.DEFAULT_TOP_N,
                 image_every: int = 50):
        self.run_dir = Path(log_dir)
        self.root = self.run_dir / "tensorboard"
        self.top_n = top_n
        self.image_every = image_every
        self._history: dict[str, dict[int, Trial]] = {}  # task -> trial id -> trial
        self._writers: dict[str, tf.summary.SummaryWriter] = {}
        self._session_counts: dict[str, int] = {}
        self._logged = 0
        self._start = time.monotonic()

    def _writer(self, name: str) -> tf.summary.SummaryWriter:
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.root / name))
        return self._writers[name]

    def on_run_start(self, store: TrialStore, searcher: Searcher, schedule: Sequence[str]
                     ) -> None:
        """Take in the trials a resumed run already has, so its accuracy-topN stays right."""
        stored = store.trials()
        for trial in stored:
            self._history.setdefault(trial.task, {})[trial.trial_id] = trial
        self._logged = len(stored)  # a resumed run's images continue the step, not restart it
        # Rewritten by every run: a resumed run's config (and an older, empty one) is replaced.
        tasks = dict.fromkeys([*schedule_tasks(schedule), *(trial.task for trial in stored)])
        searchers = dict.fromkeys([searcher.name, *(trial.searcher for trial in stored)])
        columns = _hparams_experiment(searcher.space, list(tasks), list(searchers))
        with self._writer("hparams").as_default():
            hp.hparams_config(hparams=columns, metrics=[hp.Metric(m) for m in _METRICS])

    def on_trial_end(self, trial: Trial, searcher: Searcher, store: TrialStore) -> None:
        """Log one finished trial."""
        by_id = self._history.setdefault(trial.task, {})
        by_id[trial.trial_id] = trial
        step = len(by_id)
        self._session_counts[trial.task] = self._session_counts.get(trial.task, 0) + 1
        minutes = max(time.monotonic() - self._start, 1e-9) / 60
        valid, test = metrics.accuracy_top_n(list(by_id.values()), self.top_n)
        with self._writer(f"tasks/{_safe(trial.task)}").as_default(step=step):
            tf.summary.scalar("reward", trial.result.reward)
            tf.summary.scalar(f"accuracy_top{self.top_n}/valid", valid)
            tf.summary.scalar(f"accuracy_top{self.top_n}/test", test)
            tf.summary.scalar("trials_per_minute", self._session_counts[trial.task] / minutes)
            self._controller_stats(searcher, trial.task)
        self._hparams_session(trial)
        self._logged += 1
        if self._logged % self.image_every == 0:
            self._similarity_image(getattr(searcher, "task_embeddings", None))

    def on_run_end(self, store: TrialStore, searcher: Searcher) -> None:
        """Final similarity image."""
        self._similarity_image(getattr(searcher, "task_embeddings", None), at_end=True)

    def close(self) -> None:
        """Flush and close every writer: an interrupted run's last trials reach the event files."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def _controller_stats(self, searcher: Any, task: str) -> None:
        last_update_stats = getattr(searcher, "last_update_stats", None)
        stats = last_update_stats(task) if callable(last_update_stats) else None
        if not stats:
            return
        for key in ("baseline", "advantage", "entropy"):
            if stats.get(key) is not None:
                tf.summary.scalar(f"controller/{key}", float(stats[key]))
        space = getattr(searcher, "space", None)
        options = {d.name: d.options for d in getattr(space, "decisions", ())}
        for decision, probabilities in (stats.get("option_probabilities") or {}).items():
            labels = options.get(decision) or range(len(probabilities))
            for label, probability in zip(labels, probabilities):
                tf.summary.scalar(f"option_probability/{decision}/{_safe(str(label))}",
                                  float(probability))

    def _hparams_session(self, trial: Trial) -> None:
        result = trial.result
        writer = tf.summary.create_file_writer(
            str(self.root / "hparams" / f"trial_{trial.trial_id:06d}"))
        with writer.as_default(step=0):
            hp.hparams(_hparams(trial), trial_id=str(trial.trial_id))
            for name, value in zip(_METRICS, (result.valid_accuracy, result.test_accuracy,
                                              result.reward, result.wall_time_s)):
                tf.summary.scalar(name, float(value or 0.0))
        writer.close()

    def _similarity_image(self, task_embeddings: Any, at_end: bool = False) -> None:
        found = task_embeddings() if callable(task_embeddings) else None
        if found is None and at_end:
            saved = (load_task_embeddings(self.run_dir / name) for name in CONTROLLER_DIRS)
            found = next((embeddings for embeddings in saved if embeddings), None)
        if found is None:
            return
        names, matrix = found
        png = similarity_heatmap_png(names, matrix)
        with self._writer("controller").as_default(step=self._logged):
            tf.summary.image("task_embedding_similarity", tf.image.decode_png(png)[tf.newaxis])
