"""The one contract every searcher follows (random search, single-task, multitask, transfer).

Modelled on OSS Vizier's designer (suggest / update) and KerasTuner's Stateful (get/set state):
- `suggest` proposes a configuration for one task and changes no learned state; it is
  deterministic given (seed, trial_id), so a resumed run suggests what the first run would have.
- `update` learns from finished trials (several may be in flight; each carries what was sampled).
- `get_state` / `set_state`: what must survive a restart, kept apart from settings (constructor
  arguments are settings, not state).
The experiment loop never asks which searcher it has.
"""
from __future__ import annotations

import abc
from typing import Any, Sequence

from automl_transfer.search_space import SearchSpace
from automl_transfer.trial import Trial


class Searcher(abc.ABC):
    """Base class. `name` is recorded with every trial it suggests."""

    name: str = "searcher"
    # Folder of <experiment_dir> that holds the checkpoint `save` writes (controllers: controller/).
    state_dirname: str = "searcher"

    def __init__(self, space: SearchSpace, seed: int):
        self.space = space
        self.seed = seed

    @abc.abstractmethod
    def suggest(self, trial_id: int, task: str, allowed_modules: Sequence[str]) -> Trial:
        """A new pending Trial for `task`, its module one of `allowed_modules`."""

    @abc.abstractmethod
    def update(self, trials: Sequence[Trial]) -> None:
        """Learn from finished trials (reward = validation accuracy only)."""

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state that must survive a restart."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what `get_state` returned."""

    def settings(self) -> dict[str, Any]:
        """Settings a resume must match (mode, seed, ...); refused if they differ."""
        return {"searcher": self.name, "seed": self.seed, "space": self.space.fingerprint()}

    def save(self, directory: str) -> None:
        """Write large state (weights) under `directory`; small searchers keep all in get_state."""

    def restore(self, directory: str) -> None:
        """Read what `save` wrote, if anything."""
