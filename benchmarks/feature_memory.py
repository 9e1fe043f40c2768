"""Memory and time of a task's feature caches, built stage by stage in this one process.

A trial's process keeps per-task work (tokens, wide-tower term counts, each module's features)
for the trials that follow; a big task's caches decide whether its run fits in memory. This
prints, after each stage: seconds, resident memory (RSS) and the process's peak RSS so far (what
the kernel's out-of-memory killer sees), after a garbage collection. Then --trials seeded random
configurations of the extended space, capped at --samples training samples (so that per-trial
setup, not training, dominates), with the RSS after each (no extra collection: as in a run): a
process that keeps what its trials leave behind grows here.

Usage: python benchmarks/feature_memory.py [--task imdb] [--modules en-glove-50,en-word2vec-news-300]
           [--trials 40] [--samples 1000]
       (--modules all: every text module of the registry)
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from automl_transfer.child import features  # noqa: E402
from automl_transfer.child.evaluate import evaluate  # noqa: E402
from automl_transfer.modules.build import ensure_offline_modules  # noqa: E402
from automl_transfer.modules.registry import load_registry  # noqa: E402
from automl_transfer.search_space import EXTENDED, SearchSpace  # noqa: E402
from automl_transfer.searchers.random_search import RandomSearcher  # noqa: E402

WIDE_SETTINGS = ((2, "binary", 300_000), (2, "tfidf", 300_000), (1, "tfidf", 100_000))


def memory_mb() -> tuple[int, int]:
    """(resident, peak resident) of this process in MB, from /proc (Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) // 1024
    return values["VmRSS"], values["VmHWM"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="imdb")
    parser.add_argument("--modules", default="en-glove-50,en-word2vec-news-300",
                        help="comma-separated text modules, or all")
    parser.add_argument("--trials", type=int, default=40, help="random trials after the stages (0: none)")
    parser.add_argument("--samples", type=int, default=1000, help="training samples of each trial, at most")
    args = parser.parse_args()
    registry = load_registry()
    handles = {n: spec.handle for n, spec in registry.items() if spec.modality == "text"}
    names = list(handles) if args.modules == "all" else args.modules.split(",")
    ensure_offline_modules(names=names)
    task = features.TaskRef(args.task)
    start = time.perf_counter()

    def report(stage: str, collect: bool = True) -> None:
        if collect:
            gc.collect()
        rss, peak = memory_mb()
        print(f"{time.perf_counter() - start:7.1f} s  {stage:45s} RSS {rss:6d} MB  peak {peak:6d} MB", flush=True)

    report("start")
    features.task_features(task)
    report("tokens")
    for setting in WIDE_SETTINGS:
        features.wide_features(task, *setting)
        report(f"wide {setting[0]}-grams {setting[1]} {setting[2]}")
    for name in names:
        features.module_features(task, registry[name].handle)
        report(f"module {name}")
    searcher = RandomSearcher(SearchSpace(list(registry), name=EXTENDED), seed=0)
    for trial_id in range(args.trials):
        trial = searcher.suggest(trial_id, args.task, list(handles))
        config = dataclasses.replace(trial.config, train_samples=min(args.samples, trial.config.train_samples))
        result = evaluate(config, task, handles, trial.seed)
        report(f"trial {trial_id} ({result.status.value})", collect=False)  # as a run does


if __name__ == "__main__":
    main()
