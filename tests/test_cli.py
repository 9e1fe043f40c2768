"""run_experiment.py end to end, as a user runs it: real child, real tiny tasks and module.

The tasks, the module, and how a test waits for a run without racing the clock: cli_helpers.py.
"""
import signal
import subprocess
import sys

import pytest
from cli_helpers import (REPO_ROOT, TASKS, TRIALS, UNFINISHABLE, cli, command, finished_count,
                         rows, start, wait_for_trials)

from automl_transfer import workers
from automl_transfer.search import default_in_flight


def test_kill_and_resume_keep_every_finished_trial(workdir, tmp_path):
    exp = tmp_path / "exp"
    store = exp / "trials.sqlite"
    budget = UNFINISHABLE * len(TASKS)
    # 1. Kill -9 once 2 trials are committed (the budget guarantees the run is mid-way).
    killed = start(command(workdir, exp, trials=UNFINISHABLE), stdout=subprocess.DEVNULL)
    wait_for_trials(killed, store, 2)
    killed.kill()
    killed.communicate()
    before = rows(store)
    assert len(before) >= 2

    # 2. The same command resumes: finished trials kept as they were, the next ones follow.
    resumed = start(command(workdir, exp, trials=UNFINISHABLE), stdout=subprocess.DEVNULL)
    lines = wait_for_trials(resumed, store, len(before) + 1)
    resumed.send_signal(signal.SIGINT)
    _, stderr = resumed.communicate()
    assert resumed.returncode == 130, stderr  # a crash's stack (faulthandler) shows here
    assert f"resuming: {len(before)}/{budget} trials already finished\n" in lines
    after = rows(store)
    assert after[:len(before)] == before  # same rows, same commit times: not rerun
    assert [row[0] for row in after] == list(range(len(after)))  # none lost, none twice
    assert [row[1] for row in after] == [TASKS[i % 2] for i in range(len(after))]


def test_complete_run_overwrite_and_refusal(workdir, tmp_path):
    exp = tmp_path / "exp"
    store = exp / "trials.sqlite"
    budget = TRIALS * len(TASKS)
    # 1. A whole run: every trial of the budget, the summary on stdout.
    done = cli(command(workdir, exp))
    assert done.returncode == 0, done.stderr
    after = rows(store)
    assert [row[0] for row in after] == list(range(budget))
    assert sorted(row[1] for row in after) == ["sms_spam"] * TRIALS + ["subj"] * TRIALS
    assert "accuracy-top10" in done.stdout and "sms_spam:" in done.stdout
    assert "best (trial" in done.stdout and "module=glove" in done.stdout

    # 2. Rerunning a finished run trains nothing; --overwrite reruns it: same configurations.
    again = cli(command(workdir, exp))
    assert again.returncode == 0 and rows(store) == after
    fresh = cli(command(workdir, exp, "--overwrite"))
    assert fresh.returncode == 0, fresh.stderr
    assert "resuming" not in fresh.stderr
    rerun = rows(store)
    assert [row[:3] for row in rerun] == [row[:3] for row in after]
    assert all(new[3] > old[3] for new, old in zip(rerun, after))  # every trial rerun

    # 3. A resume with other tasks is refused in one line.
    refused = cli([arg if not arg.startswith("--tasks=") else f"--tasks={workdir / 'sms_spam.csv'}"
                   for arg in command(workdir, exp)])
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "tasks=['sms_spam', 'subj'], not ['sms_spam']" in last
    assert "--overwrite" in last
    assert rows(store) == rerun


def test_random_search_by_default_runs_a_worker_per_core_on_the_same_trials(workdir, tmp_path):
    """Without --max_in_flight, random search uses one worker per core (its trials do not depend
    on each other): the same trial ids, tasks and configurations as one at a time."""
    one_at_a_time = cli(command(workdir, tmp_path / "one"))
    default = cli(command(workdir, tmp_path / "default", max_in_flight=None))
    assert one_at_a_time.returncode == 0 and default.returncode == 0, default.stderr
    slots = workers.local_slots()
    assert (f"{slots} trials at once (process workers)" in default.stdout) == (slots > 1)
    assert "trials at once" not in one_at_a_time.stdout
    assert [row[:3] for row in rows(tmp_path / "default" / "trials.sqlite")] == \
        [row[:3] for row in rows(tmp_path / "one" / "trials.sqlite")]
    assert default_in_flight("random") == slots
    assert {default_in_flight(mode) for mode in ("tpe", "single", "multitask", "transfer")} == {1}


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
    result = cli(args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "exp").exists()


def test_help_explains_every_flag():
    result = cli([sys.executable, str(REPO_ROOT / "run_experiment.py"), "--help"])
    assert result.returncode == 0
    for flag in ("mode", "tasks", "trials", "experiment_dir", "seed", "data_dir", "cache_dir",
                 "modules", "module_handles", "overwrite", "max_in_flight", "report_decision",
                 "report_window", "verbose", "export_dir", "export_top_k", "model_dir", "input",
                 "output", "executor", "ray_address", "space", "fine_tune_images"):
        assert f"--{flag}:" in result.stdout or f"--[no]{flag}:" in result.stdout
    assert "resumes" in result.stdout


def test_ctrl_c_keeps_finished_trials_and_says_how_to_resume(workdir, tmp_path):
    exp = tmp_path / "exp"
    store = exp / "trials.sqlite"
    proc = start(command(workdir, exp, trials=UNFINISHABLE), stdout=subprocess.DEVNULL)
    wait_for_trials(proc, store, 1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: finished trials are saved in {exp}; rerun the same command to resume")
    assert finished_count(store) >= 1
