"""Nothing lost, nothing silent (issue 12): user files, changed data, failed trials, bad labels,
huge budgets, bad controller flags, damaged files and unusable places.

Loop-level cases score trials with a small deterministic function (no training); CLI cases run
run_experiment.py as a user does, on real rows cut from the shared datasets and a real module.
"""
import csv
import errno
import fcntl
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import HANG_GUARD_S
from conftest import write_glove2k, write_task_sample

from automl_transfer import tasks
from automl_transfer.errors import DataError, ResumeError, StoreError, UserError
from automl_transfer.experiment import FINGERPRINTS_KEY, SETTINGS_KEY, run_experiment, task_schedule
from automl_transfer.fingerprints import task_fingerprint
from automl_transfer.progress import ProgressDisplay
from automl_transfer.search import summary
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.store import STORE_FILE, TrialStore
from automl_transfer.trial import Status, Trial, TrialResult

REPO_ROOT = Path(__file__).resolve().parent.parent
MODULES = ["en-a", "en-b"]
ALLOWED = {"t1": MODULES, "t2": MODULES}


def _score(trial: Trial) -> TrialResult:
    valid = trial.config.layer_size / 256
    return TrialResult(Status.COMPLETED, valid, 1.0 - valid, steps=1)


def _fail(trial: Trial) -> TrialResult:
    return TrialResult(Status.FAILED, 0.0, 0.0, error="ModuleError: module directory /m is broken")


def _fail_differently(trial: Trial) -> TrialResult:
    return TrialResult(Status.FAILED, 0.0, 0.0, error=f"ValueError: bad trial {trial.trial_id}")


def _run(exp_dir, trials_per_task=2, evaluate=_score, searcher=None, **kwargs):
    searcher = searcher or RandomSearcher(SearchSpace(MODULES), 1)
    schedule = task_schedule(["t1", "t2"], trials_per_task, 1, interleave=True)
    settings = {"mode": "test", "tasks": ["t1", "t2"], "seed": 1,
                "trials_per_task": trials_per_task}
    return run_experiment(exp_dir, searcher, schedule, ALLOWED, evaluate, settings, **kwargs)


def _meta(exp_dir: Path, key: str):
    with TrialStore(exp_dir / STORE_FILE) as store:
        return store.get_meta(key)


# --- 1. --overwrite deletes only what the project wrote ------------------------------------------

