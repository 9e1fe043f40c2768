"""TF-IDF of word 1-2 grams + logistic regression: what a practitioner tries first (issue 13).

Tasks are loaded through automl_transfer.tasks, so train/valid/test are exactly the splits our
searches use. The vectoriser is fitted on train; C is chosen on valid (ties: the smaller C);
the model trained on train with that C is scored on test. The C grid is fitted in increasing
order, each fit starting from the previous solution (same optimum, far fewer iterations). Prints a table and writes
<out>/tfidf_baseline.csv and <out>/tfidf_baseline.json.

Usage: python benchmarks/tfidf_baseline.py [--tasks sms_spam,subj] [--out DIR] [--data_dir DIR]
Needs the `bench` extra: pip install -e ".[bench]".
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FIELDS = ("task", "train", "valid", "test", "features", "best_c", "valid_accuracy",
          "test_accuracy", "seconds")


def run_task(name: str, data_dir: str | None, seed: int) -> dict:
    """Fit the vectoriser on train, pick C on valid, return the row of the table."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from automl_transfer.tasks import load_task

    start = time.perf_counter()
    task = load_task(name, data_dir, seed=seed)
    vectoriser = TfidfVectorizer(ngram_range=(1, 2))
    x_train = vectoriser.fit_transform(task.train.texts)
    x_valid, x_test = vectoriser.transform(task.valid.texts), vectoriser.transform(task.test.texts)
    model = LogisticRegression(max_iter=2000, warm_start=True)
    best = None
    for c in C_GRID:
        model.set_params(C=c).fit(x_train, task.train.labels)
        valid = float(np.mean(model.predict(x_valid) == task.valid.labels))
        if best is None or valid > best[0]:
            best = (valid, c, float(np.mean(model.predict(x_test) == task.test.labels)))
    valid, c, test = best
    return {"task": task.name, "train": len(task.train), "valid": len(task.valid),
            "test": len(task.test), "features": x_train.shape[1], "best_c": c,
            "valid_accuracy": valid, "test_accuracy": test,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=None, help="comma-separated (default: all registered)")
    parser.add_argument("--out", default="experiments/tfidf_baseline")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--split_seed", type=int, default=0, help="the tasks' split seed (ours: 0)")
    args = parser.parse_args()
    from automl_transfer.tasks import registry

    names = args.tasks.split(",") if args.tasks else sorted(registry())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'task':20s} {'train':>7s} {'features':>9s} {'C':>6s} {'valid':>6s} {'test':>6s} {'s':>6s}")
    for name in names:
        row = run_task(name, args.data_dir, args.split_seed)
        rows.append(row)
        print(f"{row['task']:20s} {row['train']:7d} {row['features']:9d} {row['best_c']:6g} "
              f"{100 * row['valid_accuracy']:6.1f} {100 * row['test_accuracy']:6.1f} "
              f"{row['seconds']:6.1f}", flush=True)
        with open(out / "tfidf_baseline.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        (out / "tfidf_baseline.json").write_text(json.dumps(rows, indent=1))
    print(f"written to {out}/tfidf_baseline.csv and .json")


if __name__ == "__main__":
    main()
