"""Wide tower alone over the extended space's feature settings: what n-grams, TF-IDF weighting
and vocabulary size do on a task, at two wide learning rates (docs/results.md, issue 13).

Each child: deep tower disabled, L1 1e-5, 100,000 training samples, seed 0.

Usage: python benchmarks/wide_probe.py [--tasks customer_reviews,political_message]
           [--learning_rates 0.1,1.0] [--samples 100000] [--settings 2,tfidf,300000+1,binary,30000]
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = ((1, "binary", 30_000), (2, "binary", 300_000), (1, "tfidf", 30_000),
            (2, "tfidf", 300_000), (2, "tfidf", 100_000))


def _settings(text: str) -> tuple[tuple[int, str, int], ...]:
    """'2,tfidf,300000+1,binary,30000' -> ((2, 'tfidf', 300000), (1, 'binary', 30000))."""
    settings = []
    for item in text.split("+"):
        try:
            ngrams, weighting, vocab = item.split(",")
            settings.append((int(ngrams), weighting, int(vocab)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not ngrams,weighting,vocabulary") from None
    return tuple(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="customer_reviews,emotion,political_message")
    parser.add_argument("--learning_rates", default="0.1,1.0")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--settings", type=_settings, default=SETTINGS,
                        help="n-grams,weighting,vocabulary joined by '+' (default: all five)")
    args = parser.parse_args()
    from automl_transfer.child.evaluate import TaskRef, evaluate
    from automl_transfer.search_space import Config

    rates = [float(r) for r in args.learning_rates.split(",")]
    for task, (ngrams, weighting, vocab), rate in itertools.product(
            args.tasks.split(","), args.settings, rates):
        config = Config(module="none", fine_tune=False, num_layers=1, layer_size=8,
                        activation="relu", normalization="none", dropout=0.0,
                        deep_learning_rate=0.1, deep_l2="disable", wide_learning_rate=rate,
                        wide_l1=1e-5, train_samples=args.samples, wide_ngrams=ngrams,
                        wide_weighting=weighting, wide_vocab_size=vocab)
        start = time.perf_counter()
        result = evaluate(config, TaskRef(task), {}, seed=0)
        print(f"{task} ngrams={ngrams} {weighting} vocab={vocab} lr={rate}: valid "
              f"{result.valid_accuracy:.3f} test {result.test_accuracy:.3f} {result.status.value} "
              f"{time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
