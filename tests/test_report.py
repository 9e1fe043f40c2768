"""The report from small real trial stores (sqlite3) and a real saved (untrained) controller.

The stores hold real Config/Trial rows with made-up accuracies: this tests reporting, not
training.
"""
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from automl_transfer.errors import UserError
from automl_transfer.report import write_report
from automl_transfer.report.loading import load_runs, load_task_embeddings
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.controller_searcher import ControllerSearcher
from automl_transfer.trial import Status, Trial, TrialResult

SPACE = SearchSpace(["en-glove-50", "en-skipgram-50", "en-word2vec-news-300"])
TASKS = ("airline", "sst")
BUDGETS = {"random": 40, "single": 30, "transfer": 25}
# Mean validation accuracy per method: transfer > random > single, so single never reaches RS.
LEVELS = {"random": 0.70, "single": 0.55, "transfer": 0.85}


def make_trials(method, task, seed):
    rng = np.random.default_rng([len(method), len(task), seed])
    trials = []
    for trial_id in range(BUDGETS[method]):
        actions = SPACE.sample_actions(rng)
        if trial_id % 9 == 4:
            result = TrialResult(Status.FAILED, 0.0, 0.0, error="boom")
        else:
            valid = float(np.clip(LEVELS[method] + rng.normal(0, 0.08), 0, 1))
            result = TrialResult(Status.COMPLETED, valid, valid - 0.02, train_time_s=2.0)
        trials.append(Trial(trial_id=trial_id, task=task, config=SPACE.to_config(actions),
                            seed=trial_id, searcher=method, actions=tuple(actions), result=result))
    return trials


def write_store(run_dir: Path, trials, settings):
    run_dir.mkdir(parents=True)
    conn = sqlite3.connect(run_dir / "trials.sqlite")
    columns = list(trials[0].to_row()) + ["finished_at"]
    conn.execute(f"CREATE TABLE trials ({', '.join(columns)})")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(settings),))
    for trial in trials:
        row = trial.to_row()
        conn.execute(f"INSERT INTO trials VALUES ({', '.join('?' * len(columns))})",
                     [*row.values(), 0.0])
    conn.commit()
    conn.close()


def save_controller(directory: Path, tasks):
    """A real (untrained) controller saved the way the experiment loop checkpoints it."""
    searcher = ControllerSearcher(SPACE, seed=0, tasks=list(tasks))
    searcher.save(str(directory))
    return searcher.network.task_embeddings.numpy()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    runs = {}
    for method in ("random", "single", "transfer"):
        for task in TASKS:
            for seed in (0, 1):
                trials = make_trials(method, task, seed)
                runs[method, task, seed] = trials
                write_store(root / method / task / f"seed{seed}", trials,
                            {"mode": method, "tasks": [task], "seed": seed})
    embeddings = save_controller(root / "transfer" / TASKS[0] / "seed0" / "controller", TASKS)
    return root, runs, embeddings


def top10(trials, budget):
    """Independent accuracy-top10 at a budget: sort by (-valid, id), average the first 10."""
    rows = [(t.result.valid_accuracy if t.result.status == Status.COMPLETED else 0.0,
             t.result.test_accuracy if t.result.status == Status.COMPLETED else 0.0)
            for t in sorted(trials, key=lambda t: t.trial_id)[:budget]]
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][0], i))[:10]
    return np.mean([rows[i][0] for i in order]), np.mean([rows[i][1] for i in order])


