"""The wide-and-deep child: raw tf.Variables, training in one graph called in chunks, batched evaluation.

Deep tower: module features (frozen, a fine-tuned restricted table, or a fine-tuned generic text
or image module) -> hidden layers (dense, normalisation, activation, dropout) -> logits; Proximal Adagrad
with the config's L2. Wide tower: bag of task-vocabulary terms -> logits (a sparse lookup of a
[vocabulary, classes] table, each row times the term's weight when the features are weighted);
Proximal Adagrad with the config's L1. The logits add.

Training runs inside one tf.function (a tf.while_loop over precomputed batch indices), so a step
costs no Python; the loop stops early once the loss is NaN/inf. A long child calls it once per
chunk of steps (about a second each), scoring only in the last call: between calls Python runs,
so a stop signal takes effect within about a second, not after the whole child. Dropout uses
stateless random ops seeded by (trial seed, step), and weights are initialised from a numpy RNG,
so a seed fixes the result, however the steps are chunked.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from automl_transfer.child.features import ModuleFeatures, TaskFeatures, WideFeatures
from automl_transfer.child.proximal_adagrad import ProximalAdagrad
from automl_transfer.search_space import Config

BATCH_SIZE = 100
# Training runs in calls of the training graph of about CALL_SECONDS each (the first of
# FIRST_CALL_STEPS steps, later ones sized by the rate measured so far): a stop waits about that
# long, not the rest of a child that can train for minutes; beside a second, what a call costs
# was not visible (benchmarks/stop_latency.py). Chunking does not change a seed's result.
FIRST_CALL_STEPS = 200
CALL_SECONDS = 1.0
EVAL_CHUNK = 1000  # documents scored at once
IMAGE_EVAL_CHUNK = 100  # images through a fine-tuned CNN at once (its activations are large)
# Up to this many steps, Grappler's graph optimisation of the child's graph costs more than it
# saves (measured: ~0.1 s per trial saved, the run of a short trial slowed by far less).
GRAPPLER_MIN_STEPS = 301
_NORM_EPSILON = 1e-3
_BATCH_NORM_MOMENTUM = 0.9  # the shortest children train 10 steps: 0.99 would barely move the stats


def _swish(h: tf.Tensor) -> tf.Tensor:
    """x * sigmoid(x) in plain ops: tf.nn.silu's custom gradient is slow to trace."""
    return h * tf.sigmoid(h)


_ACTIVATIONS = {"relu": tf.nn.relu, "swish": _swish}


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> tf.Variable:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return tf.Variable(rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32))


def _zeros(*shape: int) -> tf.Variable:
    return tf.Variable(np.zeros(shape, np.float32))


@contextlib.contextmanager
def _grappler(enabled: bool) -> Iterator[None]:
    """Run tf.functions first called inside with Grappler on or off, then restore the setting.
    (A function keeps the instantiation it got; the option only matters at its first call.)"""
    previous = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not enabled})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})


def _bag_lookup(table: tf.Variable, values: tf.Tensor, row_splits: tf.Tensor, mean: bool,
                weights: tf.Tensor | None = None) -> tf.Tensor:
    """Sum (or mean) of each document's rows, each times its weight if given (a weighted mean
    divides by the weights' sum); the table's gradient is sparse (IndexedSlices).

    Raw ragged kernels, not tf.ragged helpers: those build dozens of small ops per call, and
    tracing them dominated the setup of short trials.
    """
    num_docs = tf.size(row_splits) - 1
    segments = tf.raw_ops.RaggedTensorToSparse(rt_nested_splits=[row_splits],
                                               rt_dense_values=values).sparse_indices[:, 0]
    rows = tf.gather(table, values)
    if weights is not None:
        rows = rows * weights[:, None]
    sums = tf.math.unsorted_segment_sum(rows, segments, num_docs)
    if not mean:
        return sums
    if weights is None:
        totals = tf.cast(row_splits[1:] - row_splits[:-1], tf.float32)
    else:
        totals = tf.math.unsorted_segment_sum(weights, segments, num_docs)
    return tf.math.divide_no_nan(sums, totals[:, None])


