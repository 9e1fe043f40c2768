"""run_experiment.py end to end, as a user runs it: real child, real tiny tasks and module.

Tasks are 200 real rows of sms_spam and subj written to CSV files; the module is a real
TextEmbeddingModule of the 2000 most frequent GloVe words. The seed is picked so every trial of
the budget trains at most 100 steps, which keeps each CLI run to seconds.
"""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_task_sample

from automl_transfer.experiment import task_schedule
from automl_transfer.modules.text_embedding import export_text_module
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher

REPO_ROOT = Path(__file__).resolve().parent.parent
TRIALS = 3  # per task
TASKS = ["sms_spam", "subj"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data_dir) -> Path:
    root = tmp_path_factory.mktemp("cli")
    for name in TASKS:
        write_task_sample(shared_data_dir, name, 200, root / f"{name}.csv")
    glove = shared_data_dir / "embeddings" / "glove-6b-50d-top50k"
    vocab = (glove / "vocab.txt").read_text(encoding="utf-8").splitlines()[:2000]
    export_text_module(str(root / "glove2k"), vocab, np.load(glove / "vectors.npy")[:2000])
    return root


def _cheap_seed() -> int:
    """A seed whose random configurations all train at most 100 steps."""
    space = SearchSpace(["glove"])
    schedule = task_schedule(TASKS, TRIALS, 0, interleave=False)
    for seed in range(1000):
        searcher = RandomSearcher(space, seed)
        if all(searcher.suggest(i, task, ["glove"]).config.train_steps <= 100
               for i, task in enumerate(schedule)):
            return seed
    raise AssertionError("no cheap seed")


SEED = _cheap_seed()


def _command(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "run_experiment.py"), "--mode=random",
            f"--tasks={workdir / 'sms_spam.csv'},{workdir / 'subj.csv'}", f"--trials={TRIALS}",
            f"--seed={SEED}", f"--module_handles=glove={workdir / 'glove2k'}",
            f"--experiment_dir={workdir / 'exp'}", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)


def _rows(workdir: Path) -> list[tuple]:
    db = sqlite3.connect(workdir / "exp" / "trials.sqlite")
    try:
        return db.execute("SELECT trial_id, task, config, finished_at FROM trials ORDER BY trial_id"
                          ).fetchall()
    finally:
        db.close()


def _finished_count(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        db.close()


def test_kill_resume_overwrite_and_refusal(workdir):
    budget = TRIALS * len(TASKS)
    store = workdir / "exp" / "trials.sqlite"
    # 1. Kill -9 after 2 trials are committed.
    proc = subprocess.Popen(_command(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())
    deadline = time.monotonic() + 240
    while proc.poll() is None and _finished_count(store) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(workdir)
    assert 2 <= len(before) < budget, "the run must be killed part-way"

    # 2. The same command resumes: finished trials kept, the rest run, nothing duplicated.
    resumed = _cli(_command(workdir))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(before)}/{budget} trials already finished" in resumed.stderr
    after = _rows(workdir)
    assert [row[0] for row in after] == list(range(budget))
    assert after[:len(before)] == before  # same rows, same commit times: not rerun
    assert sorted(row[1] for row in after) == ["sms_spam"] * TRIALS + ["subj"] * TRIALS
    assert "accuracy-top10" in resumed.stdout and "sms_spam:" in resumed.stdout
    assert "best (trial" in resumed.stdout and "module=glove" in resumed.stdout

    # 3. --overwrite runs afresh, uninterrupted: same seed, same configurations.
    fresh = _cli(_command(workdir, "--overwrite"))
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr
    again = _rows(workdir)
    assert [row[:3] for row in again] == [row[:3] for row in after]
    assert all(new[3] > old[3] for new, old in zip(again, after))  # every trial rerun

    # 4. A resume with other tasks is refused in one line.
    refused = _cli(_command(workdir)[:3] + [f"--tasks={workdir / 'sms_spam.csv'}"]
                   + _command(workdir)[4:])
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "tasks=['sms_spam', 'subj'], not ['sms_spam']" in last
    assert "--overwrite" in last
    assert _rows(workdir) == again


@pytest.mark.parametrize("flag, message", [
    ("--tasks=no_such_task", "unknown task 'no_such_task'"),
    ("--trials=0", "--trials=0: 0 is not a positive integer"),
    ("--mode=transfer --modules=paper", "no shipped controller fits this search space"),
    ("--mode=nonsense", "--mode=nonsense"),
    ("--module_handles=glove", "'glove' is not name=handle"),
])
def test_bad_flags_give_one_line_and_exit_code_2(tmp_path, flag, message):
    args = [sys.executable, str(REPO_ROOT / "run_experiment.py"), "--tasks=subj", "--trials=2",
            f"--experiment_dir={tmp_path / 'exp'}", *flag.split()]
    result = _cli(args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "exp").exists()


def test_help_explains_every_flag():
    result = _cli([sys.executable, str(REPO_ROOT / "run_experiment.py"), "--help"])
    assert result.returncode == 0
    for flag in ("mode", "tasks", "trials", "experiment_dir", "seed", "data_dir", "cache_dir",
                 "modules", "module_handles", "overwrite", "max_in_flight", "report_decision",
                 "report_window", "export_dir", "export_top_k", "model_dir", "input", "output"):
        assert f"--{flag}:" in result.stdout or f"--[no]{flag}:" in result.stdout
    assert "resumes" in result.stdout


def test_ctrl_c_keeps_finished_trials_and_says_how_to_resume(workdir, tmp_path):
    command = _command(workdir)[:-1] + [f"--experiment_dir={tmp_path / 'exp'}"]
    store = tmp_path / "exp" / "trials.sqlite"
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    deadline = time.monotonic() + 240
    while proc.poll() is None and _finished_count(store) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: finished trials are saved in {tmp_path / 'exp'}; "
        f"rerun the same command to resume")
    assert 1 <= _finished_count(store) < TRIALS * len(TASKS)
