"""Random search: the paper's baseline. Stateless: trial `i` of seed `s` is always the same."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from automl_transfer.searchers.base import Searcher
from automl_transfer.trial import Trial


class RandomSearcher(Searcher):
    """Uniform over every decision (the module restricted to the task's modality)."""

    name = "random"

    def suggest(self, trial_id: int, task: str, allowed_modules: Sequence[str]) -> Trial:
        rng = np.random.default_rng([self.seed, trial_id])
        actions = self.space.sample_actions(rng, allowed_modules)
        return Trial(trial_id=trial_id, task=task, config=self.space.to_config(actions),
                     seed=int(rng.integers(2**31 - 1)), searcher=self.name, actions=tuple(actions))

    def update(self, trials: Sequence[Trial]) -> None:
        """Random search learns nothing."""
