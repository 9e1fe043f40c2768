"""The plain Keras way of training the same child, as a KerasTuner user would write it (baseline).

Run by benchmarks/trial_speed.py in its own process: `hub.KerasLayer` needs the legacy tf-keras,
which must be chosen before TensorFlow is imported. Per configuration: build the model (hub
KerasLayer on raw strings, trainable=fine_tune; Dense/normalisation/dropout layers with an L2
kernel regulariser; TextVectorization multi_hot -> Dense with an L1 regulariser for the wide
tower), `fit` for train_steps batches of 100 with Adagrad (one optimizer, the deep tower's
learning rate, or the wide one's when there is no deep tower: Keras has no per-tower optimizers
nor Proximal Adagrad), then `evaluate` on valid and test.

Usage: python benchmarks/keras_baseline_child.py JOB_JSON OUT_JSON
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tf_keras  # noqa: E402

from automl_transfer.search_space import Config  # noqa: E402
from automl_transfer.tasks import load_task  # noqa: E402

WIDE_VOCAB_SIZE = 30_000


def build_model(config: Config, handle: str, train_texts: np.ndarray, num_classes: int) -> tf_keras.Model:
    texts = tf_keras.Input(shape=(), dtype=tf.string)
    logits = []
    if config.deep_enabled:
        h = hub.KerasLayer(handle, trainable=config.fine_tune)(texts)
        l2 = tf_keras.regularizers.l2(config.deep_l2)
        for _ in range(config.num_layers):
            h = tf_keras.layers.Dense(config.layer_size, kernel_regularizer=l2)(h)
            if config.normalization == "batch":
                h = tf_keras.layers.BatchNormalization()(h)
            elif config.normalization == "layer":
                h = tf_keras.layers.LayerNormalization()(h)
            h = tf_keras.layers.Activation(config.activation)(h)
            h = tf_keras.layers.Dropout(config.dropout)(h)
        logits.append(tf_keras.layers.Dense(num_classes, kernel_regularizer=l2)(h))
    if config.wide_enabled:
        vectorize = tf_keras.layers.TextVectorization(max_tokens=WIDE_VOCAB_SIZE, output_mode="multi_hot")
        vectorize.adapt(train_texts, batch_size=1000)
        logits.append(tf_keras.layers.Dense(
            num_classes, kernel_regularizer=tf_keras.regularizers.l1(config.wide_l1))(vectorize(texts)))
    out = logits[0] if len(logits) == 1 else tf_keras.layers.Add()(logits)
    model = tf_keras.Model(texts, out)
    lr = config.deep_learning_rate if config.deep_enabled else config.wide_learning_rate
    model.compile(optimizer=tf_keras.optimizers.Adagrad(lr, initial_accumulator_value=0.1),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def run_trial(config: Config, handle: str, task, seed: int) -> dict:
    train_texts = np.array(task.train.texts, dtype=object)
    if not (config.deep_enabled or config.wide_enabled):
        majority = int(np.argmax(np.bincount(task.train.labels)))
        return {"status": "completed", "valid_accuracy": float(np.mean(task.valid.labels == majority))}
    tf_keras.utils.set_random_seed(seed)
    model = build_model(config, handle, train_texts, task.num_classes)
    data = (tf.data.Dataset.from_tensor_slices((train_texts, task.train.labels))
            .shuffle(len(train_texts), seed=seed).repeat().batch(100))
    history = model.fit(data, steps_per_epoch=config.train_steps, epochs=1, verbose=0)
    if not np.isfinite(history.history["loss"][-1]):
        return {"status": "diverged", "valid_accuracy": 0.0}
    _, valid = model.evaluate(np.array(task.valid.texts, dtype=object), task.valid.labels,
                              batch_size=1000, verbose=0)
    model.evaluate(np.array(task.test.texts, dtype=object), task.test.labels, batch_size=1000, verbose=0)
    return {"status": "completed", "valid_accuracy": float(valid)}


def main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    task = load_task(job["task"])
    results = []
    for item in job["trials"]:
        config = Config.from_dict(item["config"])
        start = time.perf_counter()
        try:
            result = run_trial(config, job["handles"][config.module], task, item["seed"])
        except Exception as err:  # noqa: BLE001 - record and go on, like a tuner would
            result = {"status": "failed", "valid_accuracy": 0.0, "error": f"{type(err).__name__}: {err}"[:200]}
        result["wall_time_s"] = time.perf_counter() - start
        results.append(result)
        print(json.dumps(result), flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_path).write_text(json.dumps({"trials": results, "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
