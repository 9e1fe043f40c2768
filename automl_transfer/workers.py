"""What every worker process does before its first trial, and how many workers a machine takes.

A worker must die with the run that started it: a SIGKILLed driver would otherwise leave workers
of about 1 GB each running under PID 1. Only the driver reports Ctrl-C (workers ignore SIGINT and
are stopped by the driver). TensorFlow's thread pools are sized so that workers sharing a machine
do not oversubscribe its cores.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Callable

from automl_transfer.cli_process import import_tensorflow

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_S = 0.5


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total, where known)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# The most memory one worker is expected to hold (TensorFlow, a task's features and a module: about
# 1 GB on our tasks, more for the largest wide vocabularies).
WORKER_MEMORY_BYTES = 2 << 30


def local_slots() -> int:
    """Workers this machine takes by default: one per CPU, at most one per WORKER_MEMORY_BYTES
    of its memory."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(cpu_count(), memory // WORKER_MEMORY_BYTES))


def cap_in_flight(max_in_flight: int, cpus: int, log: Callable[[str], object]) -> int:
    """`max_in_flight`, capped at `cpus` (saying so in one line): each trial keeps a core busy and
    holds about 1 GB, so more workers than cores only slow every trial and risk running out of
    memory."""
    if max_in_flight <= cpus:
        return max_in_flight
    log(f"warning: max_in_flight={max_in_flight} is more than the {cpus} CPUs available: running "
        f"{cpus} trials at a time")
    return cpus


def threads_per_worker(max_in_flight: int, cpus: int) -> int:
    """TensorFlow threads per worker so that the workers together use each core once."""
    return max(1, cpus // max_in_flight)


def init_worker(parent_pid: int | None, threads: int | None) -> None:
    """Run first in a worker: ignore Ctrl-C, die with `parent_pid` (None: the worker's lifetime is
    managed by someone else, e.g. Ray), and limit TensorFlow to `threads` (None: its defaults)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if threads is not None:
        limit_tensorflow_threads(threads)
    import_tensorflow()  # now, quietly: its loading notices would interleave with the progress


def die_with_parent(parent_pid: int) -> None:
    """Exit when `parent_pid` dies: the kernel's parent-death signal on Linux, and a watcher thread
    everywhere (it also covers the parent-death signal's caveat: it follows the parent *thread*)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent",
                     daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:  # an orphan is re-parented, so its parent pid changes
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def limit_tensorflow_threads(threads: int) -> None:
    """Size TensorFlow's intra- and inter-op pools to `threads`, through the environment TensorFlow
    reads when its runtime starts: a worker must not pay for importing TensorFlow before it is
    needed (seconds per worker), and no op may have run yet (so only in a process of our own)."""
    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