def test_full_report_has_table_figures_and_configs(experiment):
    root, runs, _ = experiment
    path = write_report(root)
    text = path.read_text()
    assert path == root / "report.md"

    # One Table 1 cell, computed independently: RS test top-10 on 'airline' at the common budget.
    budget = min(BUDGETS.values())
    values = [top10(runs["random", "airline", s], budget)[1] for s in (0, 1)]
    sem = np.std(values, ddof=1) / math.sqrt(2)
    cell = f"{100 * np.mean(values):.1f} ± {100 * 2 * sem:.1f} (2 seeds)"
    airline_row = next(line for line in text.splitlines() if line.startswith("| airline |"))
    assert cell in airline_row
    assert f"| {BUDGETS['random']} |" in airline_row and f"| {budget} |" in airline_row
    target = np.mean([top10(runs["random", "airline", s], 40)[0] for s in (0, 1)])
    assert f"{100 * target:.1f}" in airline_row
    assert "not reached within 30 (0/2 seeds reached)" in airline_row  # NAML is worse than RS
    assert "| not reached, not reached |" in airline_row
    # T-NAML's speed-up per seed pair, computed independently from the RS and T-NAML stores.
    # The strict figure counts a target as reached only from trial 10 on, for both searches.
    expected = {1: [], 10: []}
    for seed in (0, 1):
        rs = [top10(runs["random", "airline", seed], k)[0] for k in range(1, 41)]
        tnaml = [top10(runs["transfer", "airline", seed], k)[0] for k in range(1, 26)]
        for first in expected:
            rs_needed = next(k for k, v in enumerate(rs, 1) if k >= first and v >= rs[-1])
            tnaml_needed = next(k for k, v in enumerate(tnaml, 1) if k >= first and v >= rs[-1])
            expected[first].append(f"×{rs_needed / tnaml_needed:.1f}")
    assert expected[1] != expected[10]
    cells = [cell.strip() for cell in airline_row.split("|")]
    assert ", ".join(expected[1]) in cells and ", ".join(expected[10]) in cells
    assert cells.index(", ".join(expected[1])) < cells.index(", ".join(expected[10]))
    assert "T-NAML speed-up from trial 10" in text
    assert "is at most RS's trials to target / 10" in text  # the cap the strict figure implies

    figures = sorted(p.name for p in root.glob("*.png"))
    assert figures == sorted([
        "learning_curves_test.png", "learning_curves_valid.png",
        "option_probability_module_random.png", "option_probability_module_single.png",
        "option_probability_module_transfer.png", "task_similarity_transfer_airline_seed0.png"])
    for name in figures:
        assert f"]({name})" in text
        pixels = mpimg.imread(root / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.std() > 0

    best = max((t for trials in runs.values() for t in trials
                if t.task == "sst" and t.result.status == Status.COMPLETED),
               key=lambda t: t.result.valid_accuracy)
    assert best.config.describe() in text
    assert "no transfer runs found" not in text


def test_a_run_short_of_its_budget_is_left_out_of_table_1_and_named(experiment, tmp_path):
    """An RS seed still running (5 of 40 trials) would lower the target; Table 1 leaves it out
    and says so, whether or not the complete runs record their budget."""
    root, runs, _ = experiment
    complete = write_report(root).read_text()
    partial = tmp_path / "exp"
    for method in ("random", "transfer"):
        for seed in (0, 1):
            write_store(partial / method / "airline" / f"seed{seed}", runs[method, "airline", seed],
                        {"mode": method, "tasks": ["airline"], "seed": seed,
                         "trials_per_task": BUDGETS[method]})
    write_store(partial / "random" / "airline" / "seed2", runs["random", "airline", 0][:5],
                {"mode": "random", "tasks": ["airline"], "seed": 2, "trials_per_task": 40})
    text = write_report(partial).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| airline |"))
    target = next(line for line in complete.splitlines() if line.startswith("| airline |"))
    assert row.split("|")[3] == target.split("|")[3]  # RS valid top-10 of seeds 0 and 1 only
    assert "Table 1 leaves out the runs short of their budget" in text
    assert "random/airline/seed2 (airline: 5/40)" in text


def test_task_embeddings_are_read_from_the_saved_controller(experiment, tmp_path):
    root, _, embeddings = experiment
    names, matrix = load_task_embeddings(root / "transfer" / "airline" / "seed0" / "controller")
    assert names == list(TASKS)
    np.testing.assert_allclose(matrix, embeddings, rtol=1e-6)
    save_controller(tmp_path / "no_json", TASKS)
    (tmp_path / "no_json" / "controller.json").unlink()
    assert load_task_embeddings(tmp_path / "no_json") is None


def test_runs_are_discovered_with_method_and_seed(experiment):
    root, _, _ = experiment
    runs, problems = load_runs(root)
    assert problems == []
    assert sorted((r.method, r.tasks[0], r.seed) for r in runs) == sorted(
        (m, t, s) for m in BUDGETS for t in TASKS for s in (0, 1))


def test_single_random_search_gets_a_smaller_report_saying_what_is_missing(experiment, tmp_path):
    _, runs, _ = experiment
    write_store(tmp_path / "rs", runs["random", "airline", 0], {"mode": "random", "seed": 0})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "trials.sqlite").write_text("not a database")
    text = write_report(tmp_path).read_text()
    assert "Table 1 needs random search and tpe, single or transfer runs" in text
    assert "no controller directories found" in text
    assert "broken/trials.sqlite" in text
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "learning_curves_test.png", "learning_curves_valid.png",
        "option_probability_module_random.png"]
    assert "| airline |" in text  # the best configuration table still lists the task


def test_selectable_decision_and_unknown_decision(experiment, tmp_path):
    _, runs, _ = experiment
    write_store(tmp_path / "rs", runs["random", "sst", 1], {"mode": "random", "seed": 1})
    write_report(tmp_path, decision="activation", window=5)
    assert (tmp_path / "option_probability_activation_random.png").stat().st_size > 0
    with pytest.raises(UserError, match="unknown decision 'colour'"):
        write_report(tmp_path, decision="colour")


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        write_report(tmp_path / "nope")


def test_a_seed_still_running_does_not_cut_the_learning_curves_of_the_others():
    """A protocol directory with one seed finished (4 trials) and one still running (2): the
    curve keeps all 4 trials, averaging the seeds that reached each one."""
    from automl_transfer.report.figures import _seeds_label, mean_band
    mean, band = mean_band([np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.3, 0.4])],
                           [np.full(4, 0.05), np.full(2, 0.07)])
    np.testing.assert_allclose(mean, [0.2, 0.3, 0.3, 0.4])
    np.testing.assert_allclose(band, [0.1, 0.1, 0.05, 0.05])  # s.e.m. of 2 seeds, then seed 1's own
    assert _seeds_label([4, 2]) == "2 seeds to trial 2, then 1" and _seeds_label([4, 4]) == "2 seeds"
