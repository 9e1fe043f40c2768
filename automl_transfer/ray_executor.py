"""Trials on Ray: a pool of long-lived worker actors, on this machine or on a cluster.

Each actor runs one trial at a time and lives for the whole run, so what a worker process caches
(TensorFlow itself, task features, loaded modules) is paid once per worker, not once per trial.
A worker that dies mid-trial (killed, out of memory, its node lost) gives that trial FAILED with
the reason, and a fresh actor takes its place: the run goes on, no trial is lost or left hanging.

Ray is optional (`pip install -e ".[ray]"`). Workers import `automl_transfer` and read the paths
the driver gives each trial (data directory, module handles): on a cluster they must exist on
every node (docs/cluster.md).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

from automl_transfer import paths, workers
from automl_transfer.errors import UserError
from automl_transfer.executors import Executor, TrialFn, warn
from automl_transfer.trial import Status, Trial, TrialResult

INSTALL_HINT = 'the Ray executor needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")'
# Trials pass a few kilobytes; Ray's minimum store keeps a local Ray light on a small machine.
OBJECT_STORE_BYTES = 80 * 2**20
# Forwarded to every worker, so that workers find the data and built modules the driver finds.
WORKER_ENV = (paths.DATA_DIR_ENV, paths.CACHE_DIR_ENV, "PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")


def import_ray() -> Any:
    """The `ray` module, or UserError saying in one line how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


def worker_env() -> dict[str, str]:
    """The driver's settings of WORKER_ENV, as Ray's runtime_env passes them to workers."""
    return {name: os.environ[name] for name in WORKER_ENV if name in os.environ}


def connect(address: str) -> bool:
    """Start a local Ray sized to this machine (`address` ''), or join the cluster at `address`
    ('auto' or host:port). Returns whether this call connected (False: Ray was already up in this
    process, and whoever started it shuts it down).

    Raises:
        UserError: Ray is missing or the cluster cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()},
                              "logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise UserError(f"cannot join the Ray cluster at {address!r}: {_first_line(err)} "
                            f"(start one with `ray start --head`, or leave the address empty "
                            f"for a local Ray)") from None
        return True
    _start_local(ray, common)
    return True


def _start_local(ray: Any, common: dict[str, Any]) -> None:
    """A local Ray with this machine's CPUs, a small object store and no dashboard; tried twice,
    as Ray gives its node 30 s to start and a busy machine may need more."""
    for attempt in (1, 2):
        try:
            ray.init(num_cpus=workers.cpu_count(), include_dashboard=False,
                     object_store_memory=OBJECT_STORE_BYTES, **common)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception on a timeout
            ray.shutdown()
            if attempt == 2:
                raise UserError(f"could not start a local Ray: {_first_line(err)}") from None


class _TrialWorker:
    """The actor: sets its process up once, then evaluates trials one at a time."""

    def __init__(self, threads: int):
        workers.init_worker(parent_pid=None, threads=threads)  # Ray ties its life to its node

    def run(self, fn: TrialFn, trial: Trial) -> TrialResult:
        return fn(trial)


class RayExecutor(Executor):
    """Up to `max_in_flight` trials at once on a pool of Ray actors (capped at Ray's CPUs).

    Ray is started (or joined) when the first trial is about to be submitted, so a run refused for
    its settings never waits for it.
    """

    def __init__(self, max_in_flight: int, address: str = "",
                 log: Callable[[str], object] = warn):
        super().__init__(max_in_flight)
        self._ray = import_ray()
        self._address = address
        self._log = log
        self._owns_ray = False
        self._started = False
        self._idle: list[Any] = []
        self._running: dict[Any, tuple[Trial, Any]] = {}  # result ref -> (trial, actor)

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._owns_ray = connect(self._address)
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = workers.cap_in_flight(self.max_in_flight, cpus, self._log)
        # On this machine workers share its cores; on a cluster each worker gets one core.
        self._threads = (workers.threads_per_worker(self.max_in_flight, cpus)
                         if not self._address else 1)
        self._actor_class = self._ray.remote(num_cpus=self._threads, max_restarts=0)(_TrialWorker)
        self._idle = [self._new_worker() for _ in range(self.max_in_flight)]

    def _new_worker(self) -> Any:
        return self._actor_class.remote(self._threads)

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def can_submit(self) -> bool:
        self._start()
        return super().can_submit()

    def submit(self, trial: Trial, fn: TrialFn) -> None:
        if not self.can_submit():
            raise RuntimeError(f"already {self.in_flight} trials in flight: call wait() first")
        actor = self._idle.pop()
        self._running[actor.run.remote(fn, trial)] = (trial, actor)

    def wait(self) -> list[Trial]:
        if not self._running:
            raise RuntimeError("no trial in flight")
        ray = self._ray
        refs = list(self._running)
        ray.wait(refs, num_returns=1)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        finished = []
        for ref in sorted(ready, key=lambda r: self._running[r][0].trial_id):
            trial, actor = self._running.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as err:  # the worker died; a bug in fn propagates
                result = TrialResult(Status.FAILED, 0.0, 0.0, error=_death_reason(err))
                ray.kill(actor)
                actor = self._new_worker()
            self._idle.append(actor)
            finished.append(trial.with_result(result))
        return finished

    def close(self) -> None:
        """Stop every worker (trials still running are abandoned) and a Ray this executor started."""
        for actor in self._idle + [actor for _, actor in self._running.values()]:
            self._ray.kill(actor)
        self._idle.clear()
        self._running.clear()
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _death_reason(err: Exception) -> str:
    """One line: the trial's worker process died (Ray's first line says how, where it knows)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = next((line for line in lines if "killed" in line or "exit" in line), None)
    return "worker process died during the trial" + (f": {detail}" if detail else "")