def test_overwrite_deletes_only_project_files_and_keeps_the_users(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("print(1)")
    (tmp_path / "task.csv").write_text("text,label\n")
    with pytest.raises(UserError, match=r"not empty and not an experiment directory .*'notes.txt'"):
        _run(tmp_path)
    assert not (tmp_path / STORE_FILE).exists()
    first = _run(tmp_path / "exp")
    for name in ("notes.txt", "task.csv"):  # the user's files beside a real experiment
        (tmp_path / "exp" / name).write_text("mine")
    (tmp_path / "exp" / "src").mkdir()
    again = _run(tmp_path / "exp", overwrite=True)
    assert [t.config for t in again] == [t.config for t in first]
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == [
        ".lock", "notes.txt", "searcher", "src", "task.csv", STORE_FILE]
    assert (tmp_path / "exp" / "notes.txt").read_text() == "mine"


# --- 2. fingerprints of task data and modules -----------------------------------------------------

def test_resume_with_changed_task_data_is_refused_and_old_stores_record_fingerprints(tmp_path):
    data = tmp_path / "t1.csv"
    data.write_text("text,label\na,x\nb,y\n")
    prints = {"tasks": {"t1": task_fingerprint(data)}, "modules": {"en-a": "sha256:aa"}}
    _run(tmp_path / "exp")  # a store written before fingerprints existed
    assert _meta(tmp_path / "exp", FINGERPRINTS_KEY) is None
    trials = _run(tmp_path / "exp", trials_per_task=3, fingerprints=prints)  # resumes, records
    assert len(trials) == 6 and _meta(tmp_path / "exp", FINGERPRINTS_KEY) == prints
    data.write_text("text,label\na,x\nb,z\n")  # same path, other labels
    changed = {**prints, "tasks": {"t1": task_fingerprint(data)}}
    with pytest.raises(ResumeError, match=r"the data of task 't1' changed since this run "
                                          r"started \(sha256 \w{12} recorded, sha256 \w{12} now\)"):
        _run(tmp_path / "exp", trials_per_task=3, fingerprints=changed)
    with pytest.raises(ResumeError, match="module 'en-a' changed"):
        _run(tmp_path / "exp", trials_per_task=3, fingerprints={"modules": {"en-a": "sha256:bb"}})
    assert _meta(tmp_path / "exp", FINGERPRINTS_KEY) == prints  # the refusal changed nothing


# --- 3. failed trials are visible and stop a run that cannot work --------------------------------

def test_first_trials_failing_the_same_way_stop_the_run_and_record_nothing(tmp_path):
    with pytest.raises(UserError, match=r"the first 3 trials all failed with: ModuleError: "
                                        r"module directory /m is broken; nothing was recorded"):
        _run(tmp_path / "exp", trials_per_task=3, evaluate=_fail)
    with TrialStore(tmp_path / "exp" / STORE_FILE) as store:
        assert store.trials() == []
    fixed = _run(tmp_path / "exp", trials_per_task=3)  # the fixed rerun retries those ids
    assert [t.result.status for t in fixed] == [Status.COMPLETED] * 6


def test_failures_show_in_progress_and_different_errors_are_committed(tmp_path):
    stream = io.StringIO()
    trials = _run(tmp_path / "exp", trials_per_task=2, evaluate=_fail_differently,
                  callbacks=[ProgressDisplay(stream)])
    assert [t.result.status for t in trials] == [Status.FAILED] * 4
    last = stream.getvalue().splitlines()[-1]
    assert "| 4 failed (first #0: ValueError: bad trial 0) |" in last


def test_summary_says_failed_trials_count_as_zero_in_the_top10(tmp_path):
    failed = [t for t in _run(tmp_path / "exp", evaluate=_fail_differently) if t.task == "t1"]
    good = [t for t in _run(tmp_path / "ok") if t.task == "t2"]
    lines = summary(failed + good, ["t1", "t2"])
    first = failed[0].trial_id
    assert lines[1].startswith(f"  t1: 2 trials (2 failed (first #{first}: ValueError: bad trial "
                               f"{first})), valid 0.0000")
    assert lines[2:4] == ["    2 of the 2 trials in that mean failed or diverged (counted as 0)",
                          "    no completed trial"]
    assert lines[4].startswith("  t2: 2 trials, valid") and lines[5].startswith("    best (trial")


def test_damaged_module_in_the_cache_is_rebuilt_not_reused(shared_data_dir, tmp_path):
    from automl_transfer.modules import build
    from automl_transfer.modules.loading import get_module
    logs = []
    build.build_offline_modules(shared_data_dir, tmp_path, ["en-glove-50"], log=logs.append)
    data = tmp_path / "modules" / "en-glove-50" / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    build.ensure_offline_modules(shared_data_dir, tmp_path, ["en-glove-50"], log=logs.append)
    assert "damaged" in logs[-3] and "rebuilding" in logs[-3] and "built in" in logs[-1]
    import tensorflow as tf
    assert get_module("en-glove-50", cache_dir=tmp_path)(tf.constant(["king"])).shape == (1, 50)


# --- 4. labels that cannot be scored, and data that may mislead ----------------------------------

def _csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "split"])
        writer.writerows(rows)
    return path


def test_a_label_only_in_the_test_split_is_refused(tmp_path):
    rows = [[f"text {i}", "a" if i % 2 else "b", "train"] for i in range(20)]
    rows += [["one", "a", "test"], ["two", "c", "test"]]
    with pytest.raises(DataError, match=r"label 'c' is only in the test split \(1 rows\), never in "
                                        r"train"):
        tasks.load_task(str(_csv(tmp_path / "only_test.csv", rows)))
    rows[-1] = ["two", "c", "valid"]
    rows.append(["three", "b", "valid"])
    with pytest.raises(DataError, match="label 'c' is only in the valid split"):
        tasks.load_task(str(_csv(tmp_path / "only_valid.csv", rows)))


