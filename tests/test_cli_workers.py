"""run_experiment.py with trials in flight, as a user runs it: worker processes and Ray workers die
with a SIGKILLed run, whose rerun resumes (with exactly the budget); Ctrl-C on Ray exits 130 and
stops every worker; a missing Ray and too many workers are each said in one line.

Kill points are made exact without timing: the test takes the store's write lock, counts the
committed trials under it and kills the run while the run cannot commit more.
"""
import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from cli_helpers import HANG_GUARD_S, TASKS, TRIALS, descendants, rows, wait_until_gone
from cli_helpers import command as cli_command
from cli_helpers import env as cli_env

from automl_transfer import workers
from automl_transfer.executors import ProcessExecutor, SequentialExecutor, make_executor

# Bound of every poll, generous as a loaded machine is slow: a run or worker that never stops
# fails the test instead of hanging it.
WAIT_S = 900


@contextlib.contextmanager
def _store_write_lock(store: Path):
    """Hold the store's write lock: the run cannot commit a trial meanwhile."""
    db = sqlite3.connect(store, timeout=60)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield db
    finally:
        db.rollback()
        db.close()


def _committed_under_lock(proc: subprocess.Popen, store: Path, at_least: int, action) -> int:
    """Wait until `at_least` trials are committed, then call `action()` while holding the store's
    write lock; returns the number of trials committed when `action` ran."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists():
            with contextlib.suppress(sqlite3.OperationalError), _store_write_lock(store) as db:
                count = db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
                if count >= at_least:
                    action()
                    return count
        time.sleep(0.05)
    raise AssertionError(f"the run ended or stalled before {at_least} trials were committed")


def _sigkill_after(proc: subprocess.Popen, store: Path, at_least: int) -> tuple[int, set]:
    """SIGKILL the run once `at_least` trials are committed; (trials committed, its processes)."""
    processes: set = set()

    def kill() -> None:
        processes.update(descendants(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    return _committed_under_lock(proc, store, at_least, kill), processes


def test_sigkill_leaves_no_workers_and_the_rerun_resumes_with_the_exact_budget(workdir, tmp_path):
    budget = TRIALS * len(TASKS)
    exp = tmp_path / "exp"
    command = cli_command(workdir, exp, "--max_in_flight=2", "--executor=process")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=cli_env())
    committed, workers_before_kill = _sigkill_after(proc, exp / "trials.sqlite", 2)
    assert 2 <= committed < budget
    assert len(workers_before_kill) >= 2  # the two workers
    assert wait_until_gone(workers_before_kill) == set(), "processes outlived the killed run"

    before = rows(exp / "trials.sqlite")
    resumed = subprocess.run(command, capture_output=True, text=True, env=cli_env(), timeout=WAIT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {committed}/{budget} trials already finished" in resumed.stderr
    after = rows(exp / "trials.sqlite")
    assert [row[0] for row in after] == list(range(budget))  # exactly the budget, no duplicate
    assert [row for row in after if row[0] in {r[0] for r in before}] == before  # not rerun
    assert sorted(row[1] for row in after) == sorted(TASKS * TRIALS)


def test_on_ray_sigkill_then_ctrl_c_leave_no_workers_and_lose_nothing(workdir, tmp_path):
    """The same kill on Ray (its own processes too), then Ctrl-C stops the resumed run.

    The budget is one the run never finishes, so the Ctrl-C always lands mid-run; that a resume
    completes exactly the budget is checked above, the loop being the same for every executor.
    """
    exp = tmp_path / "exp"
    command = cli_command(workdir, exp, "--max_in_flight=2", "--executor=ray")
    command = [arg if not arg.startswith("--trials=") else "--trials=50" for arg in command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=cli_env())
    committed, processes = _sigkill_after(proc, exp / "trials.sqlite", 2)
    assert len(processes) >= 2  # the two workers and Ray's own processes
    assert wait_until_gone(processes) == set(), "Ray processes outlived the killed run"
    before = rows(exp / "trials.sqlite")

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), start_new_session=True)
    processes = set()
    _committed_under_lock(proc, exp / "trials.sqlite", committed + 1,
                          lambda: processes.update(descendants(proc.pid)))
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, stderr
    assert f"resuming: {committed}/100 trials already finished" in stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted: finished trials are saved")
    assert wait_until_gone(processes) == set(), "Ray processes outlived the interrupted run"
    after = rows(exp / "trials.sqlite")
    assert len(after) > len(before) and len({row[0] for row in after}) == len(after)
    assert [row for row in after if row[0] in {r[0] for r in before}] == before  # not rerun


def test_without_ray_the_ray_executor_says_how_to_install_it(workdir, tmp_path):
    fake = tmp_path / "no_ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**cli_env(), "PYTHONPATH": f"{fake.parent}{os.pathsep}{cli_env()['PYTHONPATH']}"}
    result = subprocess.run(cli_command(workdir, tmp_path / "exp", "--executor=ray"),
                            capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the Ray executor needs Ray: pip install -e \".[ray]\"")


def test_more_in_flight_than_cpus_is_capped_in_one_line():
    lines = []
    cpus = workers.cpu_count()
    executor = make_executor(cpus * 8, kind="process", log=lines.append)
    assert lines == [f"warning: max_in_flight={cpus * 8} is more than the {cpus} CPUs available: "
                     f"running {cpus} trials at a time"]
    assert executor.max_in_flight == cpus
    assert isinstance(executor, SequentialExecutor if cpus == 1 else ProcessExecutor)
    executor.close()
    lines.clear()
    assert make_executor(1, log=lines.append).max_in_flight == 1 and lines == []
