"""The immutable trial record: the only thing passed between searcher, executor and store."""
from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from automl_transfer.search_space import Config


class Status(str, enum.Enum):
    PENDING = "pending"      # suggested, not finished
    COMPLETED = "completed"  # trained and evaluated
    DIVERGED = "diverged"    # loss became NaN/inf: reward 0
    FAILED = "failed"        # any other error inside the trial: reward 0, error recorded


@dataclasses.dataclass(frozen=True)
class TrialResult:
    """What evaluating one configuration produced. Test accuracy is never shown to a searcher."""

    status: Status
    valid_accuracy: float
    test_accuracy: float
    setup_time_s: float = 0.0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    steps: int = 0
    error: str = ""

    @property
    def wall_time_s(self) -> float:
        return self.setup_time_s + self.train_time_s + self.eval_time_s

    @property
    def reward(self) -> float:
        """Validation accuracy; 0 for diverged or failed children."""
        return self.valid_accuracy if self.status == Status.COMPLETED else 0.0


@dataclasses.dataclass(frozen=True)
class Trial:
    """A configuration suggested for a task, and (once finished) its result.

    `actions` and `log_prob` are what the searcher needs to learn from the trial later, even if
    it finishes after other trials (several may be in flight).
    """

    trial_id: int
    task: str
    config: Config
    seed: int
    searcher: str
    actions: tuple[int, ...] = ()
    log_prob: float = 0.0
    result: TrialResult | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    def with_result(self, result: TrialResult) -> "Trial":
        return dataclasses.replace(self, result=result)

    def to_row(self) -> dict[str, Any]:
        """Flat values for the store."""
        r = self.result
        return {
            "trial_id": self.trial_id, "task": self.task, "config": self.config.to_json(),
            "seed": self.seed, "searcher": self.searcher, "actions": json.dumps(list(self.actions)),
            "log_prob": self.log_prob,
            "status": (r.status.value if r else Status.PENDING.value),
            "valid_accuracy": r.valid_accuracy if r else None,
            "test_accuracy": r.test_accuracy if r else None,
            "wall_time_s": r.wall_time_s if r else None,
            "setup_time_s": r.setup_time_s if r else None,
            "train_time_s": r.train_time_s if r else None,
            "eval_time_s": r.eval_time_s if r else None,
            "steps": r.steps if r else None,
            "error": r.error if r else "",
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Trial":
        result = None
        if row["status"] != Status.PENDING.value:
            result = TrialResult(
                status=Status(row["status"]), valid_accuracy=row["valid_accuracy"],
                test_accuracy=row["test_accuracy"], setup_time_s=row["setup_time_s"] or 0.0,
                train_time_s=row["train_time_s"] or 0.0, eval_time_s=row["eval_time_s"] or 0.0,
                steps=row["steps"] or 0, error=row["error"] or "")
        return cls(trial_id=row["trial_id"], task=row["task"], config=Config.from_json(row["config"]),
                   seed=row["seed"], searcher=row["searcher"],
                   actions=tuple(json.loads(row["actions"] or "[]")), log_prob=row["log_prob"] or 0.0,
                   result=result)