def test_one_class_test_split_case_only_labels_and_empty_texts_warn(tmp_path):
    rows = [[f"text {i}" if i % 3 else "", ["ham", "Ham", "spam"][i % 3], "train"]
            for i in range(30)]
    rows += [["t", "spam", "test"], ["u", "spam", "test"]]
    task = tasks.load_task(str(_csv(tmp_path / "odd.csv", rows)))
    assert len(task.warnings) == 3
    assert "the test split has one class only ('spam')" in task.warnings[0]
    assert "labels 'Ham' and 'ham' differ only by case" in task.warnings[1]
    assert "10 of 32 texts are empty (31%)" in task.warnings[2]
    clean = [[f"text {i}", "ab"[i % 2], "train"] for i in range(20)] + [
        ["x", "a", "test"], ["y", "b", "test"]]
    assert tasks.load_task(str(_csv(tmp_path / "clean.csv", clean))).warnings == ()


# --- 5. a huge budget does not hang --------------------------------------------------------------

def test_huge_budget_schedule_is_lazy_and_the_same_as_a_small_one():
    huge = task_schedule(["a", "b", "c"], 10**8, 4, interleave=True)
    small = task_schedule(["a", "b", "c"], 5, 4, interleave=True)
    assert len(huge) == 3 * 10**8 and huge[:15] == list(small)
    assert huge[3 * 10**8 - 1] in "abc" and sorted(huge[-3:]) == ["a", "b", "c"]
    rounds = [[["a", "b", "c"][i] for i in np.random.default_rng([4, r]).permutation(3)]
              for r in range(5)]
    assert list(small) == [task for round_ in rounds for task in round_]  # as before: prefix-stable


# --- 7. damaged and unusable places ------------------------------------------------------------

def test_truncated_or_corrupt_store_is_one_line_naming_the_file(tmp_path):
    _run(tmp_path / "exp", trials_per_task=40)
    store = tmp_path / "exp" / STORE_FILE
    assert not (tmp_path / "exp" / f"{STORE_FILE}-wal").exists()  # checkpointed at close
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    with pytest.raises(StoreError, match=rf"{store}: cannot open the trial store \(.*\): it is "
                                         r"damaged: restore it from a backup, or start afresh"):
        _run(tmp_path / "exp", trials_per_task=40)
    store.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreError, match="file is not a database"):
        _run(tmp_path / "exp")
    assert len(_run(tmp_path / "exp", overwrite=True)) == 4  # --overwrite starts afresh


def test_full_disk_while_recording_is_one_line_and_keeps_committed_trials(tmp_path):
    store = TrialStore(tmp_path / STORE_FILE)
    searcher = RandomSearcher(SearchSpace(MODULES), 0)
    store._db.execute("PRAGMA max_page_count = 3")  # SQLite's own "database or disk is full"
    with pytest.raises(StoreError, match=r"cannot record trial \d+ \(database or disk is full\): "
                                         r"free some space, then rerun the same command"):
        for i in range(1000):
            store.record(searcher.suggest(i, "t1", MODULES).with_result(_score(
                searcher.suggest(i, "t1", MODULES))), searcher_state={"big": "x" * 500})
    committed = store.finished_ids()
    store.close()
    with TrialStore(tmp_path / STORE_FILE) as reopened:
        assert reopened.finished_ids() == committed and committed


class _FullDiskSearcher(RandomSearcher):
    """Random search whose checkpoint write hits a full disk, as an OSError from the OS would."""

    def save(self, directory):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_checkpointing_is_one_line_and_the_rerun_resumes(tmp_path):
    with pytest.raises(UserError, match=r"searcher.tmp: cannot write the searcher checkpoint "
                                        r"\(No space left on device\): free some space"):
        _run(tmp_path / "exp", searcher=_FullDiskSearcher(SearchSpace(MODULES), 1))
    with TrialStore(tmp_path / "exp" / STORE_FILE) as store:
        kept = store.trials()
    assert len(kept) == 1
    resumed = _run(tmp_path / "exp")
    assert resumed[:1] == kept and len(resumed) == 4


