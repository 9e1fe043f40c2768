"""The protocol end to end through the CLI: multitask pre-training, then random, TPE, single and
transfer runs on a held-out task, then the report; and config errors.

Real child, real tiny tasks (real rows of real tasks in CSV files) and a real tiny module.
"""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_task_sample
import yaml

from automl_transfer.errors import UserError
from automl_transfer.modules.text_embedding import export_text_module
from automl_transfer.protocol import ProtocolConfig, plan

REPO_ROOT = Path(__file__).resolve().parent.parent
PRETRAIN = ["sms_spam", "subj"]
HELD_OUT = "customer_reviews"
# The seed fixes every run's configurations (the searchers' first trials hardly depend on the
# rewards). Seed 3 drew three children of 1e6 samples (10,000 steps, 220 of the test's 310 s);
# seed 6 draws at most 1,000 steps in any run (found by driving the five searchers with
# constant rewards over seeds 0-12; the runs' stores show the same configurations).
SEED = 6


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data_dir) -> Path:
    root = tmp_path_factory.mktemp("protocol")
    for name in PRETRAIN + [HELD_OUT]:
        write_task_sample(shared_data_dir, name, 150, root / f"{name}.csv", seed=1)
    glove = shared_data_dir / "embeddings" / "glove-6b-50d-top50k"
    vocab = (glove / "vocab.txt").read_text(encoding="utf-8").splitlines()[:1000]
    export_text_module(str(root / "glove1k"), vocab, np.load(glove / "vectors.npy")[:1000])
    config = {"pretrain_tasks": [str(root / f"{t}.csv") for t in PRETRAIN],
              "transfer_tasks": [str(root / f"{HELD_OUT}.csv")], "pretrain_trials": 2,
              "transfer_trials": 2, "seeds": [SEED], "parallel_runs": 2,
              "methods": ["random", "tpe", "single", "transfer"]}
    (root / "protocol.yaml").write_text(yaml.safe_dump(config))
    return root


def _cli(*flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(REPO_ROOT / "run_experiment.py"), *flags]
    # A hang guard, not a speed check: the protocol starts seven TensorFlow processes, and on a
    # machine loaded 4-5x over (load average 9 on 2 cores) it ran past 900 s while progressing.
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=2400)


def _protocol(workdir: Path) -> subprocess.CompletedProcess:
    return _cli("--mode=protocol", f"--protocol_config={workdir / 'protocol.yaml'}",
                f"--experiment_dir={workdir / 'exp'}",
                f"--module_handles=glove={workdir / 'glove1k'}", "--max_in_flight=1")


def _trials(run_dir: Path) -> list[tuple]:
    db = sqlite3.connect(run_dir / "trials.sqlite")
    try:
        return db.execute("SELECT trial_id, task, searcher, status, finished_at FROM trials "
                          "ORDER BY trial_id").fetchall()
    finally:
        db.close()


