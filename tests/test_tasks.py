"""Task registry, loading, splitting and bad-input errors, on real rows cut from the shared datasets."""
import csv
import gzip
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from automl_transfer import tasks
from automl_transfer.errors import DataError, UserError

CSV_DEFAULT_FIELD_LIMIT = 131_072


def _read_real(data_dir: Path, name: str) -> list[list[str]]:
    """All [text, label, split] rows of a real task, read independently of the loader."""
    csv.field_size_limit(2**31 - 1)
    with gzip.open(data_dir / "text" / name / "data.csv.gz", "rt", encoding="utf-8", newline="") as f:
        return list(csv.reader(f))[1:]


def _write(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("text", "label", "split"),
           encoding: str = "utf-8") -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding=encoding, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def sms_rows(shared_data_dir):
    """The first 300 real SMS Spam rows: both classes, no split, some non-ASCII Latin-1 text."""
    return _read_real(shared_data_dir, "sms_spam")[:300]


@pytest.fixture(scope="module")
def news_rows(shared_data_dir):
    """Real News Aggregator rows from each source split: 200 train, 30 valid, 30 test."""
    rows = _read_real(shared_data_dir, "news_aggregator")
    by_split = {s: [r for r in rows if r[2] == s] for s in tasks.SPLITS}
    return by_split["train"][:200] + by_split["valid"][:30] + by_split["test"][:30]


def _digest(task: tasks.Task) -> str:
    h = hashlib.sha256()
    for split in (task.train, task.valid, task.test):
        h.update("\x1e".join(split.texts).encode())
        h.update(split.labels.tobytes())
    return h.hexdigest()


# --- registry -------------------------------------------------------------------------------

def test_registry_describes_every_shared_task(shared_data_dir):
    on_disk = {p.parent.name for p in (shared_data_dir / "text").glob("*/data.csv.gz")}
    reg = {name: info for name, info in tasks.registry().items() if info.modality == "text"}
    assert set(reg) == on_disk and len(reg) == 17
    for name, info in reg.items():
        assert info.name == name and info.language == "en" and info.modality == "text"
        assert info.num_classes >= 2 and info.source and info.license


def test_all_registry_tasks_load_with_documented_splits(shared_data_dir):
    """The one full load of all 17 tasks (about 1.5 s here): sizes follow the split rule."""
    start = time.perf_counter()
    loaded = {name: tasks.load_task(name, shared_data_dir) for name, info in tasks.registry().items()
              if info.modality == "text"}
    elapsed = time.perf_counter() - start
    for name, task in loaded.items():
        info = tasks.registry()[name]
        rows = _read_real(shared_data_dir, name)
        sizes = (len(task.train), len(task.valid), len(task.test))
        assert sum(sizes) == len(rows), name
        assert task.num_classes == info.num_classes == len({r[1] for r in rows}), name
        assert (task.modality, task.language) == (info.modality, info.language)
        assert Path(task.source) == shared_data_dir / "text" / name / "data.csv.gz"
        given = {r[2] for r in rows}
        if given == {""}:
            assert sizes[1] == sizes[2] == len(rows) // 10, name
        elif given == {"train", "test"}:
            n_train = sum(r[2] == "train" for r in rows)
            assert sizes == (n_train - n_train // 10, n_train // 10, len(rows) - n_train), name
    assert (len(loaded["sst2"].train), len(loaded["sst2"].valid), len(loaded["sst2"].test)) == (
        67_349, 872, 1_821)
    assert (len(loaded["imdb"].train), len(loaded["imdb"].valid), len(loaded["imdb"].test)) == (
        22_500, 2_500, 25_000)
    longest = max(len(t) for t in loaded["newsgroups20"].train.texts + loaded["newsgroups20"].test.texts)
    assert longest > CSV_DEFAULT_FIELD_LIMIT
    print(f"loaded all 17 tasks in {elapsed:.2f} s")


# --- splits and labels ------------------------------------------------------------------------

def test_sms_spam_full_is_split_80_10_10_and_deterministic(shared_data_dir):
    rows = _read_real(shared_data_dir, "sms_spam")
    task = tasks.load_task("sms_spam", shared_data_dir, seed=0)
    assert (len(task.train), len(task.valid), len(task.test)) == (4_460, 557, 557)
    assert task.label_names == ("ham", "spam")
    all_texts = task.train.texts + task.valid.texts + task.test.texts
    assert sorted(all_texts) == sorted(r[0] for r in rows)  # disjoint and complete
    assert tasks.load_task("sms_spam", shared_data_dir, seed=0) is task  # memoised
    other = tasks.load_task("sms_spam", shared_data_dir, seed=1)
    assert set(other.test.texts) != set(task.test.texts)
    assert (len(other.train), len(other.valid), len(other.test)) == (4_460, 557, 557)


def test_split_does_not_depend_on_hash_seed(shared_data_dir):
    digests = set()
    for hash_seed in ("1", "2"):
        code = ("import hashlib; from automl_transfer import tasks; t = tasks.load_task('sms_spam'); "
                "print(hashlib.sha256('\\x1e'.join(t.test.texts).encode()).hexdigest())")
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(tasks.paths.REPO_ROOT),
                   AUTOML_TRANSFER_DATA_DIR=str(shared_data_dir))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    in_process = tasks.load_task("sms_spam", shared_data_dir)
    assert digests == {hashlib.sha256("\x1e".join(in_process.test.texts).encode()).hexdigest()}