def test_damaged_controller_checkpoint_refuses_resume_and_transfer_in_one_line(tmp_path):
    from automl_transfer.searchers import controller_io
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    space = SearchSpace(MODULES)

    def searcher():
        return ControllerSearcher(space, 0, ["t1", "t2"])
    _run(tmp_path / "exp", searcher=searcher())
    controller = tmp_path / "exp" / "controller"
    optimizer = controller / controller_io.OPTIMIZER_FILE
    saved = optimizer.read_bytes()
    optimizer.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(ResumeError, match=rf"{optimizer}: damaged optimizer state .*; to resume, "
                                          rf"move {controller} aside"):
        _run(tmp_path / "exp", trials_per_task=3, searcher=searcher())
    optimizer.write_bytes(saved)
    variables = controller / "variables" / "variables.data-00000-of-00001"
    variables.write_bytes(variables.read_bytes()[:10])
    with pytest.raises(ResumeError, match=rf"cannot load the SavedModel in {controller}"):
        _run(tmp_path / "exp", trials_per_task=3, searcher=searcher())
    with pytest.raises(UserError, match=rf"cannot load the SavedModel in {controller}"):
        ControllerSearcher.from_saved(controller, ["t3"], 0, space=space)
    assert len(_meta(tmp_path / "exp", "settings")["tasks"]) == 2  # the store is untouched


def test_experiment_dir_that_is_a_file_or_lies_under_one(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"file: is a file, not a directory"):
        _run(tmp_path / "file")
    with pytest.raises(UserError, match=r"cannot create it: .*file is a file, not a directory"):
        _run(tmp_path / "file" / "exp")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_unwritable_experiment_dir(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(UserError, match="not writable"):
        _run(tmp_path / "ro" / "exp")


# --- Also: a smaller budget on resume ------------------------------------------------------------

def test_resume_with_a_smaller_budget_keeps_the_recorded_one(tmp_path):
    _run(tmp_path / "exp", trials_per_task=3)
    _run(tmp_path / "exp", trials_per_task=1)
    assert _meta(tmp_path / "exp", SETTINGS_KEY)["trials_per_task"] == 3


# --- The CLI: refusals in one line, before modules are built or TensorFlow imported ------------

def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "run_experiment.py"), *args],
                          capture_output=True, text=True, env=_env(), timeout=HANG_GUARD_S, cwd=cwd)


def _one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory, shared_data_dir) -> Path:
    """Real rows of sms_spam and a real module of the 2000 most frequent GloVe words."""
    root = tmp_path_factory.mktemp("safety")
    write_task_sample(shared_data_dir, "sms_spam", 200, root / "sms_spam.csv")
    write_glove2k(shared_data_dir, root / "glove2k")
    (root / "not_a_module").mkdir()
    return root


