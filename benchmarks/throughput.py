"""Trials per hour on this machine: one at a time (today's default) against 2 single-threaded
workers (process pool, Ray actors), on the same seeded random configurations, in one run.

Each way runs the real experiment loop (RandomSearcher, real child, real store) in a fresh process
on a fresh experiment directory, as a user's run does; its wall time counts everything a user waits
for (TensorFlow's start-up, the tasks' features, worker start-up). Wall times on a shared machine
drift by 10-20% from run to run, so with --repeats N the ways take turns N times and the table
gives each way's median wall time and the median of its per-repeat ratios to the first way.
Then the per-trial setup a persistent worker saves: one trial in a freshly started worker process
(process start, imports, TensorFlow start-up, task features) against the same trial in that worker
once warm. Usage:
    PYTHONPATH=. python benchmarks/throughput.py [--trials 40] [--repeats 3] [--ways ...]
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing
import os
import statistics
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
    """`way` is sequential, process or ray (`workers_count` single-threaded workers), or
    process:WxT (W workers of T TensorFlow threads each)."""
    if way == "sequential":
        return SequentialExecutor()
    if way.startswith("process"):
        shape = way.partition(":")[2] or f"{workers_count}x1"
        count, threads = (int(n) for n in shape.split("x"))
        return ProcessExecutor(count, threads_per_worker=threads)
    from automl_transfer.ray_executor import RayExecutor
    return RayExecutor(workers_count)


def run_way(way: str, evaluator: ChildEvaluator, tasks: list[str], modules: list[str],
            trials: int, seed: int, workers_count: int, directory: Path) -> dict:
    """Statuses and times of `trials` random trials (round robin over `tasks`) run `way`."""
    space = SearchSpace(modules)
    schedule = task_schedule(tasks, trials // len(tasks), seed, interleave=False)
    done = run_experiment(directory / way, RandomSearcher(space, seed), schedule,
                          {task: modules for task in tasks}, evaluator,
                          {"mode": "random", "tasks": tasks, "seed": seed},
                          executor=_executor(way, workers_count))
    statuses = {s.value: sum(t.result.status == s for t in done) for s in Status
                if s != Status.PENDING}
    phases = {phase: round(sum(getattr(t.result, f"{phase}_time_s") for t in done), 1)
              for phase in ("setup", "train", "eval")}
    return {"way": way, "trials": len(done), "statuses": statuses,
            "trial_s": phases, "configs": [t.config.to_json() for t in done],
            "valid_accuracies": [t.result.valid_accuracy for t in done]}


def run_way_in_fresh_process(*args) -> dict:
    """`run_way` in a newly started process: every way pays the start-up a user's run pays (the
    wall time counts from before the process starts)."""
    start = time.perf_counter()
    with futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        run = pool.submit(run_way, *args).result()
    return {**run, "wall_s": round(time.perf_counter() - start, 1)}


def summary(way: str, runs: list[dict], first: list[dict]) -> dict:
    """A way's median wall time and its ratio to the first way's, repeat by repeat."""
    walls = [run["wall_s"] for run in runs]
    ratios = [base["wall_s"] / run["wall_s"] for base, run in zip(first, runs)]
    last = runs[-1]
    return {"way": way, "trials": last["trials"], "wall_s": walls,
            "median_wall_s": round(statistics.median(walls), 1),
            "trials_per_hour": round(last["trials"] / statistics.median(walls) * 3600, 1),
            "ratios": ratios, "median_ratio": statistics.median(ratios),
            "trial_s": last["trial_s"], "statuses": last["statuses"],
            "same_valid_accuracy": sum(a == b for a, b in zip(last["valid_accuracies"],
                                                              first[-1]["valid_accuracies"]))}


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
    parser.add_argument("--ways", default="sequential,process,ray",
                        help="comma-separated: sequential, process, ray (--workers single-threaded "
                             "workers) or process:WxT (W workers of T threads)")
    parser.add_argument("--repeats", type=int, default=1, help="times each way runs, in turns")
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
    ways = args.ways.split(",")
    runs: dict[str, list[dict]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        for repeat in range(args.repeats):
            for way in ways:
                run = run_way_in_fresh_process(way, evaluator, tasks, modules, args.trials,
                                               args.seed, args.workers, Path(scratch, str(repeat)))
                runs[way].append(run)
                print(f"  repeat {repeat + 1}, {way}: {run['wall_s']} s, load average "
                      f"{os.getloadavg()[0]:.1f}", flush=True)
    first = runs[ways[0]]
    every = [run for way in ways for run in runs[way]]
    assert all(run["configs"] == first[0]["configs"] for run in every), "ways ran other configs"
    rows = [summary(way, runs[way], first) for way in ways]
    print(f"\n{'way':>12} | trials | median wall s | trials/hour | x {ways[0]} (per repeat) | "
          f"trial s: setup + train + eval | valid acc = {ways[0]}'s | statuses")
    for row in rows:
        ratios = ", ".join(f"{r:.2f}" for r in row["ratios"])
        print(f"{row['way']:>12} | {row['trials']:>6} | {row['median_wall_s']:>13} | "
              f"{row['trials_per_hour']:>11} | {row['median_ratio']:>5.2f}x ({ratios}) | "
              f"{' + '.join(str(s) for s in row['trial_s'].values()):>29} | "
              f"{row['same_valid_accuracy']:>3}/{row['trials']} | {row['statuses']}")
    saved = setup_saved(evaluator, tasks[0], modules, args.seed)
    print(f"\nper-trial setup a persistent worker saves ({tasks[0]}, {saved['config']}): fresh "
          f"worker {saved['fresh_worker_s']} s, warm worker {saved['warm_worker_s']} s, saved "
          f"{saved['saved_s']} s; load average {os.getloadavg()[0]:.1f} at end")
    if args.out:
        Path(args.out).write_text(json.dumps({"ways": rows, "setup": saved}, indent=2))


if __name__ == "__main__":
    main()
