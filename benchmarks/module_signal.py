"""Do the offline modules carry signal? Frozen mean embeddings vs a random table, two real tasks.

For every offline module and for sst2 and sms_spam: logistic regression (numpy, L2 picked on the
validation split) on the module's frozen mean bag-of-words features, and the same on a random
table of the same shape and vocabulary (normal, scaled to the real table's std). Prints test
accuracies. A module that does not beat its random table carries no usable signal.

    python benchmarks/module_signal.py [--cache_dir DIR] [--data_dir DIR] [--max_train 10000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from automl_transfer.modules import registry  # noqa: E402
from automl_transfer.modules.loading import get_module  # noqa: E402
from automl_transfer.tasks import load_task  # noqa: E402
from automl_transfer.text import tokenize  # noqa: E402

TASKS = ("sst2", "sms_spam")
L2_GRID = (1e-4, 1e-3, 1e-2)
SEED = 0


def module_features(module, texts: list[str], batch: int = 2048) -> np.ndarray:
    """The module's own output (frozen mean bag-of-words) for `texts`."""
    parts = [module(tf.constant(texts[i:i + batch])).numpy() for i in range(0, len(texts), batch)]
    return np.concatenate(parts)


def token_rows(module, texts: list[str]) -> list[np.ndarray]:
    """Table rows of each text's known tokens (the module's vocabulary, via `token_ids`)."""
    tokenised = [tokenize(t) for t in texts]
    vocab = sorted({w for toks in tokenised for w in toks})
    ids = dict(zip(vocab, module.token_ids(tf.constant(vocab or [""])).numpy().tolist()))
    return [np.array([ids[w] for w in toks if ids[w] >= 0], np.int64) for toks in tokenised]


def mean_features(table: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
    """Mean of the rows of `table` per text; zeros where a text has no known token."""
    out = np.zeros((len(rows), table.shape[1]), np.float32)
    for i, r in enumerate(rows):
        if len(r):
            out[i] = table[r].mean(axis=0)
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, l2: float,
                 steps: int = 400, lr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch Adam on standardised features."""
    w = np.zeros((x.shape[1], classes))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    for t in range(1, steps + 1):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad_logits = (p - onehot) / len(x)
        grads = [x.T @ grad_logits + l2 * w, grad_logits.sum(axis=0)]
        for k, (param, g) in enumerate(zip((w, b), grads)):
            m[k] = 0.9 * m[k] + 0.1 * g
            v[k] = 0.999 * v[k] + 0.001 * g * g
            param -= lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
    return w, b


def test_accuracy(features: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                  classes: int) -> float:
    """Test accuracy of the logistic regression whose L2 weight is best on validation."""
    mean = features["train"].mean(axis=0)
    std = features["train"].std(axis=0) + 1e-6
    x = {k: (f - mean) / std for k, f in features.items()}
    best = (-1.0, 0.0)
    for l2 in L2_GRID:
        w, b = fit_logistic(x["train"], labels["train"], classes, l2)
        valid = float(np.mean(np.argmax(x["valid"] @ w + b, 1) == labels["valid"]))
        test = float(np.mean(np.argmax(x["test"] @ w + b, 1) == labels["test"]))
        best = max(best, (valid, test))
    return best[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache_dir")
    parser.add_argument("--data_dir")
    parser.add_argument("--max_train", type=int, default=10000)
    parser.add_argument("--modules", help="comma-separated module names (default: all offline)")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    tasks = {}
    for name in TASKS:
        task = load_task(name, args.data_dir, seed=SEED)
        keep = np.sort(rng.permutation(len(task.train))[:args.max_train])
        splits = {"train": ([task.train.texts[i] for i in keep], task.train.labels[keep]),
                  "valid": (list(task.valid.texts), task.valid.labels),
                  "test": (list(task.test.texts), task.test.labels)}
        majority = float(np.mean(task.test.labels == np.bincount(task.train.labels).argmax()))
        tasks[name] = (splits, task.num_classes, majority)
        print(f"{name}: train {len(keep)}, valid {len(task.valid)}, test {len(task.test)}, "
              f"majority-class test accuracy {majority:.3f}")
    header = "| module | dim | " + " | ".join(f"{t} module | {t} random" for t in TASKS) + " |"
    print(header)
    print("|" + "---|" * (2 + 2 * len(TASKS)))
    failures = []
    specs = registry.load_registry("offline", args.cache_dir)
    chosen = args.modules.split(",") if args.modules else list(specs)
    for name in chosen:
        spec = specs[name]
        start = time.perf_counter()
        module = get_module(name, "offline", args.cache_dir)
        table = module.embeddings.numpy()
        own_rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])  # same draw in any run
        random_table = own_rng.normal(0.0, table.std(), table.shape).astype(np.float32)
        cells = []
        for task_name, (splits, classes, _) in tasks.items():
            real, rand, labels = {}, {}, {}
            for split, (texts, y) in splits.items():
                real[split] = module_features(module, texts)
                rand[split] = mean_features(random_table, token_rows(module, texts))
                labels[split] = y
            acc_real = test_accuracy(real, labels, classes)
            acc_rand = test_accuracy(rand, labels, classes)
            cells += [f"{acc_real:.3f}", f"{acc_rand:.3f}"]
            if acc_real <= acc_rand:
                failures.append(f"{name} on {task_name}")
        print(f"| {name} | {spec.dim} | " + " | ".join(cells) + f" |  ({time.perf_counter() - start:.0f} s)",
              flush=True)
    if failures:
        print("NOT better than random: " + ", ".join(failures))
        return 1
    print("every module beats its random table on every task")
    return 0


if __name__ == "__main__":
    sys.exit(main())
