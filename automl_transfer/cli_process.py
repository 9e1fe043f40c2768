"""How the command-line process and its workers behave: quiet TensorFlow, clean stops, closed pipes.

- TensorFlow's C++ log: level 3 (errors such as `failed call to cuInit` on a CPU machine hidden)
  and the few lines its libraries print while loading, before any log level applies, swallowed;
  `--verbose` brings both back. Set before TensorFlow is imported; spawned workers inherit it.
- SIGTERM stops a run like Ctrl-C: `Interrupted` (a KeyboardInterrupt) is raised in the main
  thread, the loop checkpoints, the exit code is 128 + the signal (130 or 143). Workers ignore
  SIGINT (a Ctrl-C reaches the whole process group): the parent stops them, so none prints a
  traceback after the parent's one clean line.
- stdout/stderr whose reader went away (`| head -1`): further output is dropped, not a
  BrokenPipeError traceback; the run goes on and its results are saved as usual.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import multiprocessing
import os
import signal
import sys
from typing import Iterator, TextIO

VERBOSE_ENV = "AUTOML_TRANSFER_VERBOSE"  # "1": TensorFlow logs as it likes, in workers too
_TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def configure_tensorflow_logging(verbose: bool) -> None:
    """TensorFlow's C++ log level for this process and the workers it spawns; call before
    TensorFlow is imported."""
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    os.environ[_TF_LOG_LEVEL_ENV] = "0" if verbose else "3"


@contextlib.contextmanager
def _stderr_fd_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: C++ libraries write there, past sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _SilencedLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with file descriptor 2 silenced."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:  # type: ignore[no-untyped-def]
        with _stderr_fd_silenced():
            self._loader.exec_module(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds TensorFlow's own spec the usual way and hands it back with `_SilencedLoader`."""

    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the usual finders do the rest
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilencedLoader(spec.loader)
        return spec


def quiet_tensorflow_import() -> None:
    """Unless verbose, TensorFlow's first import in this process, wherever a mode does it, drops
    the lines its libraries log while loading (absl's 'All log messages before
    absl::InitializeLog()', 'Could not find cuda drivers'), which no log level reaches."""
    if "tensorflow" in sys.modules or os.environ.get(VERBOSE_ENV) == "1":
        return
    os.environ.setdefault(_TF_LOG_LEVEL_ENV, "3")
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def import_tensorflow() -> None:
    """Import TensorFlow now, quietly unless verbose (see `quiet_tensorflow_import`)."""
    quiet_tensorflow_import()
    import tensorflow  # noqa: F401


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop like Ctrl-C; `signum` gives the exit code 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_received: list[int] = []  # the stop signal, once one has arrived


def _raise_interrupted(signum: int, frame: object) -> None:
    for stop_signal in _STOP_SIGNALS:  # a second signal must not break the final checkpoint
        signal.signal(stop_signal, signal.SIG_IGN)
    _received.append(signum)
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """Raise `Interrupted` again for a stop signal that has arrived. Its first raise can land in
    code that swallows it (Python only prints an exception raised inside a __del__, such as
    TensorFlow's resource deleters), and later signals are ignored: without this, such a run
    would go on to the end of its budget. Call it where the run may stop cleanly."""
    if _received:
        raise Interrupted(_received[0])


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise `Interrupted` in the main thread."""
    for stop_signal in _STOP_SIGNALS:
        signal.signal(stop_signal, _raise_interrupted)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the run (SIGINT for a plain KeyboardInterrupt)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def stop_workers() -> None:
    """Terminate the worker processes still running (their trials are not recorded, and rerun on
    resume); without this, exiting would wait for their trials to finish."""
    workers = multiprocessing.active_children()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join()


class PipeSafeStream:
    """A text stream that drops output once its reader has gone (EPIPE), instead of raising."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def _drop_output(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop_output()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop_output()
            self._stream.flush()  # what was buffered now goes to /dev/null

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def guard_std_streams() -> None:
    """Wrap sys.stdout and sys.stderr in `PipeSafeStream`."""
    sys.stdout = PipeSafeStream(sys.stdout)
    sys.stderr = PipeSafeStream(sys.stderr)
