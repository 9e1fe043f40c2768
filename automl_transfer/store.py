"""The trial store: one SQLite file per experiment, the single source of truth for results and resume.

`<experiment_dir>/trials.sqlite` holds two tables that plain `sqlite3` can read:
- `trials`: one row per finished trial, the columns of `Trial.to_row()` plus `finished_at` (UTC,
  ISO 8601). Each trial is committed as soon as it finishes, so a killed run loses only the
  trials that were still running.
- `meta`: (key, value JSON): the run settings and the searcher's small state. The searcher state
  is written in the same transaction as the trial it has just learned from, so the two never
  disagree.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
from pathlib import Path
from typing import Any, Iterator

from automl_transfer.errors import StoreError
from automl_transfer.trial import Trial

STORE_FILE = "trials.sqlite"
SEARCHER_STATE_KEY = "searcher_state"

_TRIAL_COLUMNS = (
    ("trial_id", "INTEGER PRIMARY KEY"), ("task", "TEXT NOT NULL"), ("config", "TEXT NOT NULL"),
    ("seed", "INTEGER"), ("searcher", "TEXT"), ("actions", "TEXT"), ("log_prob", "REAL"),
    ("status", "TEXT NOT NULL"), ("valid_accuracy", "REAL"), ("test_accuracy", "REAL"),
    ("wall_time_s", "REAL"), ("setup_time_s", "REAL"), ("train_time_s", "REAL"),
    ("eval_time_s", "REAL"), ("steps", "INTEGER"), ("error", "TEXT"), ("finished_at", "TEXT"),
)
_NAMES = [name for name, _ in _TRIAL_COLUMNS]


class TrialStore:
    """Finished trials and run metadata of one experiment, in SQLite.

    Use as a context manager (or call `close`). One process writes; any number may read.
    Every SQLite failure (a damaged file, a read-only place, a full disk) raises a one-line
    StoreError naming the file and what to do; committed trials are never touched by it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        with self._guard("open the trial store"):
            self._db = sqlite3.connect(str(self.path))
            self._db.row_factory = sqlite3.Row
            # WAL: readers (a progress poller, a report) never block the writer, and a killed
            # writer leaves every committed trial intact.
            self._db.execute("PRAGMA journal_mode=WAL")
            # A damaged file is found here, not at the first trial of a long run.
            if existed and self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
            columns = ", ".join(f"{name} {kind}" for name, kind in _TRIAL_COLUMNS)
            with self._db:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS trials ({columns})")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn an SQLite failure into one line: the file, what failed, what to do."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise StoreError(store_problem(self.path, action, err)) from None

    def record(self, trial: Trial, searcher_state: dict[str, Any] | None = None) -> None:
        """Commit a finished trial (replacing any row with its id), and in the same transaction the
        searcher state that reflects it, if given."""
        if not trial.finished:
            raise ValueError(f"trial {trial.trial_id} has no result: only finished trials are stored")
        row = trial.to_row()
        row["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        placeholders = ", ".join(f":{name}" for name in _NAMES)
        with self._guard(f"record trial {trial.trial_id}"), self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO trials ({', '.join(_NAMES)}) VALUES ({placeholders})", row)
            if searcher_state is not None:
                self._set_meta(SEARCHER_STATE_KEY, searcher_state)

    def trials(self, task: str | None = None) -> list[Trial]:
        """Finished trials ordered by id, optionally of one task."""
        query, args = "SELECT * FROM trials", ()
        if task is not None:
            query, args = query + " WHERE task = ?", (task,)
        return self._read(query + " ORDER BY trial_id", args)

    def trials_in_commit_order(self) -> list[Trial]:
        """Finished trials in the order they were committed: the order a searcher learned them."""
        return self._read("SELECT * FROM trials ORDER BY finished_at, trial_id")

    def _read(self, query: str, args: tuple = ()) -> list[Trial]:
        with self._guard("read the trials"):
            return [Trial.from_row(dict(row)) for row in self._db.execute(query, args)]

    def finished_ids(self) -> set[int]:
        with self._guard("read the trials"):
            return {row[0] for row in self._db.execute("SELECT trial_id FROM trials")}

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._guard(f"read {key!r}"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self._guard(f"write {key!r}"), self._db:
            self._set_meta(key, value)

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         (key, json.dumps(value, sort_keys=True)))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TrialStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def store_problem(path: Path, action: str, err: sqlite3.DatabaseError) -> str:
    """The one line for an SQLite failure, with the way out that keeps committed trials."""
    text = str(err)
    if "full" in text:  # SQLITE_FULL: "database or disk is full"
        advice = "free some space, then rerun the same command to resume (finished trials are kept)"
    elif "readonly" in text or "unable to open" in text or "locked" in text:
        advice = "make it writable, or use another --experiment_dir"
    else:  # SQLITE_CORRUPT / SQLITE_NOTADB
        advice = ("it is damaged: restore it from a backup, or start afresh with --overwrite "
                  "(deletes it) or another --experiment_dir")
    return f"{path}: cannot {action} ({text}): {advice}"
