"""Shipping controllers: packaging a run's controller with its card, choosing the shipped one by
search space, and the transfer chain (task 1 -> task 2 -> ...) keeping every learned embedding.

The runs are real experiment loops (real SQLite store, real controller SavedModels, resumable
checkpoints); only the child is the synthetic reward, so each run takes seconds.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from automl_transfer import pretrained
from automl_transfer.errors import UserError
from automl_transfer.experiment import run_experiment, task_schedule
from automl_transfer.modules import registry
from automl_transfer.pretrained.package import main as package_main
from automl_transfer.search import transfer_space
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers import controller_io
from automl_transfer.searchers.controller_searcher import ControllerSearcher
from automl_transfer.searchers.synthetic_reward import finish, random_target

SPACE = SearchSpace(["m0", "m1", "m2"])


def _search(experiment_dir: Path, searcher: ControllerSearcher, tasks: list[str], trials: int) -> None:
    """A real experiment loop over `tasks` with synthetic rewards (a hidden target per task)."""
    targets = {task: random_target(SPACE, i) for i, task in enumerate(searcher.tasks)}
    run_experiment(experiment_dir, searcher, task_schedule(tasks, trials, 0, interleave=True),
                   {task: SPACE.modules for task in tasks},
                   lambda trial: finish(trial, targets[trial.task], 0.02).result,
                   settings={"mode": searcher.name, "tasks": tasks, "seed": searcher.seed,
                             "profile": "offline", "trials_per_task": trials,
                             "searcher": searcher.settings()},
                   checkpoint_every=1000)  # one controller save, at the end


def _embeddings(directory: Path) -> tuple[list[str], np.ndarray]:
    loaded = controller_io.load_controller(directory, SPACE)
    return loaded.tasks, loaded.network.task_embeddings.numpy()


@pytest.fixture(scope="module")
def multitask(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("multitask")
    _search(directory, ControllerSearcher(SPACE, 0, ["a", "b"]), ["a", "b"], trials=6)
    return directory


def test_package_writes_controller_and_card(multitask, tmp_path, capsys):
    assert package_main([f"--experiment_dir={multitask}", "--name=tiny", f"--root={tmp_path}"]) == 0
    folder = tmp_path / "tiny"
    card = json.loads((folder / "card.json").read_text())
    assert card["tasks"] == ["a", "b"] and card["trials_seen"] == {"a": 6, "b": 6}
    assert card["trials_seen_total"] == 12 and card["last_trial_id"] == 11
    assert card["space_fingerprint"] == SPACE.fingerprint() and card["modules"] == list(SPACE.modules)
    assert card["module_profile"] == "offline" and "--trials=6" in card["rebuild_command"]
    assert not (folder / controller_io.OPTIMIZER_FILE).exists()
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 5 * 1024 * 1024
    assert "packaged" in capsys.readouterr().out
    # The default for this space is that folder; another space has none, said in one line.
    assert pretrained.default_controller(SPACE.fingerprint(), root=tmp_path) == folder
    with pytest.raises(UserError, match="no shipped controller fits this search space"):
        pretrained.default_controller(SearchSpace(["m0"]).fingerprint(), root=tmp_path)
    assert package_main([f"--experiment_dir={tmp_path}", f"--root={tmp_path}"]) == 2


def test_transfer_chain_keeps_every_task_embedding(multitask, tmp_path):
    """a,b (multitask) -> c (transfer of the packaged controller) -> d (transfer of that run)."""
    package_main([f"--experiment_dir={multitask}", "--name=tiny", f"--root={tmp_path}"])
    first = tmp_path / "c"
    _search(first, ControllerSearcher.from_saved(tmp_path / "tiny", ["c"], seed=1), ["c"], trials=5)
    second = tmp_path / "d"
    _search(second, ControllerSearcher.from_saved(first / "controller", ["d"], seed=2), ["d"], trials=5)

    pretrained_tasks, pretrained_rows = _embeddings(multitask / "controller")
    first_tasks, first_rows = _embeddings(first / "controller")
    tasks, rows = _embeddings(second / "controller")
    assert pretrained_tasks == ["a", "b"] and first_tasks == ["a", "b", "c"]
    assert tasks == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(rows[:2], pretrained_rows)  # learned in pre-training
    np.testing.assert_array_equal(rows[2], first_rows[2])  # learned in the first transfer
    assert not np.allclose(first_rows[2], rows[3])  # d has a row of its own


def test_a_continued_controller_counts_both_stages_once(multitask, tmp_path):
    """Pre-training continued by a transfer on the same tasks (how the shipped controller grows),
    packaged into the folder it started from, twice: the card adds the first stage's trials once."""
    package_main([f"--experiment_dir={multitask}", "--name=tiny", f"--root={tmp_path}"])
    continued = tmp_path / "continued"
    _search(continued, ControllerSearcher.from_saved(tmp_path / "tiny", ["a", "b"], seed=1),
            ["a", "b"], trials=3)
    for _ in range(2):
        assert package_main([f"--experiment_dir={continued}", "--name=tiny",
                             f"--root={tmp_path}"]) == 0
        card = json.loads((tmp_path / "tiny" / "card.json").read_text())
        assert card["trials_seen"] == {"a": 9, "b": 9} and card["trials_seen_total"] == 18
        first, second = card["stages"]
        assert first["trials_seen"] == {"a": 6, "b": 6} and second["trials_seen_total"] == 6
        assert first["experiment_dir"] == str(multitask) and second["trials_scheduled"] == 6
        assert card["rebuild_command"] == f"{first['rebuild_command']} && {second['rebuild_command']}"
        assert "--mode=transfer --controller_dir=automl_transfer/pretrained/tiny" in card["rebuild_command"]
    tasks, rows = _embeddings(tmp_path / "tiny")
    assert tasks == ["a", "b"] and not np.allclose(rows, _embeddings(multitask / "controller")[1])


def test_a_controller_of_more_modalities_keeps_its_space_on_a_narrower_task(multitask):
    """m0..m2 stand for a text+image controller's modules; a run of one modality has fewer."""
    saved = multitask / "controller"
    assert transfer_space(SearchSpace(["m1", "m2"]), saved).fingerprint() == SPACE.fingerprint()
    ControllerSearcher.from_saved(saved, ["e"], seed=3, space=transfer_space(SearchSpace(["m2"]), saved))
    unknown = SearchSpace(["m1", "x"])       # a module the controller never saw: its loader says so
    assert transfer_space(unknown, saved) is unknown
    with pytest.raises(UserError):
        ControllerSearcher.from_saved(saved, ["e"], seed=3, space=unknown)
    other = SearchSpace(["m1"], "extended")  # another space keeps its own, and is refused too
    assert transfer_space(other, saved) is other


def test_the_shipped_controller_fits_the_offline_space_and_loads():
    """What `--mode=transfer` without --controller_dir loads for the default module profile."""
    specs = registry.load_registry("offline")  # a text run's module decision: the text modules
    space = SearchSpace([name for name, spec in specs.items() if spec.modality == "text"])
    folder = pretrained.default_controller(space.fingerprint())
    card = json.loads((folder / "card.json").read_text())
    assert controller_io.load_controller(folder, space).tasks == card["tasks"]
    assert len(card["tasks"]) == 17 and card["module_profile"] == "offline"
    assert 0 < sum(card["trials_seen"].values()) == card["trials_seen_total"]
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 5 * 1024 * 1024