def _gather_bags(values: tf.Tensor, row_splits: tf.Tensor, docs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Documents `docs` of a ragged set, in one kernel (see `_bag_lookup` on tracing cost)."""
    (splits,), batch_values = tf.raw_ops.RaggedGather(
        params_nested_splits=[row_splits], params_dense_values=values, indices=docs, OUTPUT_RAGGED_RANK=1)
    return batch_values, splits


class _ImageRows:
    """Images of one or more splits, read from their memory maps a batch at a time: a task's
    images at a CNN's input size (CIFAR-10 at 224 px: 6.7 GB) never become one tensor."""

    def __init__(self, *parts: np.ndarray):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]),) + parts[0].shape[1:]

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        part = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows),) + self.shape[1:], np.uint8)
        for p in np.unique(part):
            where = part == p
            out[where] = self.parts[p][rows[where] - self.starts[p]]
        return out

    def gather(self, docs: tf.Tensor) -> tf.Tensor:
        """float32 [len(docs), h, w, 3] in [0, 1], as the module takes them."""
        batch = tf.numpy_function(lambda rows: self.take(rows.astype(np.int64)), [docs], tf.uint8,
                                  stateful=False)
        batch.set_shape((None,) + self.shape[1:])
        return tf.cast(batch, tf.float32) / 255.0


def _gather(full: dict[str, tf.Tensor], docs: tf.Tensor) -> dict[str, tf.Tensor]:
    """The inputs of documents `docs` out of a whole set's inputs (see `inputs_for`)."""
    out = {key: tf.gather(full[key], docs) for key in ("dense", "texts") if key in full}
    if "images" in full:
        out["images"] = full["images"].gather(docs)
    if "ids" in full:
        out["ids"], out["id_splits"] = _gather_bags(full["ids"], full["id_splits"], docs)
    if "id_weights" in full:
        out["id_weights"], _ = _gather_bags(full["id_weights"], full["id_splits"], docs)
    if "wide" in full:
        out["wide"], out["wide_splits"] = _gather_bags(full["wide"], full["wide_splits"], docs)
    if "wide_weights" in full:
        out["wide_weights"], _ = _gather_bags(full["wide_weights"], full["wide_splits"], docs)
    return out


