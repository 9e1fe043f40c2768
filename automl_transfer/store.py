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

import datetime
import json
import sqlite3
from pathlib import Path
from typing import Any

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
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path))
        self._db.row_factory = sqlite3.Row
        # WAL: readers (a progress poller, a report) never block the writer, and a killed writer
        # leaves every committed trial intact.
        self._db.execute("PRAGMA journal_mode=WAL")
        columns = ", ".join(f"{name} {kind}" for name, kind in _TRIAL_COLUMNS)
        with self._db:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS trials ({columns})")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def record(self, trial: Trial, searcher_state: dict[str, Any] | None = None) -> None:
        """Commit a finished trial (replacing any row with its id), and in the same transaction the
        searcher state that reflects it, if given."""
        if not trial.finished:
            raise ValueError(f"trial {trial.trial_id} has no result: only finished trials are stored")
        row = trial.to_row()
        row["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        placeholders = ", ".join(f":{name}" for name in _NAMES)
        with self._db:
            self._db.execute(
                f"INSERT OR REPLACE INTO trials ({', '.join(_NAMES)}) VALUES ({placeholders})", row)
            if searcher_state is not None:
                self._set_meta(SEARCHER_STATE_KEY, searcher_state)

    def trials(self, task: str | None = None) -> list[Trial]:
        """Finished trials ordered by id, optionally of one task."""
        query, args = "SELECT * FROM trials", ()
        if task is not None:
            query, args = query + " WHERE task = ?", (task,)
        return [Trial.from_row(dict(row)) for row in self._db.execute(query + " ORDER BY trial_id", args)]

    def trials_in_commit_order(self) -> list[Trial]:
        """Finished trials in the order they were committed: the order a searcher learned them."""
        rows = self._db.execute("SELECT * FROM trials ORDER BY finished_at, trial_id")
        return [Trial.from_row(dict(row)) for row in rows]

    def finished_ids(self) -> set[int]:
        return {row[0] for row in self._db.execute("SELECT trial_id FROM trials")}

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        with self._db:
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
