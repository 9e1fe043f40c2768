"""How long a stop waits for the child in training, and what training in chunks costs.

A stop signal (Ctrl-C, SIGTERM) is handled when Python next runs; a child trains inside TensorFlow
calls, so the wait is the rest of the running call. The child calls its training graph in chunks
of about CALL_SECONDS each; this prints, side by side in one process:

1. the cost: the same seeded random configurations trained in chunks and in one call (the old
   way), alternating which goes first; median and mean trial time of each, their ratio, and
   whether the results are identical (they must be: chunking does not change a seed's result);
2. the wait: a long child (fine-tuned module, 1e6 samples by default) is interrupted by SIGALRM
   after each of --delays seconds; the time from the signal to the interrupt, chunked and not.

Usage: python benchmarks/stop_latency.py [--task customer_reviews] [--trials 20]
           [--module en-word2vec-news-300] [--samples 1000000] [--delays 5,20]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from automl_transfer.child import model  # noqa: E402
from automl_transfer.child.evaluate import TaskRef, evaluate  # noqa: E402
from automl_transfer.modules.build import ensure_offline_modules  # noqa: E402
from automl_transfer.modules.registry import load_registry  # noqa: E402
from automl_transfer.search_space import Config, SearchSpace  # noqa: E402
from automl_transfer.searchers.random_search import RandomSearcher  # noqa: E402

ONE_CALL = 10**9  # more steps than any child has: the whole child in one call


class _Alarm(KeyboardInterrupt):
    """Raised by SIGALRM, like the CLI's stop signals: a trial does not catch it."""


def _raise_alarm(signum: int, frame: object) -> None:
    raise _Alarm()


def timed_trial(config: Config, task: TaskRef, handles: dict[str, str], seed: int, first_call_steps: int):
    model.FIRST_CALL_STEPS = first_call_steps
    start = time.perf_counter()
    result = evaluate(config, task, handles, seed)
    return time.perf_counter() - start, result


def stop_wait(config: Config, task: TaskRef, handles: dict[str, str], delay: float,
              first_call_steps: int) -> str:
    """Seconds from SIGALRM, `delay` s into the trial, to the interrupt reaching Python."""
    model.FIRST_CALL_STEPS = first_call_steps
    signal.signal(signal.SIGALRM, _raise_alarm)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, delay)
    try:
        result = evaluate(config, task, handles, seed=0)
    except _Alarm:
        return f"{time.perf_counter() - start - delay:.1f} s"
    signal.setitimer(signal.ITIMER_REAL, 0)
    return f"trial ended first ({time.perf_counter() - start:.1f} s, {result.status.value})"


def compare_cost(task: TaskRef, handles: dict[str, str], module_choices: list[str], trials: int, seed: int) -> None:
    """Seeded random configurations, each trained chunked and in one call (alternating the order)."""
    chunked = model.FIRST_CALL_STEPS
    searcher = RandomSearcher(SearchSpace(module_choices), seed=seed)
    configs = [searcher.suggest(i, task.name, list(handles)) for i in range(trials)]
    timed_trial(configs[0].config, task, handles, configs[0].seed, chunked)  # task features, warm
    times: dict[int, list[float]] = {chunked: [], ONE_CALL: []}
    same = 0
    for i, suggested in enumerate(configs):
        results = {}
        for first_call_steps in ((chunked, ONE_CALL) if i % 2 == 0 else (ONE_CALL, chunked)):
            seconds, results[first_call_steps] = timed_trial(suggested.config, task, handles, suggested.seed,
                                                             first_call_steps)
            times[first_call_steps].append(seconds)
        a, b = results[chunked], results[ONE_CALL]
        same += ((a.status, a.valid_accuracy, a.test_accuracy, a.steps)
                 == (b.status, b.valid_accuracy, b.test_accuracy, b.steps))
        print(f"trial {i}: {suggested.config.train_steps} steps, chunked {times[chunked][-1]:.2f} s, "
              f"one call {times[ONE_CALL][-1]:.2f} s", flush=True)
    print(f"\n{task.name}, {trials} random configurations (seed {seed}):")
    for name, key in ((f"chunks of ~{model.CALL_SECONDS:g} s", chunked), ("one call", ONE_CALL)):
        print(f"  {name}: median {statistics.median(times[key]):.2f} s, mean {statistics.mean(times[key]):.2f} s")
    print(f"  total time, chunked / one call: {sum(times[chunked]) / sum(times[ONE_CALL]):.3f}")
    print(f"  identical status, accuracies and steps: {same} of {trials}")


def compare_stop_wait(task: TaskRef, handles: dict[str, str], module: str, samples: int, delays: list[float]) -> None:
    """A long fine-tuned child signalled `delay` s in, chunked and in one call."""
    chunked = model.FIRST_CALL_STEPS
    long_child = Config(module=module, fine_tune=True, num_layers=3, layer_size=256, activation="relu",
                        normalization="batch", dropout=0.1, deep_learning_rate=0.03, deep_l2=0.0,
                        wide_learning_rate=0.03, wide_l1=0.0, train_samples=samples)
    timed_trial(dataclasses.replace(long_child, train_samples=1000), task, handles, 0, chunked)  # features, warm
    print(f"\nstop wait, {module} fine-tuned, {samples} samples on {task.name}:")
    for delay in delays:
        for name, key in ((f"chunks of ~{model.CALL_SECONDS:g} s", chunked), ("one call", ONE_CALL)):
            print(f"  signal at {delay:g} s, {name}: {stop_wait(long_child, task, handles, delay, key)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="customer_reviews")
    parser.add_argument("--trials", type=int, default=20, help="random configurations for the cost (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--module", default="en-word2vec-news-300", help="the long child's module")
    parser.add_argument("--samples", type=int, default=1_000_000, help="the long child's training samples")
    parser.add_argument("--delays", default="5,20", help="seconds into the long child to signal")
    args = parser.parse_args()

    registry = load_registry()
    handles = {name: spec.handle for name, spec in registry.items() if spec.modality == "text"}
    ensure_offline_modules(names=list(handles))
    task = TaskRef(args.task)
    if args.trials:
        compare_cost(task, handles, list(registry), args.trials, args.seed)
    compare_stop_wait(task, handles, args.module, args.samples, [float(d) for d in args.delays.split(",")])


if __name__ == "__main__":
    main()
