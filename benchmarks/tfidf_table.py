"""Per task, TF-IDF + logistic regression beside searches' accuracy-top10 (issue 13's table).

Reads finished runs, never trains. Each --column is NAME=PATTERN: PATTERN is a run directory
(holding trials.sqlite); `{task}` in it stands for the task's name, and it may be a glob that
matches one directory per task (`runs/fold*/transfer/{task}/seed0`). A run over several tasks
serves each of its tasks. For each task and column it prints validation / test accuracy-top10
after the first --trials finished trials (fewer are marked with their count), and the test
accuracy of the single best trial by validation. Then, per column, on how many tasks with the
full budget the test accuracy-top10 (and the best trial's test accuracy) is at or above
TF-IDF + LR's test accuracy, compared at the tables' precision of 0.1 points.

How fast, on validation only (the search's reward): --at N... prints each column's validation
accuracy-top10 after N trials, and --reach NAME the trials each column needs to reach column
NAME's final validation accuracy-top10 (counted from trial 10, as in Table 1).

    python benchmarks/tfidf_table.py --tfidf experiments/tfidf/tfidf_baseline.csv \\
        --column "TPE extended=experiments/table17/tpe/{task}" --trials 100
    ... --column "T-NAML=experiments/table17/transfer/fold*/transfer/{task}/seed0" \\
        --at 10 25 50 --reach "TPE extended"
"""
from __future__ import annotations

import argparse
import csv
import glob
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl_transfer.metrics import (  # noqa: E402
    DEFAULT_TOP_N, accuracy_top_n, top_n_curve, trials_to_target)
from automl_transfer.store import STORE_FILE, TrialStore  # noqa: E402
from automl_transfer.trial import Trial  # noqa: E402


def read_tfidf(path: str) -> dict[str, float]:
    """Task -> TF-IDF + LR test accuracy (%), from tfidf_baseline.py's CSV."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["task"]: 100 * float(row["test_accuracy"]) for row in csv.DictReader(f)}


def parse_column(text: str) -> tuple[str, str]:
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise argparse.ArgumentTypeError(f"--column takes NAME=PATTERN, got {text!r}")
    return name, pattern


def task_trials(pattern: str, task: str, budget: int) -> list[Trial]:
    """The task's first `budget` finished trials in the run the pattern names (none if no run)."""
    stores = sorted(glob.glob(str(Path(pattern.replace("{task}", task)) / STORE_FILE)))
    if len(stores) > 1:
        raise SystemExit(f"{pattern}: {len(stores)} runs match task {task}; make the pattern unique")
    if not stores:
        return []
    with TrialStore(stores[0]) as store:
        finished = [t for t in store.trials(task) if t.finished]
    return sorted(finished, key=lambda t: t.trial_id)[:budget]


def cell(trials: list[Trial], budget: int) -> tuple[str, float | None, float | None]:
    """(table cell, test top-10 %, best trial's test %); the figures only with the full budget."""
    if not trials:
        return "-", None, None
    valid, test = (100 * v for v in accuracy_top_n(trials, DEFAULT_TOP_N))
    best = max(trials, key=lambda t: (t.result.valid_accuracy or 0.0, -t.trial_id))
    best_test = 100 * (best.result.test_accuracy or 0.0)
    text = f"{valid:.1f} / {test:.1f} ({best_test:.1f})"
    if len(trials) < budget:
        return f"{text} at {len(trials)}", None, None
    return text, test, best_test


def at_or_above(value: float, baseline: float) -> bool:
    return round(value, 1) >= round(baseline, 1)


def speed_rows(runs: dict[str, dict[str, list[Trial]]], at: list[int], reach: str | None
               ) -> list[str]:
    """Markdown rows: per task with every column at full budget, validation top-10 after each
    of `at` trials ("a / b / c") and the trials to reach column `reach`'s final value, counted
    from trial 10, where top-10 is first a mean over 10 trials (as Table 1's strict count)."""
    rows = []
    for task, by_column in runs.items():
        curves = {name: top_n_curve(trials, DEFAULT_TOP_N).valid
                  for name, trials in by_column.items()}
        cells = ([" / ".join(f"{100 * curve[n - 1]:.1f}" for n in at) for curve in curves.values()]
                 if at else [])
        if reach is not None:
            target = curves[reach][-1]
            cells += [str(trials_to_target(curve, target, from_trial=DEFAULT_TOP_N)
                          or "not reached") for curve in curves.values()]
        rows.append(f"| {task} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfidf", required=True, help="tfidf_baseline.py's tfidf_baseline.csv")
    parser.add_argument("--column", type=parse_column, action="append", required=True,
                        help="NAME=PATTERN, repeatable (see the module docstring)")
    parser.add_argument("--trials", type=int, default=100, help="the budget compared (default 100)")
    parser.add_argument("--at", type=int, nargs="+", default=[], metavar="N",
                        help="also print validation accuracy-top10 after N trials (e.g. 10 25 50)")
    parser.add_argument("--reach", metavar="NAME",
                        help="also print the trials each column needs to reach column NAME's "
                             "final validation accuracy-top10")
    args = parser.parse_args()
    names = [name for name, _ in args.column]
    if args.reach is not None and args.reach not in names:
        parser.error(f"--reach {args.reach!r}: no such --column (columns: {', '.join(names)})")
    if any(not 1 <= n <= args.trials for n in args.at):
        parser.error(f"--at: each N must be between 1 and --trials ({args.trials})")
    try:
        tfidf = read_tfidf(args.tfidf)
    except (OSError, KeyError, ValueError) as err:
        parser.error(f"--tfidf {args.tfidf}: not a tfidf_baseline.csv ({err})")
    print("valid / test accuracy-top10 (test of the best trial by validation), %\n")
    print("| task | TF-IDF+LR test | " + " | ".join(names) + " |")
    print("|---" * (2 + len(names)) + "|")
    counts = {name: [0, 0, 0] for name in names}  # full-budget tasks, top-10 >=, best >=
    full_runs: dict[str, dict[str, list[Trial]]] = {}  # task -> column -> trials, all at budget
    for task in sorted(tfidf):
        cells = []
        by_column = {name: task_trials(pattern, task, args.trials) for name, pattern in args.column}
        if all(len(trials) == args.trials for trials in by_column.values()):
            full_runs[task] = by_column
        for name, trials in by_column.items():
            text, test, best_test = cell(trials, args.trials)
            cells.append(text)
            if test is not None:
                counts[name][0] += 1
                counts[name][1] += at_or_above(test, tfidf[task])
                counts[name][2] += at_or_above(best_test, tfidf[task])
        print(f"| {task} | {tfidf[task]:.1f} | " + " | ".join(cells) + " |")
    print(f"\nAt or above TF-IDF + LR's test accuracy, among tasks with {args.trials} trials:")
    for name, (full, top10, best) in counts.items():
        print(f"  {name}: {full} tasks; test accuracy-top10 on {top10}, best trial on {best}")
    if args.at or args.reach:
        at = "/".join(map(str, args.at))
        shown = ([f"validation accuracy-top10 (%) after {at} trials"] if args.at else [])
        shown += [f"trials to reach {args.reach}'s final value"] if args.reach else []
        print(f"\nTasks where every column has {args.trials} trials: " + "; ".join(shown) + "\n")
        heads = [f"{name} @{at}" for name in names] if args.at else []
        heads += [f"{name} reaches" for name in names] if args.reach else []
        print("| task | " + " | ".join(heads) + " |")
        print("|---" * (1 + len(heads)) + "|")
        print("\n".join(speed_rows(full_runs, args.at, args.reach)))


if __name__ == "__main__":
    main()
