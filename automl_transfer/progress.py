"""Progress on stderr: trials done / total, best validation accuracy per task, trials per minute,
and failed or diverged trials with the first error (a failure is never silent).

On a terminal one line is rewritten in place; otherwise (logs, pipes) one line per trial.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Sequence, TextIO

from automl_transfer.experiment import Callback, schedule_tasks
from automl_transfer.searchers.base import Searcher
from automl_transfer.store import TrialStore
from automl_transfer.trial import Status, Trial


class FailureCount:
    """Failed and diverged trials, and the first error: shown wherever results are."""

    def __init__(self, trials: Sequence[Trial] = ()):
        self.failed = self.diverged = 0
        self.first_error = ""
        for trial in trials:
            self.add(trial)

    def add(self, trial: Trial) -> None:
        status = trial.result.status if trial.result else Status.PENDING
        if status == Status.FAILED:
            self.failed += 1
            self.first_error = self.first_error or f"#{trial.trial_id}: {trial.result.error[:160]}"
        elif status == Status.DIVERGED:
            self.diverged += 1

    @property
    def total(self) -> int:
        return self.failed + self.diverged

    def describe(self) -> str:
        """'2 failed (first #3: ModuleError: ...), 1 diverged'; '' when none."""
        parts = []
        if self.failed:
            parts.append(f"{self.failed} failed (first {self.first_error})")
        if self.diverged:
            parts.append(f"{self.diverged} diverged")
        return ", ".join(parts)


class ProgressDisplay(Callback):
    """A Callback that reports after every trial."""

    def __init__(self, stream: TextIO | None = None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.in_place = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = 0
        self.done = 0
        self.run_done = 0  # finished in this session: the rate ignores resumed trials
        self.best: dict[str, float] = {}
        self.started = 0.0
        self.failures = FailureCount()

    def on_run_start(self, store: TrialStore, searcher: Searcher, schedule: Sequence[str]) -> None:
        self.total = len(schedule)
        self.best = {task: float("nan") for task in schedule_tasks(schedule)}
        finished = [t for t in store.trials() if t.trial_id < self.total]
        for trial in finished:
            self._note(trial)
        self.done = len(finished)
        self.started = self.clock()
        if self.done:
            self._write(f"resuming: {self.done}/{self.total} trials already finished")

    def on_trial_end(self, trial: Trial, searcher: Searcher, store: TrialStore) -> None:
        self._note(trial)
        self.done += 1
        self.run_done += 1
        self._write(self.line(trial))

    def on_run_end(self, store: TrialStore, searcher: Searcher) -> None:
        if self.in_place:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, trial: Trial) -> str:
        """The status after `trial`: 'trials 3/10 | best valid sms_spam 0.912 subj 0.801 | ...'."""
        minutes = max(self.clock() - self.started, 1e-9) / 60.0
        best = " ".join(f"{task} {'-' if math.isnan(acc) else f'{acc:.3f}'}"
                        for task, acc in self.best.items())
        status = trial.result.status.value if trial.result else "pending"
        failures = f" | {self.failures.describe()}" if self.failures.total else ""
        return (f"trials {self.done}/{self.total} | best valid {best} | "
                f"{self.run_done / minutes:.1f} trials/min{failures} | last: #{trial.trial_id} "
                f"{trial.task} {status} valid "
                f"{trial.result.valid_accuracy if trial.result else float('nan'):.3f}")

    def _note(self, trial: Trial) -> None:
        if trial.result is None:
            return
        self.failures.add(trial)
        current = self.best.get(trial.task, float("nan"))
        reward = trial.result.reward
        if not current >= reward:  # NaN-safe: NaN means no trial yet
            self.best[trial.task] = reward

    def _write(self, text: str) -> None:
        if self.in_place:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
