"""The per-task EMA baseline and variance, checked against hand computations."""
import json
import math

import numpy as np
import pytest

from automl_transfer.searchers.normaliser import RewardNormaliser


def test_first_rewards_follow_hand_computation():
    norm = RewardNormaliser(alpha=0.01, prior_variance=0.01, min_std=0.01)
    # First reward: no baseline yet -> no signal; b = 0.5, s^2 = prior 0.01.
    assert norm.normalise("a", 0.5) == 0.0
    # (0.7 - 0.5) / sqrt(0.01) = 2; step 1/2: s^2 = .5*.01 + .5*.2^2 = .025, b = .6
    assert norm.normalise("a", 0.7) == pytest.approx(2.0)
    assert norm.stats["a"].variance == pytest.approx(0.025)
    assert norm.stats["a"].mean == pytest.approx(0.6)
    # (0.4 - 0.6) / sqrt(0.025); step 1/3: s^2 = 2/3*.025 + 1/3*.04 = .03, b = 1.6/3
    assert norm.normalise("a", 0.4) == pytest.approx(-0.2 / math.sqrt(0.025))
    assert norm.stats["a"].variance == pytest.approx(0.03)
    assert norm.stats["a"].mean == pytest.approx(1.6 / 3)


def test_after_warm_up_the_step_is_alpha():
    norm = RewardNormaliser(alpha=0.01)
    norm.set_state({"a": {"count": 200, "mean": 0.5, "variance": 0.04}})
    assert norm.normalise("a", 0.9) == pytest.approx(0.4 / 0.2)
    assert norm.stats["a"].variance == pytest.approx(0.99 * 0.04 + 0.01 * 0.4 ** 2)
    assert norm.stats["a"].mean == pytest.approx(0.99 * 0.5 + 0.01 * 0.9)


def test_warm_up_baseline_is_the_running_mean():
    rewards = np.random.default_rng(0).uniform(0.3, 0.9, size=60)
    norm = RewardNormaliser(alpha=0.01)
    for r in rewards:
        norm.normalise("a", float(r))
    assert norm.stats["a"].mean == pytest.approx(rewards.mean())


def test_tasks_are_independent_and_std_is_floored():
    norm = RewardNormaliser(alpha=0.01, min_std=0.01)
    norm.set_state({"a": {"count": 5, "mean": 0.5, "variance": 0.0}})
    norm.normalise("b", 0.9)
    assert norm.advantage("a", 0.6) == pytest.approx(10.0)  # 0.1 / floor 0.01
    assert norm.stats["a"].mean == 0.5 and norm.stats["b"].mean == 0.9


def test_state_round_trips_through_json():
    norm = RewardNormaliser()
    for r in (0.2, 0.4, 0.8):
        norm.normalise("a", r)
    copy = RewardNormaliser()
    copy.set_state(json.loads(json.dumps(norm.get_state())))
    assert copy.advantage("a", 0.6) == norm.advantage("a", 0.6)
    assert copy.stats["a"].count == 3
