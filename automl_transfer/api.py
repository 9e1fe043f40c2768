"""The Python API: search, export and predict from a notebook, estimator style.

    from automl_transfer.api import TextClassifierSearch
    search = TextClassifierSearch("runs/reviews", trials=20)   # transfer from the shipped controller
    search.fit(texts, labels)          # or search.fit("reviews.csv")
    search.trials                      # every finished trial (config, accuracies, times)
    search.export("runs/reviews_model")
    search.predict(["a new review"])   # class names

It is the CLI's code path with arguments instead of flags: `fit` is `run_search` (search.py),
`export` is export.py's `export_model`, `predict` loads the exported SavedModel (predict.py). A
directory is one run, as with `--experiment_dir`: fitting again resumes or extends it.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automl_transfer.errors import UserError
from automl_transfer.export import DEFAULT_RETRAIN_SEEDS, DEFAULT_TOP_K, export_model
from automl_transfer.predict import Predictor
from automl_transfer.search import SearchOptions, run_search
from automl_transfer.store import STORE_FILE, TrialStore
from automl_transfer.trial import Trial

MODEL_DIR = "model"  # under the run directory, where `predict` exports if `export` was not called


class TextClassifierSearch:
    """One architecture search for one text classification task, and its deployed model."""

    def __init__(self, directory: str | Path, trials: int = 20, mode: str = "transfer",
                 controller_dir: str | None = None, seed: int = 0, **options: Any):
        """`mode`: transfer (default: from the shipped controller, or `controller_dir`), random,
        single or multitask. `options`: any other SearchOptions field (modules,
        module_handles, data_dir, cache_dir, preset, max_in_flight, tensorboard, ...)."""
        self.directory = Path(directory).expanduser()
        self._options = dict(mode=mode, trials=trials, controller_dir=controller_dir, seed=seed,
                             experiment_dir=str(self.directory), tensorboard=False, **options)
        self.model_dir: Path | None = None
        self._predictor: Predictor | None = None

    def fit(self, x: str | Path | Sequence[str], y: Sequence[Any] | None = None,
            name: str = "task") -> "TextClassifierSearch":
        """Search on a CSV task file (`x` a path; columns text,label[,split]) or on texts `x`
        with labels `y` (written to <directory>.tasks/<name>.csv, outside the run directory that
        overwrite=True empties; split 80/10/10 as any CSV)."""
        if isinstance(x, (str, Path)):
            task = str(Path(x).expanduser())
        else:
            task = str(self._write_task(list(x), y, name))
        run_search(SearchOptions(tasks=[task], **self._options))
        return self

    def _write_task(self, texts: list[str], labels: Sequence[Any] | None, name: str) -> Path:
        if labels is None or len(labels) != len(texts):
            raise UserError(f"fit needs one label per text: {len(texts)} texts, "
                            f"{'no' if labels is None else len(labels)} labels")
        folder = self.directory.with_name(self.directory.name + ".tasks")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, (str(label) for label in labels)))
        return path

    @property
    def trials(self) -> list[Trial]:
        """Every finished trial of the run, by id (the store is the record)."""
        if not (self.directory / STORE_FILE).is_file():
            return []
        with TrialStore(self.directory / STORE_FILE) as store:
            return store.trials()

    def export(self, export_dir: str | Path, top_k: int = DEFAULT_TOP_K,
               retrain_seeds: int = DEFAULT_RETRAIN_SEEDS) -> dict[str, Any]:
        """Re-train the top-k configurations, export the most robust to `export_dir` (a
        SavedModel) and return its card (export.py)."""
        card = export_model(self.directory, export_dir, top_k=top_k, retrain_seeds=retrain_seeds,
                            log=print)
        self.model_dir, self._predictor = Path(export_dir).expanduser(), None
        return card

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities [texts, classes] (order: `class_names`) from the exported model,
        exporting it to <directory>/model first if `export` was not called."""
        return self._loaded().predict(list(texts))[0]

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The predicted class name of each text (see `predict_proba`)."""
        return self._loaded().predict(list(texts))[1]

    @property
    def class_names(self) -> list[str]:
        return self._loaded().class_names

    def _loaded(self) -> Predictor:
        if self._predictor is None:
            if self.model_dir is None:
                self.export(self.directory / MODEL_DIR)
            self._predictor = Predictor(self.model_dir)
        return self._predictor