def test_cli_refuses_bad_places_and_flags_before_building_modules(cli_dir, tmp_path):
    empty_cache = f"--cache_dir={tmp_path / 'cache'}"  # a run here would build modules first
    task = f"--tasks={cli_dir / 'sms_spam.csv'},"  # the trailing comma is ignored
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    (tmp_path / "locked").mkdir()
    cases = [
        ([f"--experiment_dir={tmp_path}"], "not empty and not an experiment directory"),
        ([f"--experiment_dir={tmp_path / 'file'}"], "is a file, not a directory"),
        ([f"--experiment_dir={tmp_path / 'file' / 'exp'}"], "file is a file, not a directory"),
        ([f"--experiment_dir={tmp_path / 'locked'}"], "another run is using this experiment"),
        (["--learning_rate=inf", f"--experiment_dir={tmp_path / 'a'}"],
         "--learning_rate=inf: the controller learning rate must be a finite number > 0"),
        (["--entropy_weight=nan", f"--experiment_dir={tmp_path / 'b'}"],
         "--entropy_weight=nan: the controller entropy weight must be a finite number >= 0"),
    ]
    with open(tmp_path / "locked" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for extra, message in cases:
            result = _cli("--mode=multitask", task, "--trials=1", empty_cache, *extra)
            assert message in _one_line_error(result), extra
            assert "checking offline modules" not in result.stdout
            assert "unknown task ''" not in result.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "a").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_task_names_and_empty_report(shared_data_dir, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        write_task_sample(shared_data_dir, "subj", 50, tmp_path / folder / "same.csv")
    (tmp_path / "with,comma.csv").write_text((tmp_path / "a" / "same.csv").read_text())
    same_stem = _cli(f"--tasks={tmp_path / 'a' / 'same.csv'},{tmp_path / 'b' / 'same.csv'}",
                     f"--experiment_dir={tmp_path / 'e1'}")
    assert "are both task 'same' (a task is named after its file): give them distinct names" \
        in _one_line_error(same_stem)
    comma = _cli(f"--tasks={tmp_path / 'with,comma.csv'}", f"--experiment_dir={tmp_path / 'e2'}")
    assert "'" + str(tmp_path / "with,comma.csv") + "' holds a comma" in _one_line_error(comma)
    report = _cli("--mode=report", f"--experiment_dir={tmp_path / 'a'}")
    assert "no run to report (no trials.sqlite under it)" in _one_line_error(report)
    assert "report written" not in report.stdout and not (tmp_path / "a" / "report.md").exists()


def test_cli_broken_module_huge_budget_stops_early_and_all_failed_is_not_exit_0(cli_dir, tmp_path):
    common = [f"--tasks={cli_dir / 'sms_spam.csv'}", "--mode=random", "--seed=3",
              "--max_in_flight=1",
              f"--module_handles=glove={cli_dir / 'not_a_module'}"]
    # 10^8 trials: starts at once (lazy schedule) and stops after 3 identical failures.
    stopped = _cli(*common, "--trials=100000000", f"--experiment_dir={tmp_path / 'huge'}")
    line = _one_line_error(stopped)
    assert "the first 3 trials all failed with: ModuleError:" in line
    assert "holds no saved_model.pb" in line and "100000000 trials per task" in stopped.stdout
    assert sqlite3.connect(tmp_path / "huge" / STORE_FILE).execute(
        "SELECT COUNT(*) FROM trials").fetchone()[0] == 0
    # A budget smaller than the hold: its trials are recorded, and the exit code says they failed.
    failed = _cli(*common, "--trials=1", f"--experiment_dir={tmp_path / 'one'}")
    assert "all 1 trials failed or diverged (1 failed (first #0: ModuleError" \
        in _one_line_error(failed, code=1)
    assert "1 trials (1 failed" in failed.stdout and "no completed trial" in failed.stdout


def test_cli_resume_keeps_budget_and_refuses_changed_data(cli_dir, tmp_path):
    data = tmp_path / "sms_spam.csv"
    data.write_bytes((cli_dir / "sms_spam.csv").read_bytes())
    common = [f"--tasks={data}", "--mode=random", "--seed=3", "--max_in_flight=1",
              f"--module_handles=glove={cli_dir / 'glove2k'}", f"--experiment_dir={tmp_path / 'e'}",
              "--notensorboard"]
    first = _cli(*common, "--trials=2")
    assert first.returncode == 0, first.stderr
    smaller = _cli(*common, "--trials=1")
    assert smaller.returncode == 0, smaller.stderr
    assert "note: this run's budget is 2 trials per task; a smaller --trials=1" in smaller.stderr
    assert "resuming: 2/2 trials already finished" in smaller.stderr
    recorded = json.loads(sqlite3.connect(tmp_path / "e" / STORE_FILE).execute(
        "SELECT value FROM meta WHERE key = 'fingerprints'").fetchone()[0])
    assert set(recorded) == {"tasks", "modules"} and set(recorded["modules"]) == {"glove"}
    rows = data.read_text().splitlines()
    data.write_text("\n".join(rows[:-1]) + "\n")  # one row fewer, same path
    changed = _cli(*common, "--trials=2")
    assert "the data of task 'sms_spam' changed since this run started" in _one_line_error(changed)


def test_a_text_run_resumes_after_an_image_module_is_built_not_after_its_module_changed(cli_dir, tmp_path):
    glove, image = tmp_path / "glove", tmp_path / "image_module"
    shutil.copytree(cli_dir / "glove2k", glove)
    image.mkdir()  # an image module of the profile, not built yet
    common = [f"--tasks={cli_dir / 'sms_spam.csv'}", "--mode=random", "--seed=3", "--max_in_flight=1",
              f"--module_handles=glove={glove},mobilenet_v1_025={image}",
              f"--experiment_dir={tmp_path / 'e'}", "--notensorboard"]
    first = _cli(*common, "--trials=1")
    assert first.returncode == 0, first.stderr
    (image / "manifest.json").write_text('{"built": "meanwhile"}')  # no text trial can use it
    resumed = _cli(*common, "--trials=2")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: 1/2 trials already finished" in resumed.stderr
    (glove / "manifest.json").write_text('{"built": "again"}')  # the module the trials use
    changed = _cli(*common, "--trials=3")
    assert "module 'glove' changed since this run started" in _one_line_error(changed)
