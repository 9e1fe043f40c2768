"""Evidence that the controller learns, shares across tasks, transfers, saves and is deterministic.

No child is trained: the reward is the synthetic one (fraction of decisions matching a hidden
target + noise) over the real search space with 8 module names.
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from automl_transfer.errors import UserError
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers import controller_io
from automl_transfer.searchers.controller_searcher import (PRESETS, ControllerSearcher,
                                                           PerTaskControllerSearcher)
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.searchers.synthetic_reward import (finish, near_target, random_target,
                                                         run_search, trials_to_target)

MODULES = [f"m{i}" for i in range(8)]
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace(MODULES)


def _median_trials(results, budget):
    return float(np.median([budget + 1 if r is None else r for r in results]))


def test_initial_policy_is_near_uniform(space):
    controller = ControllerSearcher(space, 0, ["t"])
    probs = controller.probabilities("t", random_target(space, 3))
    uniform = np.array([[1 / n] * n + [0] * (max(space.sizes) - n) for n in space.sizes])
    assert np.abs(probs - uniform).max() < 0.02


def test_controller_reaches_target_sooner_than_random_search(space):
    budget, threshold = 200, 8 / 12
    found = {"controller": [], "random": []}
    for seed in SEEDS:
        targets = {"t": random_target(space, seed)}
        for kind, searcher in (("controller", ControllerSearcher(space, seed, ["t"])),
                               ("random", RandomSearcher(space, seed))):
            trials = run_search(searcher, targets, budget)
            found[kind].append(trials_to_target(trials, targets, threshold))
    assert all(r is not None for r in found["controller"]), found
    assert _median_trials(found["controller"], budget) < _median_trials(found["random"], budget)


def test_multitask_controller_learns_two_optima_with_trials_in_flight(space):
    targets = {"a": random_target(space, 10), "b": random_target(space, 11)}
    assert sum(x != y for x, y in zip(targets["a"], targets["b"])) >= 8
    controller = ControllerSearcher(space, 0, ["a", "b"])
    start = controller.network.task_embeddings.numpy()
    run_search(controller, targets, 400, in_flight=3)
    # Each task's target is more likely under its own task's policy than under the other's.
    for own, other in (("a", "b"), ("b", "a")):
        own_policy = controller.log_prob(own, targets[own])[0]
        other_policy = controller.log_prob(other, targets[own])[0]
        assert own_policy > other_policy + 2, (own, own_policy, other_policy)
    end = controller.network.task_embeddings.numpy()
    assert np.linalg.norm(end[0] - end[1]) > 2 * np.linalg.norm(start[0] - start[1])


def test_transferred_controller_reaches_a_similar_target_sooner(space, tmp_path):
    budget, threshold = 100, 10 / 12
    source = random_target(space, 20)
    pretrained = ControllerSearcher(space, 0, ["source"])
    run_search(pretrained, {"source": source}, 200)
    pretrained.save(str(tmp_path))
    found = {"transfer": [], "scratch": []}
    for seed in SEEDS:  # new targets, each 2 decisions away from the source's
        targets = {"new": near_target(source, space, 2, seed)}
        transferred = ControllerSearcher.from_saved(tmp_path, ["new"], seed + 100)
        scratch = ControllerSearcher(space, seed + 100, ["new"])
        for kind, searcher in (("transfer", transferred), ("scratch", scratch)):
            trials = run_search(searcher, targets, budget, first_trial_id=1000)
            found[kind].append(trials_to_target(trials, targets, threshold))
    assert _median_trials(found["transfer"], budget) < _median_trials(found["scratch"], budget)


@pytest.fixture(scope="module")
def trained(space, tmp_path_factory):
    """A two-task controller after a few updates, saved once."""
    controller = ControllerSearcher(space, 5, ["a", "b"])
    run_search(controller, {"a": random_target(space, 1), "b": random_target(space, 2)}, 30)
    directory = tmp_path_factory.mktemp("controller")
    controller.save(str(directory))
    return controller, directory


def test_saved_model_round_trip_gives_same_probabilities(space, trained):
    controller, directory = trained
    actions = random_target(space, 7)
    loaded = controller_io.load_controller(directory, space)
    assert loaded.tasks == ["a", "b"]
    served = tf.saved_model.load(str(directory))
    for index, task in enumerate(["a", "b"]):
        expected = controller.probabilities(task, actions)
        again = loaded.network.padded_probabilities(tf.constant(index), tf.constant(actions),
                                                    tf.constant(space.module_mask(MODULES)))
        assert np.allclose(again.numpy(), expected, atol=1e-6)
        exported = served.probabilities(tf.constant(index), tf.constant(actions),
                                        tf.constant(space.module_mask(MODULES)))
        assert np.allclose(exported.numpy(), expected, atol=1e-6)
    assert loaded.normaliser == controller.normaliser.get_state()
    assert loaded.settings["learning_rate"] == controller.learning_rate


def test_restore_resumes_weights_optimizer_and_state(space, tmp_path):
    target = random_target(space, 1)
    running = ControllerSearcher(space, 5, ["a"])
    run_search(running, {"a": target}, 10)
    running.save(str(tmp_path))
    resumed = ControllerSearcher(space, 5, ["a"])
    resumed.restore(str(tmp_path))
    assert resumed.get_state() == running.get_state()
    trial = finish(running.suggest(999, "a", MODULES), target, 0.0)
    assert resumed.suggest(999, "a", MODULES) == dataclasses.replace(trial, result=None)
    # Adam's step depends on its moments and step count: equal weights after the same update
    # mean those were restored too.
    for searcher in (running, resumed):
        searcher.update([trial])
    for (name, w1), (_, w2) in zip(running.network.named_weights(),
                                   resumed.network.named_weights()):
        assert np.allclose(w1.numpy(), w2.numpy(), atol=1e-7), name


def test_transfer_adds_one_embedding_per_new_task_and_keeps_shared_weights(space, trained):
    controller, directory = trained
    transferred = ControllerSearcher.from_saved(directory, ["c", "d"], seed=9)
    assert transferred.name == "transfer" and transferred.tasks == ["a", "b", "c", "d"]
    saved = controller_io.load_controller(directory, space).network.get_named_values()
    now = transferred.network.get_named_values()
    assert now["task_embeddings"].shape == (4, 25)
    assert np.array_equal(now["task_embeddings"][:2], saved["task_embeddings"])
    assert not np.allclose(now["task_embeddings"][2], now["task_embeddings"][3])
    for name, value in saved.items():
        if name != "task_embeddings":
            assert np.array_equal(now[name], value), name
    assert "c" not in transferred.normaliser.stats


def test_loading_refuses_another_search_space_and_missing_dirs(space, trained, tmp_path):
    _, directory = trained
    with pytest.raises(UserError, match=r"another search space: decision 'module'"):
        ControllerSearcher.from_saved(directory, ["c"], 0, space=SearchSpace(MODULES[:7]))
    with pytest.raises(UserError, match="no saved controller"):
        ControllerSearcher.from_saved(tmp_path / "nothing", ["c"], 0, space=space)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / controller_io.METADATA_FILE).write_text("{not json")
    with pytest.raises(UserError, match="not a readable controller"):
        controller_io.load_controller(tmp_path / "broken", space)


def test_same_seed_same_suggestions(space):
    first, second = ControllerSearcher(space, 3, ["t"]), ControllerSearcher(space, 3, ["t"])
    targets = {"t": random_target(space, 0)}
    def drawn(trials):
        return [(t.actions, t.log_prob, t.seed, t.config) for t in trials]

    assert drawn(run_search(first, targets, 20)) == drawn(run_search(second, targets, 20))
    after = [first.suggest(i, "t", MODULES) for i in range(100, 105)]
    assert after == [second.suggest(i, "t", MODULES) for i in range(100, 105)]
    other = ControllerSearcher(space, 4, ["t"])
    assert [t.actions for t in after] != [other.suggest(i, "t", MODULES).actions
                                          for i in range(100, 105)]


def test_module_decision_respects_the_allowed_modules(space):
    controller = ControllerSearcher(space, 0, ["t"])
    target = random_target(space, 0, ["m5"])  # the best module is forbidden for this task
    trials = run_search(controller, {"t": target}, 100, allowed_modules={"t": ["m0", "m1"]})
    assert {t.config.module for t in trials} <= {"m0", "m1"}
    assert len({t.config.module for t in trials}) == 2
    assert controller.probabilities("t", target)[0][2:].max() == 0.0


def test_single_task_searcher_keeps_tasks_apart(space, tmp_path):
    searcher = PerTaskControllerSearcher(space, 0, ["a", "b"])
    before = searcher.controllers["b"].probabilities("b", random_target(space, 0))
    run_search(searcher, {"a": random_target(space, 1)}, 30)
    assert np.array_equal(searcher.controllers["b"].probabilities("b", random_target(space, 0)),
                          before)
    trial = searcher.suggest(50, "a", MODULES)
    assert trial.searcher == "single"
    searcher.save(str(tmp_path))
    resumed = PerTaskControllerSearcher(space, 0, ["a", "b"])
    resumed.restore(str(tmp_path))
    assert resumed.suggest(50, "a", MODULES) == trial
    assert resumed.get_state() == searcher.get_state()


def test_update_uses_validation_reward_and_presets_resolve(space):
    controller = ControllerSearcher(space, 0, ["t"], preset="paper")
    assert controller.learning_rate == PRESETS["paper"]["learning_rate"] == 1e-4
    trial = finish(controller.suggest(0, "t", MODULES), random_target(space, 0), 0.0)
    assert np.isnan(trial.result.test_accuracy)
    controller.update([trial, dataclasses.replace(trial, trial_id=1)])
    assert controller.normaliser.stats["t"].count == 2
    assert np.isfinite(controller.network.task_embeddings.numpy()).all()
    with pytest.raises(UserError, match="unknown controller preset"):
        ControllerSearcher(space, 0, ["t"], preset="fast")


def test_argmax_first_suggestion_and_mean_embedding_for_a_new_task(space, trained):
    _, directory = trained
    searchers = [ControllerSearcher.from_saved(directory, ["new"], seed, first_suggestion="argmax",
                                               new_task_init="mean") for seed in (7, 8)]
    rows = searchers[0].network.task_embeddings.numpy()
    np.testing.assert_allclose(rows[2], rows[:2].mean(axis=0), rtol=1e-6)
    first = [s.suggest(0, "new", MODULES) for s in searchers]
    assert first[0].config == first[1].config  # the policy's argmax: the seed plays no part
    probabilities = searchers[0].probabilities("new", first[0].actions)
    assert list(first[0].actions) == [int(np.argmax(probabilities[i, :size]))
                                      for i, size in enumerate(space.sizes)]
    assert searchers[0].settings()["first_suggestion"] == "argmax"
    assert "first_suggestion" not in ControllerSearcher(space, 0, ["t"]).settings()
    with pytest.raises(UserError):
        ControllerSearcher(space, 0, ["t"], first_suggestion="best")
