"""accuracy-topN, trials-to-target and speed-up on hand-made trial lists."""
import math

import numpy as np
import pytest

from automl_transfer import metrics
from automl_transfer.search_space import Config
from automl_transfer.trial import Status, Trial, TrialResult

CONFIG = Config(module="en-glove-50", fine_tune=False, num_layers=1, layer_size=8,
                activation="relu", normalization="none", dropout=0.0, deep_learning_rate=0.1,
                deep_l2=0.0, wide_learning_rate=0.1, wide_l1="disable", train_samples=1000)


def _trial(trial_id, valid, test, status=Status.COMPLETED):
    result = None if status is None else TrialResult(status, valid, test)
    return Trial(trial_id=trial_id, task="t", config=CONFIG, seed=0, searcher="random",
                 result=result)


def test_top_n_is_mean_of_best_by_validation_with_its_sem():
    pairs = [(0.5, 0.50), (0.9, 0.80), (0.7, 0.60), (0.8, 0.90)]
    curve = metrics.top_n_curve(pairs, n=2)
    np.testing.assert_allclose(curve.valid, [0.5, 0.7, 0.8, 0.85])
    np.testing.assert_allclose(curve.test, [0.5, 0.65, 0.7, 0.85])
    # sem of (0.9, 0.8) = std(ddof=1)/sqrt(2) = 0.05
    assert curve.valid_sem[-1] == pytest.approx(0.05)
    assert curve.test_sem[-1] == pytest.approx(0.05)
    assert curve.valid_sem[0] == 0.0
    assert metrics.accuracy_top_n(pairs, n=2) == pytest.approx((0.85, 0.85))


def test_ties_keep_the_earlier_trial():
    # Same validation accuracy: the earlier trial stays in the top 1, whatever its test score.
    assert metrics.accuracy_top_n([(0.8, 0.1), (0.8, 0.9)], n=1) == (0.8, 0.1)
    # Trial ids decide for Trial records, not list order.
    trials = [_trial(5, 0.8, 0.9), _trial(2, 0.8, 0.1)]
    assert metrics.accuracy_top_n(trials, n=1) == (0.8, 0.1)


def test_fewer_than_n_trials_average_all_of_them():
    valid, test = metrics.accuracy_top_n([(0.2, 0.3), (0.4, 0.5), (0.9, 0.1)], n=10)
    assert valid == pytest.approx(0.5)
    assert test == pytest.approx(0.3)


def test_failed_and_diverged_count_with_reward_zero_and_pending_are_skipped():
    trials = [_trial(1, 0.6, 0.6), _trial(2, float("nan"), float("nan"), Status.DIVERGED),
              _trial(3, 0.9, 0.9, Status.FAILED), _trial(4, 0.0, 0.0, None)]
    curve = metrics.top_n_curve(trials, n=2)
    assert len(curve.valid) == 3  # the pending trial is not a finished trial
    np.testing.assert_allclose(curve.valid, [0.6, 0.3, 0.3])
    assert not np.isnan(curve.test).any()


def test_trials_to_target_first_reach_or_none():
    curve = metrics.top_n_curve([(0.1, 0), (0.5, 0), (0.9, 0)], n=1)
    assert metrics.trials_to_target(curve, 0.5) == 2
    assert metrics.trials_to_target(curve.valid, 0.9) == 3
    assert metrics.trials_to_target(curve, 0.95) is None


def test_speedup_and_not_reached():
    rs = [(0.5, 0), (0.6, 0), (0.7, 0), (0.7, 0)]         # target 0.7, reached at trial 3
    assert metrics.speedup(rs, [(0.75, 0)], n=1) == pytest.approx(3.0)
    assert metrics.speedup(rs, [(0.2, 0), (0.7, 0)], n=1) == pytest.approx(1.5)
    assert metrics.speedup(rs, [(0.6, 0)] * 10, n=1) is None
    # Curves already computed give the same answer as the trial lists they came from.
    curves = [metrics.top_n_curve(t, n=1) for t in (rs, [(0.2, 0), (0.7, 0)])]
    assert metrics.speedup(*curves) == pytest.approx(1.5)


def test_strict_figures_count_only_from_trial_n():
    curve = [0.9, 0.5, 0.6, 0.7, 0.9]                      # a lucky first trial
    assert metrics.trials_to_target(curve, 0.9) == 1
    assert metrics.trials_to_target(curve, 0.9, from_trial=3) == 5
    assert metrics.trials_to_target(curve, 0.95, from_trial=3) is None
    assert metrics.trials_to_target(curve, 0.5, from_trial=9) is None   # shorter than N
    rs = [(0.5, 0), (0.6, 0), (0.7, 0), (0.7, 0), (0.7, 0)]  # reaches 0.7 at trial 3
    lucky = [(0.8, 0), (0.1, 0), (0.1, 0), (0.1, 0), (0.1, 0)]
    assert metrics.speedup(rs, lucky, n=1) == pytest.approx(3.0)
    assert metrics.speedup(rs, lucky, n=1, from_trial=4) == pytest.approx(1.0)
    assert metrics.speedup(rs, lucky, n=2, from_trial=2) is None       # its top-2 mean is 0.45


def test_bad_n_and_empty_lists_are_errors():
    with pytest.raises(ValueError):
        metrics.top_n_curve([(0.1, 0.1)], n=0)
    with pytest.raises(ValueError):
        metrics.accuracy_top_n([], n=10)


def test_cosine_similarity_and_option_frequencies():
    sim = metrics.cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    assert sim[0, 1] == pytest.approx(1 / math.sqrt(2))
    assert sim[0, 0] == pytest.approx(1.0) and sim[2, 2] == 0.0
    freqs = metrics.option_frequencies(["a", "b", "a", "a"], window=2)
    np.testing.assert_allclose(freqs["a"], [1.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(freqs["b"], [0.0, 0.5, 0.5, 0.0])
