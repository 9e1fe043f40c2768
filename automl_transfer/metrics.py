"""The paper's protocol metrics: accuracy-topN curves, trials to reach a target, speed-up.

Pure functions over a list of trials of ONE search on ONE task, in the order they were run.
A list may hold `Trial` records (sorted here by trial id; pending ones are skipped) or plain
`(valid_accuracy, test_accuracy)` pairs (kept in the given order).

Conventions (all deliberate, all tested):
- Diverged and failed trials count as trials with reward 0: they cost budget like any other, so
  they are part of the list with valid = test = 0.
- accuracy-topN after k trials is the mean over the N best of those k trials ranked by validation
  accuracy; their test accuracies are averaged the same way (the test split never ranks).
- Ties in validation accuracy are broken by the earlier trial (smaller trial id / position), so a
  later trial must be strictly better to enter the top N.
- With fewer than N trials so far, top-N is the mean over all of them.
- The standard error is std(ddof=1) / sqrt(m) over the m trials in the top N (0 when m == 1).
"""
from __future__ import annotations

import bisect
import math
from typing import NamedTuple, Sequence, Union

import numpy as np

from automl_transfer.trial import Status, Trial

DEFAULT_TOP_N = 10
TrialLike = Union[Trial, tuple[float, float]]


class TopNCurve(NamedTuple):
    """accuracy-topN after each trial: index k-1 holds the value after k trials."""

    valid: np.ndarray
    test: np.ndarray
    valid_sem: np.ndarray
    test_sem: np.ndarray

    @property
    def num_trials(self) -> int:
        return len(self.valid)


def accuracy_pairs(trials: Sequence[TrialLike]) -> list[tuple[float, float]]:
    """(valid, test) per finished trial, in run order; diverged/failed trials give (0, 0)."""
    if not trials or not isinstance(trials[0], Trial):
        return [(float(v), float(t)) for v, t in trials]
    pairs = []
    for trial in sorted(trials, key=lambda tr: tr.trial_id):
        result = trial.result
        if result is None:
            continue
        if result.status == Status.COMPLETED:
            pairs.append((float(result.valid_accuracy), float(result.test_accuracy)))
        else:
            pairs.append((0.0, 0.0))
    return pairs


def _sem(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def top_n_curve(trials: Sequence[TrialLike], n: int = DEFAULT_TOP_N) -> TopNCurve:
    """accuracy-topN (validation and test) and their standard errors after each trial."""
    if n < 1:
        raise ValueError(f"top-N needs N >= 1, got {n}")
    pairs = accuracy_pairs(trials)
    # Sorted best-first by key (-valid, position): earlier trials win ties.
    keys: list[tuple[float, int]] = []
    out = np.zeros((4, len(pairs)))
    for position, (valid, _test) in enumerate(pairs):
        key = (-valid, position)
        if len(keys) < n or key < keys[-1]:
            bisect.insort(keys, key)
            del keys[n:]
        best_valid = np.array([-k[0] for k in keys])
        best_test = np.array([pairs[k[1]][1] for k in keys])
        out[:, position] = (best_valid.mean(), best_test.mean(), _sem(best_valid), _sem(best_test))
    return TopNCurve(*out)


def accuracy_top_n(trials: Sequence[TrialLike], n: int = DEFAULT_TOP_N) -> tuple[float, float]:
    """(validation, test) accuracy-topN after all trials: the last point of `top_n_curve`."""
    curve = top_n_curve(trials, n)
    if not curve.num_trials:
        raise ValueError("accuracy-topN of no finished trials is undefined")
    return float(curve.valid[-1]), float(curve.test[-1])


def trials_to_target(curve: TopNCurve | Sequence[float], target: float, from_trial: int = 1
                     ) -> int | None:
    """Trials needed until validation accuracy-topN >= target; None if never reached.

    `curve` is a TopNCurve or its validation values alone. `from_trial` counts the target as
    reached only from that trial on: before trial N a "top-N" is a mean over fewer trials, so
    one lucky first trial would otherwise look like reaching a top-10 target at trial 1.
    """
    valid = np.asarray(curve.valid if isinstance(curve, TopNCurve) else curve, dtype=float)
    first = max(from_trial, 1)
    reached = np.flatnonzero(valid[first - 1:] >= target)
    return int(reached[0]) + first if reached.size else None


def _as_curve(trials_or_curve: TopNCurve | Sequence[TrialLike], n: int) -> TopNCurve:
    if isinstance(trials_or_curve, TopNCurve):
        return trials_or_curve
    return top_n_curve(trials_or_curve, n)


def speedup(rs: TopNCurve | Sequence[TrialLike], x: TopNCurve | Sequence[TrialLike],
            n: int = DEFAULT_TOP_N, from_trial: int = 1) -> float | None:
    """How many times fewer trials X needs than random search to reach RS's final top-N.

    `rs` and `x` are trial lists or their TopNCurves (`n` applies to trial lists only). The
    target is random search's validation accuracy-topN at its full budget (the paper's Table 1).
    RS's own cost is the first trial at which it got there (<= its budget). None means X did not
    reach the target within its budget: report that as such, never as a number. `from_trial`
    applies to both searches (see `trials_to_target`); None also when RS's own budget is shorter.
    """
    rs_curve = _as_curve(rs, n)
    if not rs_curve.num_trials:
        raise ValueError("speed-up needs at least one finished random-search trial")
    target = float(rs_curve.valid[-1])
    x_needed = trials_to_target(_as_curve(x, n), target, from_trial)
    rs_needed = trials_to_target(rs_curve, target, from_trial)
    if x_needed is None or rs_needed is None:
        return None
    return rs_needed / x_needed


def cosine_similarity(matrix: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows (task embeddings); zero rows give 0."""
    matrix = np.asarray(matrix, dtype=float)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit @ unit.T


def option_frequencies(values: Sequence[object], window: int) -> dict[object, np.ndarray]:
    """Empirical frequency of each sampled option over a trailing window of trials.

    `values` is the option chosen by each trial in run order; entry k of an option's array is
    its share among trials max(0, k - window + 1) .. k. Options never sampled are absent.
    """
    if window < 1:
        raise ValueError(f"the sliding window needs at least 1 trial, got {window}")
    options = list(dict.fromkeys(values))
    frequencies = {}
    for option in options:
        hits = np.cumsum([value == option for value in values], dtype=float)
        start = np.concatenate([np.zeros(min(window, len(values))), hits[:-window]])
        counts = np.arange(1, len(values) + 1).clip(max=window)
        frequencies[option] = (hits - start) / counts
    return frequencies
