"""The CLI as a process: SIGTERM and Ctrl-C stop it cleanly, closed pipes do not break it, and
TensorFlow's start-up log stays quiet. Real runs on the tiny tasks of cli_helpers.py; every
signal waits for the run to report a committed trial (no clock involved)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import (TASKS, TRIALS, UNFINISHABLE, cli, command, descendants, env,
                         finished_count, make_workdir, rows, start, wait_for_trials,
                         wait_until_gone)

RESUME_HINT = "finished trials are saved in {}; rerun the same command to resume"
# What TensorFlow's C++ side prints on a CPU machine: glog-style lines and absl's pre-init note.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} |cuInit|oneDNN|InitializeLog|cuda drivers", re.M)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data_dir):
    return make_workdir(tmp_path_factory.mktemp("signals"), shared_data_dir)


def _checkpointed_trials(experiment_dir: Path) -> int:
    return json.loads((experiment_dir / "searcher" / "checkpoint.json").read_text())["trials_seen"]


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(workdir, tmp_path):
    exp = tmp_path / "exp"
    store = exp / "trials.sqlite"
    proc = start(command(workdir, exp, trials=UNFINISHABLE), stdout=subprocess.DEVNULL)
    wait_for_trials(proc, store, 1)
    proc.terminate()
    _, stderr = proc.communicate()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "terminated: " + RESUME_HINT.format(exp)
    stored = finished_count(store)
    assert stored >= 1 and _checkpointed_trials(exp) == stored  # nothing lost, searcher in step

    resumed = start(command(workdir, exp, trials=UNFINISHABLE), stdout=subprocess.DEVNULL)
    lines = wait_for_trials(resumed, store, stored + 1)
    resumed.terminate()
    _, stderr = resumed.communicate()
    assert resumed.returncode == 143, stderr
    assert f"resuming: {stored}/{UNFINISHABLE * len(TASKS)} trials already finished\n" in lines
    assert [row[0] for row in rows(store)] == list(range(finished_count(store)))


def test_a_crash_in_native_code_prints_where_it_happened(workdir, tmp_path):
    """A segmentation fault (sent here, as TensorFlow's would arrive) leaves the Python stack on
    stderr (absl's app.run enables faulthandler), so a crash report, and the stop tests' failure
    messages, say where it happened, not just 'exit -11'."""
    exp = tmp_path / "exp"
    proc = start(command(workdir, exp, trials=UNFINISHABLE), stdout=subprocess.DEVNULL)
    wait_for_trials(proc, exp / "trials.sqlite", 1)
    proc.send_signal(signal.SIGSEGV)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGSEGV
    assert "Fatal Python error: Segmentation fault" in stderr and "run_experiment.py" in stderr


def _wait_until_workers_ignore_sigint(pid: int, workers: int) -> None:
    """Poll /proc until `workers` processes below `pid` ignore SIGINT (their initializer ran)."""
    sigint = 1 << (signal.SIGINT - 1)
    for _ in range(6000):  # bounded: 10 minutes
        ignoring = 0
        for child, _ in descendants(pid):
            try:
                status = Path(f"/proc/{child}/status").read_text()
            except OSError:  # ended while we looked
                continue
            ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M).group(1), 16)
            ignoring += bool(ignored & sigint)
        if ignoring >= workers:
            return
        time.sleep(0.1)
    raise AssertionError(f"the run's {workers} workers never became ready")


@pytest.mark.parametrize("stop, code", [("ctrl-c to the process group", 130),
                                        ("SIGTERM to the parent", 143)])
def test_stopping_a_run_with_worker_processes_is_clean(workdir, tmp_path, stop, code):
    exp = tmp_path / "exp"
    store = exp / "trials.sqlite"
    proc = start(command(workdir, exp, "--max_in_flight=2", trials=UNFINISHABLE),
                 stdout=subprocess.DEVNULL, start_new_session=True)
    wait_for_trials(proc, store, 1)
    # 2 workers plus multiprocessing's resource tracker, which ignores SIGINT too.
    _wait_until_workers_ignore_sigint(proc.pid, 3)
    workers = descendants(proc.pid)
    if stop.startswith("ctrl-c"):
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    else:
        proc.terminate()
    _, stderr = proc.communicate()  # returns once every writer of stderr, workers too, is gone
    assert proc.returncode == code
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.strip().splitlines()[-1].endswith(RESUME_HINT.format(exp))
    # Workers and the resource tracker go with the parent (they watch it).
    assert wait_until_gone(workers) == set(), "worker processes outlived the run"
    ids = [row[0] for row in rows(store)]
    assert len(ids) >= 1 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("closed", ["stdout", "stdout and stderr"])
def test_output_to_a_closed_pipe_is_dropped_and_the_run_completes(workdir, tmp_path, closed):
    """What `run_experiment.py | head -1` does once head has exited, without the race: the
    reading end is closed before the run starts."""
    exp = tmp_path / "exp"
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        streams = {"stdout": write_end}
        streams["stderr"] = write_end if "stderr" in closed else subprocess.PIPE
        result = subprocess.run(command(workdir, exp), env=env(), text=True, timeout=600,
                                **streams)
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in (result.stderr or "") and "BrokenPipe" not in (result.stderr or "")
    assert [row[0] for row in rows(exp / "trials.sqlite")] == list(range(TRIALS * len(TASKS)))


@pytest.mark.parametrize("verbose", [False, True])
def test_tensorflow_start_up_log_is_quiet_unless_verbose(workdir, tmp_path, verbose):
    """Quiet: parent and both workers import TensorFlow and train; only our own lines reach
    stderr. Verbose (one process is enough to show it): TensorFlow's lines are back."""
    exp = tmp_path / "exp"
    result = cli(command(workdir, exp, "--verbose" if verbose else "--max_in_flight=2", trials=1))
    assert result.returncode == 0, result.stderr
    assert finished_count(exp / "trials.sqlite") == len(TASKS)
    assert bool(TF_LOG_LINE.search(result.stderr)) == verbose, result.stderr


def test_module_build_is_quiet(shared_data_dir, tmp_path):
    result = cli([sys.executable, "-m", "automl_transfer.modules.build", "--modules=en-glove-50",
                  f"--cache_dir={tmp_path}", f"--data_dir={shared_data_dir}"])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "modules" / "en-glove-50" / "manifest.json").is_file()
    assert not TF_LOG_LINE.search(result.stderr + result.stdout), result.stderr
