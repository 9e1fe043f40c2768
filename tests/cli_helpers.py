"""Running run_experiment.py as a user does, on tiny real tasks, without racing the clock.

Tasks are 200 real rows of sms_spam and subj written to CSV files; the module is a real
TextEmbeddingModule of the 2000 most frequent GloVe words. The seed is picked so every trial of
a 3-per-task budget trains at most 100 steps, which keeps each CLI run to seconds.

A test that signals or kills a run waits for the run to say it is ready: it reads the run's
stderr (one progress line per committed trial) until the store holds enough trials, and gives
the run a budget it cannot finish (`UNFINISHABLE`), so the signal always lands mid-run.
"""
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import write_glove2k, write_task_sample

from automl_transfer.experiment import task_schedule
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher

REPO_ROOT = Path(__file__).resolve().parent.parent
TRIALS = 3  # per task
TASKS = ["sms_spam", "subj"]
UNFINISHABLE = 1000  # trials per task: hours of work, so a run given it is always stopped mid-run
HANG_GUARD_S = 600  # a child still running then is killed, so a hang fails the test, not the suite


def make_workdir(root: Path, shared_data_dir: Path) -> Path:
    """Write the tiny tasks and the 2000-word GloVe module under `root`."""
    for name in TASKS:
        write_task_sample(shared_data_dir, name, 200, root / f"{name}.csv")
    write_glove2k(shared_data_dir, root / "glove2k")
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


def command(workdir: Path, experiment_dir: Path, *extra: str, trials: int = TRIALS,
            mode: str = "random", max_in_flight: int | None = 1) -> list[str]:
    """The CLI on the tiny tasks and module; `extra` flags come last. One trial at a time unless
    `extra` says otherwise (None: the CLI's default for the mode)."""
    pinned = max_in_flight is not None and not any(a.startswith("--max_in_flight") for a in extra)
    return [sys.executable, str(REPO_ROOT / "run_experiment.py"), f"--mode={mode}",
            f"--tasks={workdir / 'sms_spam.csv'},{workdir / 'subj.csv'}", f"--trials={trials}",
            f"--seed={SEED}", f"--module_handles=glove={workdir / 'glove2k'}",
            f"--experiment_dir={experiment_dir}",
            *([f"--max_in_flight={max_in_flight}"] if pinned else []), *extra]


def env() -> dict:
    """This checkout first on the path; TensorFlow's log level left to the CLI."""
    return {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
            "PYTHONPATH": str(REPO_ROOT)}


def cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env(), timeout=HANG_GUARD_S)


def finished_count(store: Path) -> int:
    """Trials committed to `store` (0 before the run has created it)."""
    if not store.exists():
        return 0
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        db.close()


def rows(store: Path) -> list[tuple]:
    db = sqlite3.connect(store)
    try:
        return db.execute("SELECT trial_id, task, config, finished_at FROM trials ORDER BY trial_id"
                          ).fetchall()
    finally:
        db.close()


def start(args: list[str], **popen_args) -> subprocess.Popen:
    """Start the CLI with stderr piped (text); killed if it outlives HANG_GUARD_S."""
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env(), **popen_args)
    guard = threading.Timer(HANG_GUARD_S, lambda: proc.poll() is None and proc.kill())
    guard.daemon = True
    guard.start()
    return proc


def wait_for_trials(proc: subprocess.Popen, store: Path, count: int) -> list[str]:
    """Read the run's stderr until `store` holds `count` trials; return the lines read.

    The progress line of a trial is written after its commit, so no clock is involved: this
    returns the moment the run reports its `count`-th trial, or fails if the run ends first.
    """
    lines = []
    while finished_count(store) < count:
        line = proc.stderr.readline()
        assert line, f"the run ended before {count} trials were stored: {''.join(lines)}"
        lines.append(line)
    return lines


Process = tuple[int, str]  # (pid, start time): a pid alone may be reused once its process ends


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, start time) of every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended while we looked
            continue
        table[int(stat.parent.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def descendants(root: int) -> set[Process]:
    """Every living process below `root` (a zombie, dead but not yet reaped, is not living)."""
    table = _process_table()
    found, todo = set(), [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, state, start) in table.items():
            if ppid == parent and state != "Z":
                found.add((pid, start))
                todo.append(pid)
    return found


def living(processes: set[Process]) -> set[Process]:
    """Those of `processes` still running."""
    table = _process_table()
    return {(pid, start) for pid, start in processes
            if pid in table and table[pid][2] == start and table[pid][1] != "Z"}


def wait_until_gone(processes: set[Process], bound_s: float = HANG_GUARD_S) -> set[Process]:
    """Poll until none of `processes` runs; those still running after `bound_s` (a leak: the bound
    only keeps it from hanging the test)."""
    deadline = time.monotonic() + bound_s
    while living(processes) and time.monotonic() < deadline:
        time.sleep(0.1)
    return living(processes)

