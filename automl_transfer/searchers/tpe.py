"""TPE: Optuna's Tree-structured Parzen Estimator sampler behind the Searcher contract.

A baseline a user would try today. One Optuna study per task (tasks are independent for TPE),
in memory; every decision is a categorical over its option indices, the module decision over the
indices of the task's allowed modules only. `suggest` asks the task's study, `update` tells it
the reward (validation accuracy; the loop hides test accuracy from every searcher).

Determinism: each ask uses a TPESampler seeded by (seed, task, trial_id), so a suggestion depends
only on those and on the trials the study has been told. Resume: the (task, actions, reward) of
every trial learned from is the saved state; restoring adds them back to fresh studies in the
same order, so a resumed run continues as an uninterrupted one would.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna

from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.base import Searcher
from automl_transfer.trial import Trial

OBSERVATIONS_FILE = "observations.json"
N_STARTUP_TRIALS = 10  # Optuna's default: random trials before TPE models the history

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise


class TPESearcher(Searcher):
    """Optuna TPE, one study per task."""

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int, n_startup_trials: int = N_STARTUP_TRIALS):
        super().__init__(space, seed)
        self.n_startup_trials = n_startup_trials
        self._studies: dict[str, tuple[optuna.Study, dict]] = {}  # task -> (study, distributions)
        self._asked: dict[int, int] = {}  # our trial id -> Optuna trial number, until told
        self._observations: list[dict[str, Any]] = []  # every trial learned from, in order

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "n_startup_trials": self.n_startup_trials}

    def _study(self, task: str, allowed_modules: Sequence[str]) -> tuple[optuna.Study, dict]:
        """The task's study, made at its first suggestion (when its modules are known) and told
        the task's observations so far."""
        if task not in self._studies:
            modules = np.flatnonzero(self.space.module_mask(allowed_modules)).tolist()
            choices = [modules] + [list(range(size)) for size in self.space.sizes[1:]]
            distributions = {d.name: optuna.distributions.CategoricalDistribution(options)
                             for d, options in zip(self.space.decisions, choices)}
            self._studies[task] = (optuna.create_study(direction="maximize"), distributions)
            for observation in self._observations:
                if observation["task"] == task:
                    self._add(task, observation["actions"], observation["reward"])
        return self._studies[task]

    def _add(self, task: str, actions: Sequence[int], reward: float) -> None:
        study, distributions = self._studies[task]
        study.add_trial(optuna.trial.create_trial(
            params={d.name: int(a) for d, a in zip(self.space.decisions, actions)},
            distributions=distributions, value=reward))

    def _sampler(self, task: str, trial_id: int) -> optuna.samplers.TPESampler:
        state = np.random.SeedSequence([self.seed, zlib.crc32(task.encode()), trial_id])
        return optuna.samplers.TPESampler(n_startup_trials=self.n_startup_trials,
                                          seed=int(state.generate_state(1)[0]))

    def suggest(self, trial_id: int, task: str, allowed_modules: Sequence[str]) -> Trial:
        """Ask the task's study, with a sampler seeded by (seed, task, trial_id)."""
        study, distributions = self._study(task, allowed_modules)
        study.sampler = self._sampler(task, trial_id)
        asked = study.ask(distributions)
        self._asked[trial_id] = asked.number
        actions = tuple(int(asked.params[d.name]) for d in self.space.decisions)
        child_seed = int(np.random.default_rng([self.seed, trial_id]).integers(2**31 - 1))
        return Trial(trial_id=trial_id, task=task, config=self.space.to_config(actions),
                     seed=child_seed, searcher=self.name, actions=actions)

    def update(self, trials: Sequence[Trial]) -> None:
        """Tell each trial's study its reward. A trial not asked in this process (replayed on
        resume) is added to the study as a finished one."""
        for trial in trials:
            if not trial.finished or len(trial.actions) != len(self.space.sizes):
                raise ValueError(f"trial {trial.trial_id} is not a finished trial of this space")
            reward = trial.result.reward
            self._observations.append(
                {"task": trial.task, "actions": list(trial.actions), "reward": reward})
            number = self._asked.pop(trial.trial_id, None)
            if number is not None:
                self._studies[trial.task][0].tell(number, reward)
            elif trial.task in self._studies:
                self._add(trial.task, trial.actions, reward)

    def get_state(self) -> dict[str, Any]:
        return {"observations": len(self._observations)}

    def save(self, directory: str) -> None:
        (Path(directory) / OBSERVATIONS_FILE).write_text(json.dumps(self._observations))

    def restore(self, directory: str) -> None:
        """Every saved observation; studies are rebuilt from them at their next suggestion."""
        path = Path(directory) / OBSERVATIONS_FILE
        if path.is_file():
            self._studies, self._asked = {}, {}
            self._observations = json.loads(path.read_text())
