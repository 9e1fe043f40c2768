"""Per-task reward normalisation for REINFORCE (the paper: EMA baseline and variance, alpha 0.01).

Tasks differ in how hard they are (one task's 0.6 is another's 0.95), so each task keeps its own
baseline b and variance s^2, and the controller learns from A = (R - b) / s.

Before the EMA has data (our choice; the paper does not say):
- a task's first reward gives no learning signal (A = 0): there is nothing to compare it with,
  and using b = 0 would reward whatever was sampled first;
- it sets b = R and s^2 = `prior_variance` (accuracies spread about 0.1 around their mean);
- for the next trials the step size is max(alpha, 1/n) with n the number of rewards seen, i.e.
  a plain running mean (and variance around it) for the first 1/alpha trials, turning into the
  EMA with alpha = 0.01 after that. A fixed alpha from the start would leave b near the first
  (random) reward for ~100 trials; the running mean is the best estimate until then.
- s is floored at `min_std` so that a task whose rewards stopped varying cannot blow up A.
The advantage uses the statistics before the reward is added; then they are updated.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

ALPHA = 0.01
PRIOR_VARIANCE = 0.01
MIN_STD = 0.01


@dataclasses.dataclass
class TaskStats:
    count: int = 0
    mean: float = 0.0
    variance: float = PRIOR_VARIANCE


class RewardNormaliser:
    """Per-task baseline and variance; JSON state via `get_state` / `set_state`."""

    def __init__(self, alpha: float = ALPHA, prior_variance: float = PRIOR_VARIANCE,
                 min_std: float = MIN_STD):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.prior_variance = prior_variance
        self.min_std = min_std
        self.stats: dict[str, TaskStats] = {}

    def advantage(self, task: str, reward: float) -> float:
        """(R - b) / s for `task` from the statistics so far; 0 for a task's first reward."""
        stats = self.stats.get(task)
        if stats is None or stats.count == 0:
            return 0.0
        return (reward - stats.mean) / max(math.sqrt(stats.variance), self.min_std)

    def observe(self, task: str, reward: float) -> None:
        """Add `reward` to `task`'s statistics."""
        stats = self.stats.setdefault(task, TaskStats(variance=self.prior_variance))
        if stats.count == 0:
            stats.mean, stats.variance = reward, self.prior_variance
        else:
            step = max(self.alpha, 1.0 / (stats.count + 1))
            deviation = reward - stats.mean
            stats.variance = (1.0 - step) * stats.variance + step * deviation ** 2
            stats.mean = (1.0 - step) * stats.mean + step * reward
        stats.count += 1

    def normalise(self, task: str, reward: float) -> float:
        """The advantage of `reward`, then record it: what one REINFORCE update needs."""
        value = self.advantage(task, reward)
        self.observe(task, reward)
        return value

    def get_state(self) -> dict[str, Any]:
        return {task: dataclasses.asdict(s) for task, s in self.stats.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.stats = {task: TaskStats(int(s["count"]), float(s["mean"]), float(s["variance"]))
                      for task, s in state.items()}