def _concat(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two sets' inputs as one: documents of `first`, then those of `second`."""
    out = {}
    for key, value in first.items():
        if key == "images":
            out[key] = _ImageRows(*value.parts, *second[key].parts)
        elif key.endswith("splits"):
            out[key] = np.concatenate([value, second[key][1:] + value[-1]])
        else:
            out[key] = np.concatenate([value, second[key]])
    return out


def _tensors(inputs: dict[str, Any]) -> dict[str, Any]:
    """Eager tensors of a set's inputs; images stay on disk, read a batch at a time."""
    return {key: value if key == "images" else tf.constant(value) for key, value in inputs.items()}


class _DropRetracingWarning(logging.Filter):
    """Each child traces its own graphs by design (its variables and shapes differ), so TF's
    "frequent retracing" warning, which counts traces per Python function, is noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


tf.get_logger().addFilter(_DropRetracingWarning())


class WideDeepChild:
    """One child network for one configuration on one task."""

    def __init__(self, config: Config, task: TaskFeatures, module: ModuleFeatures | None,
                 wide: WideFeatures | None, seed: int):
        """`module` is needed when the deep tower is on, `wide` (of the config's wide setting)
        when the wide tower is."""
        rng = np.random.default_rng([seed, 1])
        self.config = config
        self.seed = seed
        self.task = task
        self.module = module
        self.wide_features = wide
        self.deep = config.deep_enabled
        self.wide = config.wide_enabled
        self.tune_table = self.deep and config.fine_tune and module.restricted
        self.tune_module = self.deep and config.fine_tune and not module.restricted and module.tunable
        num_classes = task.num_classes
        deep_vars: list[tf.Variable] = []
        self.layers: list[dict[str, tf.Variable]] = []
        if self.deep:
            if self.tune_table:
                self.table = tf.Variable(module.table)
                deep_vars.append(self.table)
            if self.tune_module:
                # The loaded module is shared by every trial in the process: keep its weights.
                self._module_backup = [v.numpy() for v in module.module.trainable_variables]
                deep_vars.extend(module.module.trainable_variables)
            width = module.frozen["train"].shape[1]
            for _ in range(config.num_layers):
                layer = {"kernel": _glorot(rng, width, config.layer_size), "bias": _zeros(config.layer_size)}
                if config.normalization != "none":
                    layer["gamma"] = tf.Variable(np.ones(config.layer_size, np.float32))
                    layer["beta"] = _zeros(config.layer_size)
                if config.normalization == "batch":
                    layer["moving_mean"] = tf.Variable(np.zeros(config.layer_size, np.float32), trainable=False)
                    layer["moving_var"] = tf.Variable(np.ones(config.layer_size, np.float32), trainable=False)
                deep_vars.extend(v for k, v in layer.items() if not k.startswith("moving"))
                self.layers.append(layer)
                width = config.layer_size
            self.out_kernel = _glorot(rng, width, num_classes)
            self.out_bias = _zeros(num_classes)
            deep_vars += [self.out_kernel, self.out_bias]
            self.deep_optimizer = ProximalAdagrad(deep_vars, config.deep_learning_rate, l2=config.deep_l2)
        wide_vars: list[tf.Variable] = []
        if self.wide:
            self.wide_table = _zeros(max(1, wide.size), num_classes)
            self.wide_bias = _zeros(num_classes)
            wide_vars = [self.wide_table, self.wide_bias]
            self.wide_optimizer = ProximalAdagrad(wide_vars, config.wide_learning_rate, l1=config.wide_l1)
        self.deep_vars, self.wide_vars = deep_vars, wide_vars
        # Eager tensors, captured by reference: a graph constant would copy the data per trace.
        # Valid and test are one "eval" set, scored in the same graph right after training.
        self._num_valid = len(task.labels["valid"])
        self._train_inputs = _tensors(self.inputs_for("train"))
        self._eval_inputs = _tensors(_concat(self.inputs_for("valid"), self.inputs_for("test")))
        self._eval_chunk = IMAGE_EVAL_CHUNK if "images" in self._eval_inputs else EVAL_CHUNK
        self._train_labels = tf.constant(task.labels["train"])
        # One trace per child, whatever the chunk (autograph off: the loops are explicit).
        self._run_fn = tf.function(self._run, autograph=False, input_signature=[
            tf.TensorSpec([None, BATCH_SIZE], tf.int32), tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.bool)])

    def inputs_for(self, split: str) -> dict[str, Any]:
        """The whole split's inputs; keys depend on the configuration (read by `_gather`)."""
        out: dict[str, Any] = {}
        if self.tune_table:
            bags = self.module.bags[split]
            out.update(ids=bags.values, id_splits=bags.row_splits)
            if bags.weights is not None:
                out["id_weights"] = bags.weights
        elif self.tune_module and self.module.pixels is not None:
            out["images"] = _ImageRows(self.module.pixels[split])
        elif self.tune_module:
            out["texts"] = np.array(self.task.texts[split], dtype=object)
        elif self.deep:
            out["dense"] = self.module.frozen[split]
        if self.wide:
            bags = self.wide_features.bags[split]
            out.update(wide=bags.values, wide_splits=bags.row_splits)
            if bags.weights is not None:
                out["wide_weights"] = bags.weights
        return out

    def _logits(self, inputs: dict[str, tf.Tensor], training: bool, step: tf.Tensor | int = 0) -> tf.Tensor:
        parts = []
        if self.deep:
            if self.tune_table:
                h = _bag_lookup(self.table, inputs["ids"], inputs["id_splits"], mean=True,
                                weights=inputs.get("id_weights"))
            elif self.tune_module:
                h = self.module.module(inputs["images"] if "images" in inputs else inputs["texts"])
            else:
                h = inputs["dense"]
            activation = _ACTIVATIONS[self.config.activation]
            for j, layer in enumerate(self.layers):
                h = tf.nn.bias_add(tf.matmul(h, layer["kernel"]), layer["bias"])
                h = self._normalize(h, layer, training)
                h = activation(h)
                if training and self.config.dropout > 0:
                    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64) * 16 + j])
                    h = tf.nn.experimental.stateless_dropout(h, self.config.dropout, seed=seed)
            parts.append(tf.nn.bias_add(tf.matmul(h, self.out_kernel), self.out_bias))
        if self.wide:
            parts.append(tf.nn.bias_add(_bag_lookup(
                self.wide_table, inputs["wide"], inputs["wide_splits"], mean=False,
                weights=inputs.get("wide_weights")), self.wide_bias))
        return tf.add_n(parts)

    def _normalize(self, h: tf.Tensor, layer: dict[str, tf.Variable], training: bool) -> tf.Tensor:
        kind = self.config.normalization
        if kind == "none":
            return h
        if kind == "layer":
            mean, var = tf.nn.moments(h, axes=[1], keepdims=True)
        elif training:
            mean, var = tf.nn.moments(h, axes=[0])
            layer["moving_mean"].assign(_BATCH_NORM_MOMENTUM * layer["moving_mean"] + (1 - _BATCH_NORM_MOMENTUM) * mean)
            layer["moving_var"].assign(_BATCH_NORM_MOMENTUM * layer["moving_var"] + (1 - _BATCH_NORM_MOMENTUM) * var)
        else:
            mean, var = layer["moving_mean"], layer["moving_var"]
        return tf.nn.batch_normalization(h, mean, var, layer["beta"], layer["gamma"], _NORM_EPSILON)

    def _run(self, batches: tf.Tensor, first_step: tf.Tensor, score: tf.Tensor
             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Train on every batch (stopping early at a non-finite loss), then, if `score`, score the
        eval set. `first_step`: the trial's step number of batches[0] (it seeds dropout).
        Returns (steps run, last loss, eval logits or none)."""
        full, num_steps = self._train_inputs, tf.shape(batches)[0]

        def train_step(step: tf.Tensor, _: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            docs = batches[step]
            with tf.GradientTape() as tape:
                logits = self._logits(_gather(full, docs), training=True, step=first_step + step)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.gather(self._train_labels, docs), logits=logits))
            grads = tape.gradient(loss, self.deep_vars + self.wide_vars)
            if self.deep:
                self.deep_optimizer.apply_gradients(zip(grads[:len(self.deep_vars)], self.deep_vars))
            if self.wide:
                self.wide_optimizer.apply_gradients(zip(grads[len(self.deep_vars):], self.wide_vars))
            return step + 1, loss

        def unfinished(step: tf.Tensor, loss: tf.Tensor) -> tf.Tensor:
            return tf.logical_and(step < num_steps, tf.math.is_finite(loss))

        steps, loss = tf.while_loop(unfinished, train_step, (tf.constant(0), tf.constant(0.0)))
        with tf.control_dependencies([steps, loss]):
            logits = tf.cond(score, self._eval_logits,
                             lambda: tf.zeros([0, self.task.num_classes], tf.float32))
        return steps, loss, logits

    def _eval_logits(self) -> tf.Tensor:
        """Logits of the eval set, a chunk of documents at a time (bounded memory on big tasks)."""
        n, size = self._num_valid + len(self.task.labels["test"]), self._eval_chunk
        num_chunks = -(-n // size)

        def chunk(i: tf.Tensor, out: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
            docs = tf.range(i * size, tf.minimum((i + 1) * size, n))
            return i + 1, out.write(i, self._logits(_gather(self._eval_inputs, docs), training=False))

        _, out = tf.while_loop(lambda i, _: i < num_chunks, chunk,
                               (tf.constant(0), tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)))
        return out.concat()

    def train_and_score(self, batches: np.ndarray, chunk_steps: int | None = None
                        ) -> tuple[int, bool, np.ndarray, np.ndarray]:
        """Train on batches of train-document indices [steps, batch], `chunk_steps` per graph
        call (None: calls of about CALL_SECONDS), then score valid and test.

        Returns (steps run, whether loss, weights and logits all stayed finite, valid logits,
        test logits).
        """
        size = chunk_steps or FIRST_CALL_STEPS
        steps, start, finite_loss = 0, 0, True
        with _grappler(enabled=len(batches) >= GRAPPLER_MIN_STEPS):
            while True:  # after a non-finite loss, one more call on no batches scores the child
                chunk = batches[start:start + size] if finite_loss else batches[:0]
                start += len(chunk)
                score = start >= len(batches) or not finite_loss
                called = time.perf_counter()
                ran, loss, logits = self._run_fn(tf.constant(chunk, tf.int32), tf.constant(steps),
                                                 tf.constant(score))
                steps += int(ran)
                finite_loss = finite_loss and bool(np.isfinite(loss.numpy()))
                if score:
                    break
                if not chunk_steps:
                    seconds = max(time.perf_counter() - called, 1e-3)
                    size = max(1, int(len(chunk) / seconds * CALL_SECONDS))
        logits = logits.numpy()
        # An infinite accumulator means a squared gradient overflowed: training blew up even if
        # the weights stayed finite (the step size then collapses to zero).
        state = self.deep_vars + self.wide_vars + [
            a for opt in self._optimizers() for a in opt.accumulators.values()]
        finite = finite_loss and bool(np.isfinite(logits).all()) and all(
            bool(tf.reduce_all(tf.math.is_finite(v))) for v in state)
        return steps, finite, logits[:self._num_valid], logits[self._num_valid:]

    def logits(self, split: str) -> np.ndarray:
        """Inference logits of a whole split, eagerly (an export checks its SavedModel with them)."""
        inputs = _tensors(self.inputs_for(split))
        if "images" in inputs:
            inputs["images"] = inputs["images"].gather(tf.range(len(self.task.labels[split])))
        return self._logits(inputs, training=False).numpy()

    def _optimizers(self) -> list[ProximalAdagrad]:
        return ([self.deep_optimizer] if self.deep else []) + ([self.wide_optimizer] if self.wide else [])

    def restore_module(self) -> None:
        """Undo fine-tuning of a shared generic module (a restricted table is the child's own)."""
        if self.tune_module:
            for var, value in zip(self.module.module.trainable_variables, self._module_backup):
                var.assign(value)