def test_label_ids_follow_sorted_label_strings(tmp_path, news_rows):
    task = tasks.load_task(str(_write(tmp_path / "news.csv", news_rows)))
    assert task.label_names == ("b", "e", "m", "t")
    truth = {r[0]: r[1] for r in news_rows}
    for split in (task.train, task.valid, task.test):
        assert split.labels.dtype == np.int64
        assert [task.label_names[i] for i in split.labels] == [truth[t] for t in split.texts]
    with pytest.raises(ValueError):
        task.train.labels[0] = 1  # cached arrays are read-only


def test_given_train_valid_test_are_kept(tmp_path, news_rows):
    path = _write(tmp_path / "news.csv.gz", news_rows)
    a, b = tasks.load_task(str(path), seed=0), tasks.load_task(str(path), seed=7)
    assert (len(a.train), len(a.valid), len(a.test)) == (200, 30, 30)
    assert a.test.texts == tuple(r[0] for r in news_rows[230:])
    assert _digest(a) == _digest(b)


def test_train_test_only_carves_a_seeded_tenth_of_train(tmp_path, news_rows):
    rows = [[t, label, "test" if s == "valid" else s] for t, label, s in news_rows]
    path = _write(tmp_path / "news.csv", rows)
    task = tasks.load_task(str(path), seed=3)
    assert (len(task.train), len(task.valid), len(task.test)) == (180, 20, 60)
    assert set(task.train.texts) | set(task.valid.texts) == {r[0] for r in rows if r[2] == "train"}
    assert set(task.train.texts).isdisjoint(task.valid.texts)
    assert _digest(tasks.load_task(str(path), seed=3)) == _digest(task)
    assert set(tasks.load_task(str(path), seed=4).valid.texts) != set(task.valid.texts)


def test_user_csv_and_gz_load_alike_with_default_metadata(tmp_path, sms_rows):
    plain = tasks.load_task(str(_write(tmp_path / "my_sms.csv", sms_rows)))
    zipped = tasks.load_task(str(_write(tmp_path / "my_sms.csv.gz", sms_rows)))
    assert (plain.name, plain.modality, plain.language) == ("my_sms", "text", "en")
    assert (len(plain.train), len(plain.valid), len(plain.test)) == (240, 30, 30)
    assert _digest(plain) == _digest(zipped)
    assert plain.source == str((tmp_path / "my_sms.csv").resolve())


def test_no_split_column_means_random_split(tmp_path, sms_rows):
    path = _write(tmp_path / "two_columns.csv", [r[:2] for r in sms_rows], header=("text", "label"))
    task = tasks.load_task(str(path))
    assert (len(task.train), len(task.valid), len(task.test)) == (240, 30, 30)


def test_rewritten_file_is_read_again(tmp_path, sms_rows):
    path = _write(tmp_path / "sms.csv", sms_rows)
    first = tasks.load_task(str(path))
    _write(path, sms_rows[:200])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert len(tasks.load_task(str(path)).train) == 160
    assert len(first.train) == 240


def test_field_longer_than_csv_default_limit_loads(tmp_path, shared_data_dir, sms_rows):
    brown = _read_real(shared_data_dir, "brown")
    long_text = " ".join(r[0] for r in brown[:15])
    assert len(long_text) > CSV_DEFAULT_FIELD_LIMIT
    task = tasks.load_task(str(_write(tmp_path / "long.csv", [[long_text, "ham", ""]] + sms_rows)))
    texts = task.train.texts + task.valid.texts + task.test.texts
    assert long_text in texts


# --- resolving names and paths ---------------------------------------------------------------

def test_resolve_task_path_layouts(tmp_path, shared_data_dir, sms_rows):
    assert tasks.resolve_task_path("subj", shared_data_dir) == shared_data_dir / "text/subj/data.csv.gz"
    flat = tmp_path / "mine"
    flat.mkdir()
    _write(flat / "data.csv.gz", sms_rows)
    assert tasks.resolve_task_path("mine", tmp_path) == flat / "data.csv.gz"
    assert tasks.load_task("mine", tmp_path).name == "mine"
    user = _write(tmp_path / "user.csv", sms_rows)
    assert tasks.resolve_task_path(str(user)) == user.resolve()


