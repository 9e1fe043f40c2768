"""The experiment directory as a place: is it usable, is it ours, and what `--overwrite` may delete.

Only names the project writes are ever deleted: a user who points `--experiment_dir` at a folder
holding their own files (`.`, a project folder) keeps them. A new run is refused in a non-empty
folder that holds none of our experiments, since it would mix our files with theirs.
"""
from __future__ import annotations

import errno
import fcntl
import fnmatch
import os
import shutil
from pathlib import Path

from automl_transfer.errors import UserError
from automl_transfer.store import STORE_FILE

LOCK_FILE = ".lock"
# What a run (or a report, or the protocol's per-run log) writes at the top of its directory.
# Searcher checkpoints are `<state_dirname>` with `.tmp`/`.old` beside it while being replaced.
OUR_NAMES = (STORE_FILE, f"{STORE_FILE}-wal", f"{STORE_FILE}-shm", f"{STORE_FILE}-journal",
             LOCK_FILE, "tensorboard", "run.log", "report.md", "learning_curves_*.png",
             "task_similarity_*.png", "option_probability_*.png",
             *(f"{state}{suffix}" for state in ("controller", "searcher")
               for suffix in ("", ".tmp", ".old")))


def is_ours(name: str) -> bool:
    """Whether a top-level entry of an experiment directory is one the project writes."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OUR_NAMES)


def os_error(path: str | Path, err: OSError, what: str) -> UserError:
    """One line for an OSError on a path: which file, what failed, what to do."""
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        advice = "free some space, then rerun the same command to resume"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make it writable or use another --experiment_dir"
    else:
        advice = "use another --experiment_dir"
    return UserError(f"{path}: cannot {what} ({reason}): {advice}")


def check_usable(experiment_dir: str | Path) -> None:
    """Refuse a directory that cannot hold an experiment, without creating anything.

    Raises:
        UserError: it is a file, lies under a file, or cannot be written.
    """
    path = Path(experiment_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a directory: choose another --experiment_dir")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{path}: cannot create it: {existing} is a file, not a directory; "
                        f"choose another --experiment_dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{existing}: not writable: make it writable or use another "
                        f"--experiment_dir")


def check_not_in_use(experiment_dir: str | Path) -> None:
    """Refuse a directory whose lock another process holds (nothing is created)."""
    lock_path = Path(experiment_dir) / LOCK_FILE
    if not lock_path.is_file():
        return
    try:
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise in_use(experiment_dir) from None
    except OSError as err:
        raise os_error(lock_path, err, "open the lock file") from None


def in_use(experiment_dir: str | Path) -> UserError:
    return UserError(f"{experiment_dir}: another run is using this experiment directory; "
                     f"wait for it to finish or use another --experiment_dir")


def check_new_run_allowed(experiment_dir: str | Path) -> None:
    """A new run (no store yet) needs an empty directory or one holding only our files.

    Raises:
        UserError: naming the first foreign entry.
    """
    path = Path(experiment_dir)
    if not path.is_dir() or (path / STORE_FILE).exists():
        return
    foreign = sorted(entry.name for entry in path.iterdir() if not is_ours(entry.name))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise UserError(f"{path}: not empty and not an experiment directory (it holds "
                        f"{foreign[0]!r}{more}): use a new or empty --experiment_dir")


def remove_ours(experiment_dir: str | Path) -> None:
    """Delete what the project wrote in `experiment_dir`: never anything else, nor the lock this
    run holds."""
    for entry in sorted(Path(experiment_dir).iterdir()):
        if entry.name == LOCK_FILE or not is_ours(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
