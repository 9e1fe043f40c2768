"""The paper's RL searchers: one controller over many tasks (multitask), one per task (single),
and a pre-trained controller carried to new tasks (transfer). See docs/method.md.

Training is REINFORCE with one update per finished child (batch size 1): the loss is
-A' * log pi(actions | task) - entropy_weight * H, with A' the per-task normalised advantage of
the trial's validation accuracy (normaliser.py). The update uses the actions stored on the Trial,
so trials that finish late, or after a restart, still train the controller correctly.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from automl_transfer.errors import ResumeError, UserError
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers import controller_io
from automl_transfer.searchers.base import Searcher
from automl_transfer.searchers.controller_network import ControllerNetwork
from automl_transfer.searchers.normaliser import ALPHA, RewardNormaliser
from automl_transfer.searchers.presets import PRESETS, resolve_settings  # noqa: F401 (re-export)
from automl_transfer.trial import Trial


FIRST_SUGGESTIONS = ("sample", "argmax")
NEW_TASK_INITS = ("random", "mean")


def _check_tasks(tasks: Sequence[str]) -> None:
    if not tasks or len(set(tasks)) != len(tasks):
        raise UserError(f"a controller needs distinct task names, got {list(tasks)}")


class ControllerSearcher(Searcher):
    """One controller shared by `tasks` (the multitask searcher; also the unit of the others)."""

    name = "multitask"
    state_dirname = "controller"

    def __init__(self, space: SearchSpace, seed: int, tasks: Sequence[str],
                 learning_rate: float | None = None, entropy_weight: float | None = None,
                 preset: str = "default", alpha: float = ALPHA, first_suggestion: str = "sample",
                 new_task_init: str = "random"):
        """`first_suggestion`: "sample" (as the paper) or "argmax" (the policy's most likely
        configuration as a task's first trial). `new_task_init`: a task added later (transfer)
        starts from a "random" embedding (as the paper) or the "mean" of the existing ones."""
        super().__init__(space, seed)
        if first_suggestion not in FIRST_SUGGESTIONS or new_task_init not in NEW_TASK_INITS:
            raise UserError(f"first_suggestion must be one of {FIRST_SUGGESTIONS} and "
                            f"new_task_init one of {NEW_TASK_INITS}")
        self.first_suggestion, self.new_task_init = first_suggestion, new_task_init
        _check_tasks(tasks)
        self.preset = preset
        self.learning_rate, self.entropy_weight = resolve_settings(preset, learning_rate,
                                                                   entropy_weight)
        self.tasks: list[str] = list(tasks)
        self.normaliser = RewardNormaliser(alpha)
        self.allowed_modules: dict[str, list[str]] = {}
        self.num_updates = 0
        self._last_update: dict[str, dict[str, Any]] = {}  # task -> for last_update_stats
        self.source: dict[str, Any] | None = None  # set by a transfer
        self._suggested: set[str] = set()
        self._set_network(ControllerNetwork(space.sizes, len(self.tasks), seed=seed))

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_saved(cls, directory: str | Path, new_tasks: Sequence[str], seed: int, *,
                   space: SearchSpace | None = None, learning_rate: float | None = None,
                   entropy_weight: float | None = None, preset: str = "default",
                   first_suggestion: str = "sample", new_task_init: str = "random"
                   ) -> "ControllerSearcher":
        """Transfer: the controller saved in `directory`, with a fresh task embedding for each
        of `new_tasks` and every other weight kept; fresh optimizer and normaliser statistics
        for the new tasks (a task the controller already knows keeps its row). `space`
        (default: the saved one) must equal the saved space."""
        if space is None:
            space = _space_from_saved(directory)
        loaded = controller_io.load_controller(directory, space)
        searcher = cls(space, seed, loaded.tasks, learning_rate, entropy_weight, preset,
                       first_suggestion=first_suggestion, new_task_init=new_task_init)
        searcher.name = "transfer"
        searcher._set_network(loaded.network)
        searcher.normaliser.set_state(loaded.normaliser)
        searcher.source = {"directory": str(directory), "tasks": list(loaded.tasks)}
        for task in new_tasks:
            if task not in searcher.tasks:
                searcher.add_task(task)
        return searcher

    def add_task(self, task: str) -> None:
        """Append a randomly initialised embedding row for `task`; shared weights unchanged.
        The optimizer restarts (its slots are sized by the old table)."""
        if task in self.tasks:
            raise UserError(f"task '{task}' already has an embedding in this controller")
        grown = self.network.with_tasks(len(self.tasks) + 1,
                                        seed=self.seed * 7919 + len(self.tasks),
                                        mean_init=self.new_task_init == "mean")
        self.tasks.append(task)
        self._set_network(grown)

    def _set_network(self, network: ControllerNetwork) -> None:
        self.network = network
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self.optimizer.build(network.trainable_variables)
        num_decisions, num_modules = len(self.space.sizes), self.space.sizes[0]
        index_spec = tf.TensorSpec([], tf.int32)
        actions_spec = tf.TensorSpec([num_decisions], tf.int32)
        mask_spec = tf.TensorSpec([num_modules], tf.bool)
        scalar = tf.TensorSpec([], tf.float32)
        self._sample = tf.function(network.sample, input_signature=[
            index_spec, mask_spec, tf.TensorSpec([2], tf.int32)])
        self._greedy = tf.function(functools.partial(network.sample, greedy=True),
                                   input_signature=[index_spec, mask_spec,
                                                    tf.TensorSpec([2], tf.int32)])
        self._log_prob = tf.function(network.log_prob_and_entropy, input_signature=[
            index_spec, actions_spec, mask_spec])

        variables = network.trainable_variables

        # Two graphs rather than one: tracing them separately is several times faster (seconds
        # per controller), and the step runs as fast.
        @tf.function(input_signature=[index_spec, actions_spec, mask_spec, scalar, scalar])
        def gradients(task_index, actions, module_mask, advantage, entropy_weight):
            with tf.GradientTape() as tape:
                log_prob, entropy = network.log_prob_and_entropy(task_index, actions, module_mask)
                loss = -advantage * log_prob - entropy_weight * entropy
            return tape.gradient(loss, variables)

        @tf.function(input_signature=[[tf.TensorSpec(v.shape, v.dtype) for v in variables]])
        def apply(grads):
            self.optimizer.apply_gradients(zip(grads, variables))

        self._gradients, self._apply = gradients, apply

    # --- the Searcher contract ----------------------------------------------------------------

    def _task_index(self, task: str) -> int:
        try:
            return self.tasks.index(task)
        except ValueError:
            raise UserError(f"task '{task}' is not one of this controller's tasks "
                            f"{self.tasks}") from None

    def _mask(self, task: str) -> np.ndarray:
        return self.space.module_mask(self.allowed_modules.get(task, self.space.modules))

    def suggest(self, trial_id: int, task: str, allowed_modules: Sequence[str]) -> Trial:
        """Sample from the current policy; fixed by (weights, seed, trial_id)."""
        index = self._task_index(task)
        mask = self.space.module_mask(allowed_modules)
        # Remembered so that an update (perhaps after a restart) masks as the sample did.
        self.allowed_modules[task] = [m for m, ok in zip(self.space.modules, mask) if ok]
        rng = np.random.default_rng([self.seed, trial_id])
        child_seed = int(rng.integers(2**31 - 1))
        sample_seed = rng.integers(2**31 - 1, size=2).astype(np.int32)
        # A task's first trial (nothing learned from it yet, nothing suggested in this process).
        greedy = self.first_suggestion == "argmax" and task not in self._suggested and not (
            task in self.normaliser.stats and self.normaliser.stats[task].count)
        self._suggested.add(task)
        actions, log_prob, _ = (self._greedy if greedy else self._sample)(
            tf.constant(index, tf.int32), tf.constant(mask), tf.constant(sample_seed))
        actions = tuple(int(a) for a in actions.numpy())
        return Trial(trial_id=trial_id, task=task, config=self.space.to_config(actions),
                     seed=child_seed, searcher=self.name, actions=actions,
                     log_prob=float(log_prob))

    def update(self, trials: Sequence[Trial]) -> None:
        """One REINFORCE step per finished trial, in the order given."""
        for trial in trials:
            if not trial.finished or len(trial.actions) != len(self.space.sizes):
                raise ValueError(f"trial {trial.trial_id} is not a finished controller trial")
            baseline = self.normaliser.stats.get(trial.task)
            advantage = self.normaliser.normalise(trial.task, trial.result.reward)
            self._last_update[trial.task] = {
                "baseline": baseline.mean if baseline and baseline.count else None,
                "advantage": advantage, "actions": trial.actions}
            self._apply(self._gradients(
                tf.constant(self._task_index(trial.task), tf.int32),
                tf.constant(trial.actions, tf.int32), tf.constant(self._mask(trial.task)),
                tf.constant(advantage, tf.float32), tf.constant(self.entropy_weight, tf.float32)))
            self.num_updates += 1

    def last_update_stats(self, task: str) -> dict[str, Any] | None:
        """For TensorBoard: baseline and advantage of the task's last update, the policy's
        entropy and each decision's option probabilities after it (teacher-forced on the
        trial's actions)."""
        last = self._last_update.get(task)
        if last is None:
            return None
        _, entropy = self.log_prob(task, last["actions"])
        probabilities = self.probabilities(task, last["actions"])
        return {"baseline": last["baseline"], "advantage": last["advantage"], "entropy": entropy,
                "option_probabilities": {d.name: probabilities[i, :d.size].tolist()
                                         for i, d in enumerate(self.space.decisions)}}

    def task_embeddings(self) -> tuple[list[str], np.ndarray]:
        """(task names, [tasks, 25] embedding matrix): what the similarity heatmap shows."""
        return list(self.tasks), self.network.task_embeddings.numpy()

    def log_prob(self, task: str, actions: Sequence[int]) -> tuple[float, float]:
        """(log-probability, entropy) of `actions` for `task` under the current policy."""
        log_prob, entropy = self._log_prob(tf.constant(self._task_index(task), tf.int32),
                                           tf.constant(actions, tf.int32),
                                           tf.constant(self._mask(task)))
        return float(log_prob), float(entropy)

    def probabilities(self, task: str, actions: Sequence[int]) -> np.ndarray:
        """Teacher-forced option probabilities, [decisions, max options], zero-padded."""
        return self.network.padded_probabilities(
            tf.constant(self._task_index(task), tf.int32), tf.constant(actions, tf.int32),
            tf.constant(self._mask(task))).numpy()

    def get_state(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "normaliser": self.normaliser.get_state(),
                "allowed_modules": dict(self.allowed_modules), "num_updates": self.num_updates}

    def set_state(self, state: dict[str, Any]) -> None:
        if state["tasks"] != self.tasks:
            raise ResumeError(f"saved controller state is for tasks {state['tasks']}, "
                              f"this run has {self.tasks}")
        self.normaliser.set_state(state["normaliser"])
        self.allowed_modules = {t: list(m) for t, m in state["allowed_modules"].items()}
        self.num_updates = int(state["num_updates"])

    def settings(self) -> dict[str, Any]:
        values = super().settings()
        values.update(tasks=list(self.tasks), preset=self.preset,
                      learning_rate=self.learning_rate, entropy_weight=self.entropy_weight,
                      alpha=self.normaliser.alpha)
        if self.source:
            values["transferred_from"] = self.source
        # Only when not the paper's choice: runs recorded before these options resume unchanged.
        if self.first_suggestion != "sample":
            values["first_suggestion"] = self.first_suggestion
        if self.new_task_init != "random":
            values["new_task_init"] = self.new_task_init
        return values

    def save(self, directory: str) -> None:
        """SavedModel + JSON (controller_io) with the optimizer's slots, into `directory`."""
        controller_io.save_controller(directory, self.network, self.space, self.tasks,
                                      self.normaliser.get_state(), self.settings(),
                                      extra_state=self.get_state(), optimizer=self.optimizer)

    def restore(self, directory: str) -> None:
        """Weights, optimizer slots and state as `save` wrote them; tasks must match."""
        loaded = controller_io.load_controller(directory, self.space)
        if loaded.tasks != self.tasks:
            raise ResumeError(f"controller at {directory} has tasks {loaded.tasks}, "
                              f"this run has {self.tasks}")
        self.network.set_named_values(loaded.network.get_named_values())
        controller_io.restore_optimizer(directory, self.optimizer)
        self.set_state(loaded.extra_state)


class PerTaskControllerSearcher(Searcher):
    """The single-task baseline (the paper's NAML): an independent controller per task."""

    name = "single"
    state_dirname = "controller"

    def __init__(self, space: SearchSpace, seed: int, tasks: Sequence[str],
                 **controller_settings: Any):
        """`controller_settings`: learning_rate, entropy_weight, preset, alpha, as for
        ControllerSearcher; every task's controller gets the same."""
        super().__init__(space, seed)
        _check_tasks(tasks)
        self.controllers: dict[str, ControllerSearcher] = {}
        for i, task in enumerate(tasks):
            controller = ControllerSearcher(space, seed * 1000 + i, [task], **controller_settings)
            controller.name = self.name
            self.controllers[task] = controller

    def last_update_stats(self, task: str) -> dict[str, Any] | None:
        """For TensorBoard: the task's own controller's last update (see ControllerSearcher)."""
        return self._controller(task).last_update_stats(task)

    def _controller(self, task: str) -> ControllerSearcher:
        if task not in self.controllers:
            raise UserError(f"task '{task}' is not one of this searcher's tasks "
                            f"{list(self.controllers)}")
        return self.controllers[task]

    def suggest(self, trial_id: int, task: str, allowed_modules: Sequence[str]) -> Trial:
        return self._controller(task).suggest(trial_id, task, allowed_modules)

    def update(self, trials: Sequence[Trial]) -> None:
        for trial in trials:
            self._controller(trial.task).update([trial])

    def get_state(self) -> dict[str, Any]:
        return {task: c.get_state() for task, c in self.controllers.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        if sorted(state) != sorted(self.controllers):
            raise ResumeError(f"saved state is for tasks {sorted(state)}, "
                              f"this run has {sorted(self.controllers)}")
        for task, controller in self.controllers.items():
            controller.set_state(state[task])

    def settings(self) -> dict[str, Any]:
        first = next(iter(self.controllers.values()))
        values = super().settings()
        values.update(tasks=list(self.controllers), preset=first.preset,
                      learning_rate=first.learning_rate, entropy_weight=first.entropy_weight,
                      alpha=first.normaliser.alpha)
        return values

    def save(self, directory: str) -> None:
        """One controller directory per task: `<directory>/task_<i>` in task order."""
        for i, controller in enumerate(self.controllers.values()):
            controller.save(str(Path(directory) / f"task_{i}"))

    def restore(self, directory: str) -> None:
        for i, controller in enumerate(self.controllers.values()):
            controller.restore(str(Path(directory) / f"task_{i}"))


def _space_from_saved(directory: str | Path) -> SearchSpace:
    """The search space a controller was saved with (its modules and its space name)."""
    path = Path(directory) / controller_io.METADATA_FILE
    try:
        return SearchSpace.from_json(json.loads(path.read_text())["space"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise controller_io.ControllerLoadError(
            f"no readable saved controller at {directory}: {err}") from None
