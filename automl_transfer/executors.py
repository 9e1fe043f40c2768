"""Where trials run: in this process one at a time, or several at once in threads, processes or
on Ray (`ray_executor.py`).

The experiment loop submits a trial with the function that evaluates it and collects trials as they
finish, in whatever order; it never asks which executor it has. The function must be picklable
for `ProcessExecutor` and `RayExecutor` (the child's `evaluate` is).
"""
from __future__ import annotations

import abc
import concurrent.futures as futures
import multiprocessing
import os
import sys
from typing import Callable

from automl_transfer import workers
from automl_transfer.trial import Status, Trial, TrialResult

TrialFn = Callable[[Trial], TrialResult]


class Executor(abc.ABC):
    """Runs submitted trials; `wait` hands back finished ones. At most `max_in_flight` at once."""

    def __init__(self, max_in_flight: int = 1):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight

    @property
    @abc.abstractmethod
    def in_flight(self) -> int:
        """Trials submitted and not yet handed back by `wait`."""

    def can_submit(self) -> bool:
        return self.in_flight < self.max_in_flight

    @abc.abstractmethod
    def submit(self, trial: Trial, fn: TrialFn) -> None:
        """Start evaluating `trial` with `fn(trial)`."""

    @abc.abstractmethod
    def wait(self) -> list[Trial]:
        """Block until at least one trial finishes; return the finished trials with their results.

        An exception raised by `fn` (a bug, not a failed trial) propagates here.
        """

    def close(self) -> None:
        """Stop: trials still running are abandoned (their results are never recorded)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SequentialExecutor(Executor):
    """The default: one trial at a time, run in this process when `wait` is called."""

    def __init__(self) -> None:
        super().__init__(max_in_flight=1)
        self._pending: tuple[Trial, TrialFn] | None = None

    @property
    def in_flight(self) -> int:
        return 0 if self._pending is None else 1

    def submit(self, trial: Trial, fn: TrialFn) -> None:
        if self._pending is not None:
            raise RuntimeError("SequentialExecutor runs one trial at a time: call wait() first")
        self._pending = (trial, fn)

    def wait(self) -> list[Trial]:
        if self._pending is None:
            raise RuntimeError("no trial in flight")
        trial, fn = self._pending
        self._pending = None
        return [trial.with_result(fn(trial))]


class _FuturesExecutor(Executor):
    """Several trials at once on a concurrent.futures pool."""

    def __init__(self, pool: futures.Executor, max_in_flight: int):
        super().__init__(max_in_flight)
        self._pool = pool
        self._running: dict[futures.Future, Trial] = {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def submit(self, trial: Trial, fn: TrialFn) -> None:
        if not self.can_submit():
            raise RuntimeError(f"already {self.in_flight} trials in flight: call wait() first")
        self._running[self._pool.submit(fn, trial)] = trial

    def wait(self) -> list[Trial]:
        if not self.in_flight:
            raise RuntimeError("no trial in flight")
        finished: list[Trial] = []
        while not finished:
            self._before_waiting()
            done, _ = futures.wait(self._running, return_when=futures.FIRST_COMPLETED)
            lost = []
            for future in sorted(done, key=lambda f: self._running[f].trial_id):
                trial = self._running.pop(future)
                try:
                    finished.append(trial.with_result(future.result()))
                except futures.BrokenExecutor:  # a worker died; a bug in fn propagates
                    lost.append(trial)
            if lost:
                finished += self._recover(lost)
        return finished

    def _before_waiting(self) -> None:
        """Submit what must run before the next wait (nothing, unless a subclass recovers)."""

    def _recover(self, lost: list[Trial]) -> list[Trial]:
        """The pool broke while `lost` ran: the ones among them that are finished (FAILED); the
        others must be in flight again. A pool that cannot recover raises."""
        raise futures.BrokenExecutor(
            f"the worker pool broke while trials {[t.trial_id for t in lost]} ran")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._running.clear()


class ThreadExecutor(_FuturesExecutor):
    """Trials in threads of this process: cheap to start; TensorFlow releases the GIL in its ops."""

    def __init__(self, max_in_flight: int):
        super().__init__(futures.ThreadPoolExecutor(max_workers=max_in_flight), max_in_flight)


class ProcessExecutor(_FuturesExecutor):
    """Trials in worker processes (spawned, since TensorFlow is not fork-safe): full isolation.

    Workers die with this process, ignore Ctrl-C (the driver reports it) and, given
    `threads_per_worker`, limit TensorFlow to that many threads each.
    """

    def __init__(self, max_in_flight: int, threads_per_worker: int | None = None):
        self._threads_per_worker = threads_per_worker
        self._fns: dict[int, TrialFn] = {}
        self._suspects: list[Trial] = []  # lost when a worker died: rerun one at a time
        self._alone: Trial | None = None  # the suspect running by itself
        super().__init__(self._new_pool(max_in_flight), max_in_flight)

    def _new_pool(self, max_in_flight: int) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(
            max_workers=max_in_flight, mp_context=multiprocessing.get_context("spawn"),
            initializer=workers.init_worker, initargs=(os.getpid(), self._threads_per_worker))

    @property
    def in_flight(self) -> int:
        return len(self._running) + len(self._suspects)

    def can_submit(self) -> bool:
        return not self._suspects and self._alone is None and super().can_submit()

    def submit(self, trial: Trial, fn: TrialFn) -> None:
        try:
            super().submit(trial, fn)
        except futures.BrokenExecutor:  # a worker died since the last wait: this trial never
            self._suspects.append(trial)  # started; it runs on the rebuilt pool, one at a time
        self._fns[trial.trial_id] = fn

    def wait(self) -> list[Trial]:
        """As `Executor.wait`, and a worker that dies (killed, out of memory) loses no trial.

        A dead worker breaks the whole pool without saying whose trial it ran: every trial then
        in flight is rerun on a fresh pool, one at a time (trials are seeded: a rerun gives what
        the first run would have). A trial whose worker dies while it runs alone is FAILED.
        """
        finished = super().wait()
        for trial in finished:
            self._fns.pop(trial.trial_id, None)
            if self._alone is not None and trial.trial_id == self._alone.trial_id:
                self._alone = None
        return finished

    def _before_waiting(self) -> None:
        """Start the next suspect alone, once every future of a broken pool has been collected."""
        if self._suspects and self._alone is None and not self._running:
            self._alone = self._suspects.pop(0)
            fn = self._fns[self._alone.trial_id]
            try:
                future = self._pool.submit(fn, self._alone)
            except futures.BrokenExecutor:  # it broke between trials: nothing of it to collect
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool(self.max_in_flight)
                future = self._pool.submit(fn, self._alone)
            self._running[future] = self._alone

    def _recover(self, lost: list[Trial]) -> list[Trial]:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool(self.max_in_flight)
        failed = []
        for trial in lost:
            if self._alone is not None and trial.trial_id == self._alone.trial_id:
                failed.append(trial.with_result(TrialResult(
                    Status.FAILED, 0.0, 0.0, error="worker process died during the trial "
                    "(killed, or out of memory), also when rerun alone")))
            else:
                self._suspects.append(trial)
        return failed

    def close(self) -> None:
        super().close()
        self._suspects.clear()
        self._alone = None


KINDS = ("process", "thread", "ray")


def warn(line: str) -> None:
    """Where executors say what they changed (a capped max_in_flight): stderr, beside progress."""
    print(line, file=sys.stderr)


def make_executor(max_in_flight: int = 1, kind: str = "process", ray_address: str = "",
                  log: Callable[[str], object] = warn) -> Executor:
    """The executor for `max_in_flight` trials at once of `kind` (see KINDS).

    One local trial at a time runs in this process (SequentialExecutor). Local pools are capped at
    this machine's CPUs, each worker's TensorFlow getting its share of them; `ray_address` ('' for
    a local Ray, 'auto' or host:port to join a cluster) applies to kind 'ray' only.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown executor kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "ray":
        from automl_transfer.ray_executor import RayExecutor
        return RayExecutor(max_in_flight, ray_address, log=log)
    cpus = workers.cpu_count()
    max_in_flight = workers.cap_in_flight(max_in_flight, cpus, log)
    if max_in_flight == 1:
        return SequentialExecutor()
    if kind == "process":
        return ProcessExecutor(max_in_flight, workers.threads_per_worker(max_in_flight, cpus))
    return ThreadExecutor(max_in_flight)