# --- bad input: one line naming the file and the problem --------------------------------------

def _error(name_or_path: str, data_dir=None) -> str:
    with pytest.raises(DataError) as info:
        tasks.load_task(name_or_path, data_dir)
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "absent.csv"
    message = _error(str(path))
    assert str(path) in message and "not found" in message


@pytest.mark.parametrize("header,missing", [(("text", "split"), "label"), (("label", "split"), "text")])
def test_missing_column(tmp_path, sms_rows, header, missing):
    path = _write(tmp_path / "cols.csv", [r[:2] for r in sms_rows], header=header)
    message = _error(str(path))
    assert str(path) in message and f"missing column {missing!r}" in message


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    blank_lines = tmp_path / "blank.csv"
    blank_lines.write_bytes(b"\n\n")
    header_only = _write(tmp_path / "header.csv.gz", [])
    for path in (empty, blank_lines, header_only):
        message = _error(str(path))
        assert str(path) in message and "empty file" in message


def test_single_class(tmp_path, sms_rows):
    path = _write(tmp_path / "ham.csv", [r for r in sms_rows if r[1] == "ham"])
    message = _error(str(path))
    assert str(path) in message and "only one class ('ham')" in message


@pytest.mark.parametrize("filename", ["latin1.csv", "latin1.csv.gz"])
def test_not_utf8(tmp_path, sms_rows, filename):
    latin1 = [r for r in sms_rows if all(ord(c) < 256 for c in r[0])]
    assert any(not r[0].isascii() for r in latin1)  # real text whose Latin-1 bytes are not UTF-8
    path = _write(tmp_path / filename, latin1, encoding="latin-1")
    first_bad_line = 2 + next(i for i, r in enumerate(latin1) if not r[0].isascii())
    message = _error(str(path))
    assert str(path) in message and "not UTF-8" in message
    assert f"on line {first_bad_line})" in message


def test_unknown_task_name_lists_known_ones(shared_data_dir):
    message = _error("no_such_task", shared_data_dir)
    assert str(shared_data_dir / "text" / "no_such_task" / "data.csv.gz") in message
    assert "unknown task 'no_such_task'" in message and "sms_spam" in message


def test_registered_task_missing_from_data_dir(tmp_path):
    message = _error("sms_spam", tmp_path)
    assert str(tmp_path / "text" / "sms_spam" / "data.csv.gz") in message
    assert "registered task 'sms_spam'" in message


def test_mixed_split_values(tmp_path, sms_rows):
    rows = [[t, label, "train" if i < 100 else ""] for i, (t, label, _) in enumerate(sms_rows)]
    path = _write(tmp_path / "mixed.csv", rows)
    message = _error(str(path))
    assert str(path) in message and "mixes empty (200 rows) and set (100 rows)" in message


def test_invalid_split_value(tmp_path, news_rows):
    rows = [[t, label, "dev" if s == "valid" else s] for t, label, s in news_rows]
    path = _write(tmp_path / "dev.csv", rows)
    message = _error(str(path))
    assert str(path) in message and "data row 201 has split 'dev'" in message


def test_split_without_test_rows(tmp_path, news_rows):
    path = _write(tmp_path / "trainonly.csv", [[t, label, "train"] for t, label, _ in news_rows])
    message = _error(str(path))
    assert str(path) in message and "has only train" in message


def test_row_with_wrong_field_count(tmp_path, sms_rows):
    path = _write(tmp_path / "ragged.csv", sms_rows[:10] + [sms_rows[10][:2]] + sms_rows[11:])
    message = _error(str(path))
    assert str(path) in message and "line 12 has 2 fields, the header has 3" in message


def test_not_gzip_and_wrong_extension(tmp_path, sms_rows):
    fake = tmp_path / "fake.csv.gz"
    _write(tmp_path / "plain.csv", sms_rows).rename(fake)
    message = _error(str(fake))
    assert str(fake) in message and "cannot read" in message
    tsv = _write(tmp_path / "data.tsv", sms_rows)
    message = _error(str(tsv))
    assert str(tsv) in message and "expected a .csv or .csv.gz" in message


def test_empty_label(tmp_path, sms_rows):
    path = _write(tmp_path / "nolabel.csv", sms_rows[:5] + [[sms_rows[5][0], " ", ""]] + sms_rows[6:])
    message = _error(str(path))
    assert str(path) in message and "line 7 has an empty label" in message


def test_too_few_rows_to_split(tmp_path, sms_rows):
    rows = [r for r in sms_rows if r[1] == "ham"][:5] + [r for r in sms_rows if r[1] == "spam"][:4]
    path = _write(tmp_path / "nine.csv", rows)
    message = _error(str(path))
    assert str(path) in message and "9 rows are too few" in message
