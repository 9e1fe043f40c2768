"""Trial wall time of the extended search space against the paper space, side by side.

Configurations are seeded random ones of the extended space; each is run twice in one process,
once as drawn (extended) and once with the wide tower's features reset to the paper's (unigrams,
binary, 30,000 terms), so both spaces train the same architectures and drift on a busy machine
hits both alike (the order alternates per configuration). A setting's first trial includes
computing its features (cached for the rest of the process), as in a real search.
`--max_samples` caps every configuration's training samples (both spaces alike) to keep the
benchmark short on a busy machine.

Usage: python benchmarks/space_cost.py [--task customer_reviews] [--configs 16] [--seed 0]
           [--max_samples N] [--modules_dir DIR] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.trial_speed import module_handles, summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="customer_reviews")
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--modules_dir", default=None, help="default: <cache_dir>/modules")
    parser.add_argument("--out", default=None, help="write every trial's figures here (JSON)")
    args = parser.parse_args()
    from automl_transfer import paths
    from automl_transfer.child.evaluate import TaskRef, evaluate
    from automl_transfer.search_space import EXTENDED, PAPER_WIDE, SearchSpace
    from automl_transfer.searchers.random_search import RandomSearcher

    handles = module_handles(Path(args.modules_dir) if args.modules_dir
                             else paths.cache_dir(None) / "modules")
    text_modules = [m for m in handles if m.startswith("en-")]
    searcher = RandomSearcher(SearchSpace(list(handles), EXTENDED), args.seed)
    task = TaskRef(args.task)
    rows = {"paper": [], "extended": []}
    for i in range(args.configs):
        trial = searcher.suggest(i, args.task, text_modules)
        drawn = trial.config
        if args.max_samples:
            drawn = dataclasses.replace(drawn, train_samples=min(drawn.train_samples, args.max_samples))
        configs = {"extended": drawn, "paper": dataclasses.replace(drawn, **PAPER_WIDE)}
        for space in (("paper", "extended") if i % 2 == 0 else ("extended", "paper")):
            start = time.perf_counter()
            result = evaluate(configs[space], task, handles, trial.seed)
            rows[space].append({"config": i, "wall_time_s": time.perf_counter() - start,
                                "valid_accuracy": result.valid_accuracy,
                                "status": result.status.value, "wide": configs[space].wide_setting()
                                if configs[space].wide_enabled else None})
            print(f"config {i:3d} {space:8s} {rows[space][-1]['wall_time_s']:7.2f} s  valid "
                  f"{result.valid_accuracy:.3f}  {configs[space].describe()}", flush=True)
    for space, trials in rows.items():
        print(f"{space:8s} {summary([t['wall_time_s'] for t in trials])}  mean valid "
              f"{np.mean([t['valid_accuracy'] for t in trials]):.3f}")
    times = {s: np.array([t["wall_time_s"] for t in rows[s]]) for s in rows}
    print(f"extended / paper: median x{np.median(times['extended']) / np.median(times['paper']):.2f}, "
          f"mean x{times['extended'].mean() / times['paper'].mean():.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
