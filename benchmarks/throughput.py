"""Trials per hour on this machine: one at a time (today's default) against 2 single-threaded
workers (process pool, Ray actors), on the same seeded random configurations, in one run.

Each way runs the real experiment loop (RandomSearcher, real child, real store) on a fresh
experiment directory; its wall time counts everything a user waits for, worker start-up included.
Then the per-trial setup a persistent worker saves: one trial in a freshly started worker process
(process start, imports, TensorFlow start-up, task features) against the same trial in that worker
once warm. Usage:
    PYTHONPATH=. python benchmarks/throughput.py [--trials 40] [--tasks sms_spam,subj]
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from automl_transfer import paths, workers
from automl_transfer.executors import ProcessExecutor, SequentialExecutor
from automl_transfer.experiment import ChildEvaluator, run_experiment, task_schedule
from automl_transfer.modules import registry
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.trial import Status


def _executor(way: str, workers_count: int):
    if way == "sequential":
        return SequentialExecutor()
    if way == "process":
        return ProcessExecutor(workers_count, threads_per_worker=1)
    from automl_transfer.ray_executor import RayExecutor
    return RayExecutor(workers_count)


def run_way(way: str, evaluator: ChildEvaluator, tasks: list[str], modules: list[str],
            trials: int, seed: int, workers_count: int, directory: Path) -> dict:
    """Wall time and statuses of `trials` random trials (round robin over `tasks`) run `way`."""
    space = SearchSpace(modules)
    schedule = task_schedule(tasks, trials // len(tasks), seed, interleave=False)
    start = time.perf_counter()
    done = run_experiment(directory / way, RandomSearcher(space, seed), schedule,
                          {task: modules for task in tasks}, evaluator,
                          {"mode": "random", "tasks": tasks, "seed": seed},
                          executor=_executor(way, workers_count))
    wall = time.perf_counter() - start
    statuses = {s.value: sum(t.result.status == s for t in done) for s in Status
                if s != Status.PENDING}
    return {"way": way, "trials": len(done), "wall_s": round(wall, 1),
            "trials_per_hour": round(len(done) / wall * 3600, 1), "statuses": statuses,
            "configs": [t.config.to_json() for t in done]}


def setup_saved(evaluator: ChildEvaluator, task: str, modules: list[str], seed: int) -> dict:
    """Seconds one trial takes in a fresh worker (started for it) and again in the warm worker."""
    space = SearchSpace(modules)
    searcher = RandomSearcher(space, seed)
    trial = next(t for t in (searcher.suggest(i, task, modules) for i in range(1000))
                 if t.config.deep_enabled and t.config.train_steps <= 100)
    with futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=workers.init_worker,
                                     initargs=(os.getpid(), 1)) as pool:
        start = time.perf_counter()
        pool.submit(evaluator, trial).result()
        cold = time.perf_counter() - start
        start = time.perf_counter()
        pool.submit(evaluator, trial).result()
        warm = time.perf_counter() - start
    return {"config": trial.config.describe(), "fresh_worker_s": round(cold, 2),
            "warm_worker_s": round(warm, 2), "saved_s": round(cold - warm, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per way, over all tasks")
    parser.add_argument("--tasks", default="sms_spam,subj")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ways", default="sequential,process,ray")
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    specs = registry.load_registry("offline")
    modules = [name for name, spec in specs.items() if spec.modality == "text"
               and Path(spec.handle, "manifest.json").exists()]
    evaluator = ChildEvaluator({t: t for t in tasks}, {m: specs[m].handle for m in modules},
                               str(paths.data_dir()))
    print(f"{args.trials} trials per way over {','.join(tasks)}, seed {args.seed}, "
          f"{len(modules)} built modules, {workers.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        for way in args.ways.split(","):
            rows.append(run_way(way, evaluator, tasks, modules, args.trials, args.seed,
                                args.workers, Path(scratch)))
            print(f"  {way}: {rows[-1]['wall_s']} s, load average {os.getloadavg()[0]:.1f}",
                  flush=True)
    assert all(row["configs"] == rows[0]["configs"] for row in rows), "ways ran other configs"
    base = rows[0]["trials_per_hour"]
    print(f"\n{'way':>12} | trials | wall s | trials/hour | x {rows[0]['way']} | statuses")
    for row in rows:
        print(f"{row['way']:>12} | {row['trials']:>6} | {row['wall_s']:>6} | "
              f"{row['trials_per_hour']:>11} | {row['trials_per_hour'] / base:>5.2f}x | "
              f"{row['statuses']}")
    saved = setup_saved(evaluator, tasks[0], modules, args.seed)
    print(f"\nper-trial setup a persistent worker saves ({tasks[0]}, {saved['config']}): fresh "
          f"worker {saved['fresh_worker_s']} s, warm worker {saved['warm_worker_s']} s, saved "
          f"{saved['saved_s']} s; load average {os.getloadavg()[0]:.1f} at end")
    if args.out:
        for row in rows:
            row.pop("configs")
        Path(args.out).write_text(json.dumps({"ways": rows, "setup": saved}, indent=2))


if __name__ == "__main__":
    main()
