"""The controller: an autoregressive LSTM policy over the 12 decisions, conditioned on the task.

Shape follows the paper (section 4): a 2-layer LSTM of 50 units stepped once per decision; the
input at each step is the previous action's embedding (a learned start embedding at step 0)
concatenated with the task's embedding (both of size 25); one softmax head per decision. The
heads also see the step input directly (a skip connection across the LSTM), so a marginal
preference for an option, or a task-specific one, is one linear map away. Every weight starts
uniform in [-init_scale, init_scale], so the initial policy is close to uniform.

Task embeddings are the only task-specific weights: one row per task, in the order the searcher
keeps its task names. `with_tasks` grows the table for transfer and keeps every other weight.
"""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

UNITS = 50
EMBEDDING_SIZE = 25
INIT_SCALE = 0.05
TASK_INIT_SCALE = 0.05
_MASKED_LOGIT = -1e9  # finite, so masked options give p = 0 and no NaN in p * log p


class ControllerNetwork(keras.Model):
    """Policy network; `sizes` are the option counts of the decisions, in order."""

    def __init__(self, sizes: Sequence[int], num_tasks: int, seed: int = 0,
                 units: int = UNITS, embedding_size: int = EMBEDDING_SIZE,
                 init_scale: float = INIT_SCALE, task_init_scale: float = TASK_INIT_SCALE,
                 **kwargs):
        super().__init__(**kwargs)
        if num_tasks < 1:
            raise ValueError("a controller needs at least one task")
        self.sizes = [int(s) for s in sizes]
        self.num_tasks = int(num_tasks)
        self.seed = int(seed)
        self.units = units
        self.embedding_size = embedding_size
        self.init_scale = init_scale
        self.task_init_scale = task_init_scale
        counter = iter(range(1, 10_000))

        def init(scale: float = init_scale) -> keras.initializers.Initializer:
            # A distinct seed per weight: an initializer with a fixed seed repeats its values.
            return keras.initializers.RandomUniform(-scale, scale,
                                                    seed=self.seed * 10_000 + next(counter))

        self.task_embeddings = self.add_weight(shape=(num_tasks, embedding_size),
                                               initializer=init(task_init_scale),
                                               name="task_embeddings")
        self.start_embedding = self.add_weight(shape=(embedding_size,), initializer=init(),
                                               name="start_embedding")
        # The last decision's action is never fed back, so it needs no table.
        self.action_embeddings = [
            self.add_weight(shape=(size, embedding_size), initializer=init(),
                            name=f"action_embedding_{i}")
            for i, size in enumerate(self.sizes[:-1])]
        step_input = 2 * embedding_size
        self.cells = []
        for layer in range(2):
            cell = keras.layers.LSTMCell(units, kernel_initializer=init(),
                                         recurrent_initializer=init(), bias_initializer=init(),
                                         unit_forget_bias=False, name=f"lstm_{layer}")
            cell.build((None, step_input if layer == 0 else units))
            self.cells.append(cell)
        self.heads = []
        for i, size in enumerate(self.sizes):
            head = keras.layers.Dense(size, kernel_initializer=init(), bias_initializer=init(),
                                      name=f"head_{i}")
            head.build((None, units + step_input))
            self.heads.append(head)

    def named_weights(self) -> list[tuple[str, keras.Variable]]:
        """Every weight under a name that does not depend on Keras' layer numbering."""
        named = [("task_embeddings", self.task_embeddings),
                 ("start_embedding", self.start_embedding)]
        named += [(f"action_embedding_{i}", w) for i, w in enumerate(self.action_embeddings)]
        for layer, cell in enumerate(self.cells):
            named += [(f"lstm_{layer}/kernel", cell.kernel),
                      (f"lstm_{layer}/recurrent_kernel", cell.recurrent_kernel),
                      (f"lstm_{layer}/bias", cell.bias)]
        for i, head in enumerate(self.heads):
            named += [(f"head_{i}/kernel", head.kernel), (f"head_{i}/bias", head.bias)]
        return named

    def get_named_values(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(w.numpy()) for name, w in self.named_weights()}

    def set_named_values(self, values: dict[str, np.ndarray]) -> None:
        """Assign saved values; names and shapes must match exactly."""
        for name, weight in self.named_weights():
            if name not in values:
                raise ValueError(f"saved controller has no weight '{name}'")
            value = np.asarray(values[name])
            if tuple(value.shape) != tuple(weight.shape):
                raise ValueError(f"weight '{name}': saved shape {value.shape}, "
                                 f"expected {tuple(weight.shape)}")
            weight.assign(value)

    def with_tasks(self, num_tasks: int, seed: int, mean_init: bool = False) -> "ControllerNetwork":
        """A copy with `num_tasks` task rows: existing rows and all shared weights kept, new
        rows freshly random (drawn from `seed`), or the mean of the existing rows."""
        if num_tasks < self.num_tasks:
            raise ValueError("a controller's task table can only grow")
        grown = ControllerNetwork(self.sizes, num_tasks, seed=seed, units=self.units,
                                  embedding_size=self.embedding_size, init_scale=self.init_scale,
                                  task_init_scale=self.task_init_scale)
        values = self.get_named_values()
        table = grown.task_embeddings.numpy()
        table[: self.num_tasks] = values["task_embeddings"]
        if mean_init:
            table[self.num_tasks:] = values["task_embeddings"].mean(axis=0)
        values["task_embeddings"] = table
        grown.set_named_values(values)
        return grown

    # --- the policy ---------------------------------------------------------------------------

    def _initial_state(self) -> list[list[tf.Tensor]]:
        zeros = tf.zeros((1, self.units))
        return [[zeros, zeros] for _ in self.cells]

    def _step(self, index: int, prev_embedding: tf.Tensor, task_embedding: tf.Tensor,
              states: list, module_mask: tf.Tensor) -> tuple[tf.Tensor, list]:
        """Logits of decision `index` ([options]) and the new LSTM states."""
        step_input = tf.concat([prev_embedding, task_embedding], axis=0)[tf.newaxis, :]
        hidden = step_input
        new_states = []
        for cell, state in zip(self.cells, states):
            hidden, state = cell(hidden, state)
            new_states.append(state)
        logits = self.heads[index](tf.concat([hidden, step_input], axis=1))[0]
        if index == 0:  # the module decision: only the task's allowed modules
            logits = tf.where(module_mask, logits, tf.fill(tf.shape(logits), _MASKED_LOGIT))
        return logits, new_states

    def _prev_embedding(self, index: int, prev_action: tf.Tensor) -> tf.Tensor:
        if index == 0:
            return tf.convert_to_tensor(self.start_embedding)
        return tf.gather(self.action_embeddings[index - 1], prev_action)

    def step_logits(self, task_index: tf.Tensor, actions: tf.Tensor,
                    module_mask: tf.Tensor) -> list[tf.Tensor]:
        """Teacher-forced logits of every decision given `actions` (differentiable)."""
        task_embedding = tf.gather(self.task_embeddings, task_index)
        states = self._initial_state()
        all_logits = []
        for index in range(len(self.sizes)):
            prev = self._prev_embedding(index, actions[index - 1] if index else None)
            logits, states = self._step(index, prev, task_embedding, states, module_mask)
            all_logits.append(logits)
        return all_logits

    def log_prob_and_entropy(self, task_index: tf.Tensor, actions: tf.Tensor,
                             module_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """log pi(actions | task) and the summed entropy of the per-step distributions."""
        log_prob = tf.constant(0.0)
        entropy = tf.constant(0.0)
        for index, logits in enumerate(self.step_logits(task_index, actions, module_mask)):
            log_p = tf.nn.log_softmax(logits)
            log_prob += log_p[actions[index]]
            entropy -= tf.reduce_sum(tf.exp(log_p) * log_p)
        return log_prob, entropy

    def sample(self, task_index: tf.Tensor, module_mask: tf.Tensor, seed: tf.Tensor,
               greedy: bool = False) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Draw one configuration; stateless randomness, so (weights, seed) fixes the result.
        `greedy`: the most likely option of every decision instead (seed unused).

        Returns (actions int32 [decisions], log-probability, entropy).
        """
        task_embedding = tf.gather(self.task_embeddings, task_index)
        states = self._initial_state()
        actions = []
        log_prob = tf.constant(0.0)
        entropy = tf.constant(0.0)
        action = None
        for index in range(len(self.sizes)):
            prev = self._prev_embedding(index, action)
            logits, states = self._step(index, prev, task_embedding, states, module_mask)
            step_seed = tf.random.experimental.stateless_fold_in(seed, index)
            action = tf.argmax(logits, output_type=tf.int32) if greedy else \
                tf.random.stateless_categorical(logits[tf.newaxis, :], 1, step_seed,
                                                dtype=tf.int32)[0, 0]
            log_p = tf.nn.log_softmax(logits)
            log_prob += log_p[action]
            entropy -= tf.reduce_sum(tf.exp(log_p) * log_p)
            actions.append(action)
        return tf.stack(actions), log_prob, entropy

    def padded_probabilities(self, task_index: tf.Tensor, actions: tf.Tensor,
                             module_mask: tf.Tensor) -> tf.Tensor:
        """Teacher-forced probabilities, [decisions, max options], zero-padded (for export and
        comparisons)."""
        width = max(self.sizes)
        rows = [tf.pad(tf.nn.softmax(logits), [[0, width - size]])
                for logits, size in zip(self.step_logits(task_index, actions, module_mask),
                                        self.sizes)]
        return tf.stack(rows)