def test_protocol_runs_every_mode_then_reports(workdir):
    result = _protocol(workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    pretrain_dir = f"pretrain/seed{SEED}"
    assert f"start {pretrain_dir} (its progress: {pretrain_dir}/run.log)" in result.stderr
    assert "(5 of 5 runs ended)" in result.stderr
    exp = workdir / "exp"
    pretrain = _trials(exp / "pretrain" / f"seed{SEED}")
    assert len(pretrain) == 4 and {row[2] for row in pretrain} == {"multitask"}
    assert sorted({row[1] for row in pretrain}) == PRETRAIN
    for method in ("random", "tpe", "single", "transfer"):
        rows = _trials(exp / method / HELD_OUT / f"seed{SEED}")
        assert [(r[0], r[1], r[2]) for r in rows] == [(0, HELD_OUT, method), (1, HELD_OUT, method)]
        assert all(r[3] in ("completed", "diverged", "failed") for r in rows)
    # The transferred controller knows the pre-training tasks plus the new one.
    transfer = exp / "transfer" / HELD_OUT / f"seed{SEED}"
    saved = (transfer / "controller" / "controller.json").read_text()
    assert all(f'"{t}"' in saved for t in PRETRAIN + [HELD_OUT])
    report = (exp / "report.md").read_text()
    assert "## Table 1" in report and f"| {HELD_OUT} |" in report
    assert "TPE trials to target" in report and "TPE test top-10" in report
    assert (exp / "learning_curves_test.png").stat().st_size > 1000
    # The report's option figure follows --report_decision; an unknown one is one clear line.
    result = _cli("--mode=report", f"--experiment_dir={exp}", "--report_decision=num_layers",
                  "--report_window=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # TensorFlow, loaded late by the report, says nothing either
    assert (exp / "option_probability_num_layers_transfer.png").stat().st_size > 1000
    assert "decision 'num_layers'" in (exp / "report.md").read_text()
    result = _cli("--mode=report", f"--experiment_dir={exp}", "--report_decision=colour")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown decision 'colour'")


def test_protocol_plan_lays_out_runs_and_orders_pretraining_first(tmp_path):
    config = ProtocolConfig(pretrain_tasks=("a", "b"), transfer_tasks=("c", "/data/d.csv.gz"),
                            pretrain_trials=3, transfer_trials=4, seeds=(0, 1))
    runs = plan(config, tmp_path)
    assert len(runs) == 2 * (1 + 3 * 2)
    names = [str(r.directory.relative_to(tmp_path)) for r in runs]
    assert names[0] == "pretrain/seed0" and "transfer/d/seed1" in names
    transfer = next(r for r in runs if r.directory == tmp_path / "transfer" / "c" / "seed1")
    assert transfer.after == tmp_path / "pretrain" / "seed1"
    assert f"--controller_dir={tmp_path / 'pretrain' / 'seed1' / 'controller'}" in transfer.flags


def test_pretrain_once_runs_one_pretraining_that_every_seeds_transfer_uses(tmp_path):
    config = ProtocolConfig(pretrain_tasks=("a", "b"), transfer_tasks=("c",), pretrain_trials=3,
                            transfer_trials=4, seeds=(5, 1), methods=("random", "transfer"),
                            pretrain_once=True)
    runs = plan(config, tmp_path)
    pretraining = [r for r in runs if r.directory.parent.name == "pretrain"]
    assert [r.directory.name for r in pretraining] == ["seed5"]
    assert "--seed=5" in pretraining[0].flags
    transfers = [r for r in runs if r.directory.parent.parent.name == "transfer"]
    assert [r.directory.name for r in transfers] == ["seed5", "seed1"]
    for run in transfers:
        assert run.after == tmp_path / "pretrain" / "seed5"
        assert f"--controller_dir={tmp_path / 'pretrain' / 'seed5' / 'controller'}" in run.flags
    assert "--seed=1" in transfers[1].flags


@pytest.mark.parametrize("text, message", [
    ("pretrain_tasks: [a]\ntransfer_tasks: [a]\npretrain_trials: 1\ntransfer_trials: 1\nseeds: [0]",
     "both pre-training and transfer tasks"),
    ("pretrain_tasks: [a]\ntransfer_tasks: [b]\npretrain_trials: 1\ntransfer_trials: 1\n"
     "seeds: [0]\nmethods: [grid]", "unknown methods ['grid']"),
    ("pretrain_tasks: [a]\ntransfer_tasks: [b]\npretrain_trials: 1\ntransfer_trials: 1\n"
     "seeds: [0]\nbudget: 3", "unknown settings ['budget']"),
    ("pretrain_tasks: [a]\ntransfer_tasks: [b]\npretrain_trials: 0\ntransfer_trials: 1\nseeds: [0]",
     "must be positive"),
    ("pretrain_tasks: [a]\ntransfer_tasks: [b]\npretrain_trials: 1\ntransfer_trials: 1\n"
     "seeds: [0]\npretrain_once: maybe", "pretrain_once is true or false"),
    ("- just a list", "a mapping of settings"),
])
def test_bad_protocol_configs_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=".*") as err:
        ProtocolConfig.from_yaml(path)
    assert str(path) in str(err.value) and message in str(err.value)
