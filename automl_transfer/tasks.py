"""Tasks: the registry of real text datasets, and loading one CSV into validated train/valid/test.

A task file is a CSV (optionally gzipped, UTF-8) with columns `text`, `label` and an optional
`split` (train/valid/test, or empty in every row). Split rule, fixed so results are comparable:
- `split` empty everywhere (or no split column): a seeded random 80/10/10 train/valid/test split,
  as in the paper; valid and test get n // 10 rows each, train the rest.
- only train and test given: valid is n_train // 10 rows drawn (seeded) from train.
- train, valid and test given: kept as they are; the seed has no effect.
The draw is `numpy.random.default_rng(seed).permutation` over file row order, so it never depends on
hash randomisation. Within a split, rows keep their file order (trainers shuffle).
Labels become ids in sorted order of the label strings, the same for every split.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import gzip
import io
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from automl_transfer import images, paths
from automl_transfer.errors import DataError

REGISTRY_PATH = paths.REPO_ROOT / "datasets" / "tasks.yaml"
TASK_FILE = "data.csv.gz"
SPLITS = ("train", "valid", "test")
EVAL_FRACTION_DIVISOR = 10  # valid and test are each 1/10 of the rows (train 8/10)
DEFAULT_MODALITY = "text"
DEFAULT_LANGUAGE = "en"
# Python's csv default (131,072 chars) rejects real rows: newsgroups20 holds a 160k-char message.
_FIELD_SIZE_LIMIT = min(sys.maxsize, 2**31 - 1)
_REQUIRED_COLUMNS = ("text", "label")
_CACHE_SIZE = 32
EMPTY_TEXT_WARNING = 0.05  # warn when more than this share of the texts is empty


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split of a task. `labels[i]` is the int64 label id of `texts[i]` (read-only array);
    an image task has no texts and `images[i]` (uint8 [n, h, w, 3]) instead."""

    texts: tuple[str, ...]
    labels: np.ndarray
    images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A loaded classification task. Label id i means `label_names[i]`."""

    name: str
    modality: str
    language: str
    label_names: tuple[str, ...]
    train: Split
    valid: Split
    test: Split
    source: str  # the file it was read from
    warnings: tuple[str, ...] = ()  # one line each: data that loads but may mislead
    cache_dir: Path | None = None  # image tasks: decoded arrays; resized copies, features beside

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """A registry entry (datasets/tasks.yaml): what a task is and where it came from."""

    name: str
    language: str
    modality: str
    num_classes: int
    source: str
    license: str
    path: str = ""  # image tasks: the folder, archive or .npz under the data root
    max_rows: tuple[tuple[str, int], ...] = ()  # image tasks: (split, cap) pairs


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, TaskInfo]:
    """Known tasks by name, read from datasets/tasks.yaml in the repository."""
    with open(REGISTRY_PATH, encoding="utf-8") as f:
        entries = yaml.safe_load(f)["tasks"]
    infos = {}
    for name, entry in entries.items():
        try:
            infos[name] = TaskInfo(name=name, language=entry["language"], modality=entry["modality"],
                                   num_classes=int(entry["num_classes"]), source=entry["source"],
                                   license=entry["license"], path=entry.get("path", ""),
                                   max_rows=tuple(sorted((entry.get("max_rows") or {}).items())))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{REGISTRY_PATH}: task {name!r} has a missing or bad field ({e})") from e
    return infos


def resolve_task_path(name_or_path: str, data_dir: Path | str | None = None) -> Path:
    """The CSV file for a task name (<data_dir>/text/<name>/data.csv.gz or <data_dir>/<name>/...),
    or an existing .csv / .csv.gz path as given. Raises DataError naming what was looked for."""
    given = Path(name_or_path).expanduser()
    if given.is_file() or given.name.endswith((".csv", ".csv.gz")) or len(given.parts) > 1:
        if given.is_dir():
            raise DataError(f"{given}: a directory, not a task file (expected .csv or .csv.gz)")
        if not given.is_file():
            raise DataError(f"{given}: task file not found")
        if not given.name.endswith((".csv", ".csv.gz")):
            raise DataError(f"{given}: not a task file: expected a .csv or .csv.gz file")
        return given.resolve()
    root = paths.data_dir(str(data_dir) if data_dir is not None else None)
    candidates = [root / "text" / name_or_path / TASK_FILE, root / name_or_path / TASK_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = registry()
    if name_or_path in known:
        raise DataError(f"{candidates[0]}: file not found for registered task {name_or_path!r} "
                        f"(set --data_dir or ${paths.DATA_DIR_ENV})")
    raise DataError(f"{candidates[0]}: unknown task {name_or_path!r} (no such file); "
                    f"known tasks: {', '.join(sorted(known))}")


def load_task(name_or_path: str, data_dir: Path | str | None = None, seed: int = 0) -> Task:
    """Load, validate and split a task. Memoised per process on (file, its mtime and size, seed).
    Image tasks (a registered image task, a folder, .tar.gz or .npz) load through images.py."""
    image_path = _image_source(name_or_path, data_dir)
    if image_path is not None:
        stat = image_path.stat()
        return _load_images_cached(str(image_path), name_or_path, stat.st_mtime_ns, stat.st_size, int(seed))
    path = resolve_task_path(name_or_path, data_dir)
    stat = path.stat()
    return _load_cached(str(path), stat.st_mtime_ns, stat.st_size, int(seed))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_cached(path_str: str, mtime_ns: int, size: int, seed: int) -> Task:
    del mtime_ns, size  # cache key only: a rewritten file is read again
    path = Path(path_str)
    texts, label_strings, split_values = _read_rows(path)
    label_names = tuple(sorted(set(label_strings)))
    if len(label_names) < 2:
        raise DataError(f"{path}: only one class ({label_names[0]!r}); a task needs at least 2")
    label_ids = {name: i for i, name in enumerate(label_names)}
    labels = np.fromiter((label_ids[s] for s in label_strings), dtype=np.int64, count=len(texts))
    indices = _split_indices(path, split_values, seed)

    def make(split: str) -> Split:
        idx = indices[split]
        split_labels = labels[idx]
        split_labels.flags.writeable = False  # shared by every caller of the cache
        return Split(texts=tuple(texts[i] for i in idx), labels=split_labels)

    splits = {split: make(split) for split in SPLITS}
    _check_scorable(path, splits, label_names)
    name = _task_name(path)
    info = registry().get(name)
    return Task(name=name,
                modality=info.modality if info else DEFAULT_MODALITY,
                language=info.language if info else DEFAULT_LANGUAGE,
                label_names=label_names, train=splits["train"], valid=splits["valid"],
                test=splits["test"], source=str(path),
                warnings=_warnings(path, texts, splits, label_names))


def _check_scorable(path: Path, splits: dict[str, Split], label_names: tuple[str, ...]) -> None:
    """A label the model never sees in train cannot be predicted: its rows would silently score 0.

    Raises:
        DataError: naming the first such label and the split it is in.
    """
    trained = set(splits["train"].labels.tolist())
    for split in ("test", "valid"):
        unseen = sorted(set(splits[split].labels.tolist()) - trained)
        if unseen:
            rows = int(np.sum(splits[split].labels == unseen[0]))
            raise DataError(f"{path}: label {label_names[unseen[0]]!r} is only in the {split} "
                            f"split ({rows} rows), never in train, so it cannot be learned: add "
                            f"train rows with it or drop those rows")


def _warnings(path: Path, texts: list[str], splits: dict[str, Split],
              label_names: tuple[str, ...]) -> tuple[str, ...]:
    """Data that can be scored but whose scores may mislead, one line each."""
    found = []
    test_classes = sorted(set(splits["test"].labels.tolist()))
    if len(test_classes) == 1:
        found.append(f"{path}: the test split has one class only ({label_names[test_classes[0]]!r}"
                     f"): test accuracy cannot tell a model from a constant guess")
    by_folded: dict[str, list[str]] = {}
    for name in label_names:
        by_folded.setdefault(name.casefold(), []).append(name)
    for names in by_folded.values():
        if len(names) > 1:
            found.append(f"{path}: labels {' and '.join(map(repr, names))} differ only by case "
                         f"and count as different classes")
    empty = sum(1 for text in texts if not text.strip())
    if empty > len(texts) * EMPTY_TEXT_WARNING:
        found.append(f"{path}: {empty} of {len(texts)} texts are empty "
                     f"({100 * empty / len(texts):.0f}%)")
    return tuple(found)


def task_name(name_or_path: str) -> str:
    """The name a task gets from a registered name or a CSV path (no file is read)."""
    return _task_name(Path(name_or_path))


def _image_source(name_or_path: str, data_dir: Path | str | None) -> Path | None:
    """The image folder/archive/.npz of a registered image task or an image path; else None."""
    info = registry().get(name_or_path)
    if info is not None and info.modality == "image":
        path = paths.data_dir(str(data_dir) if data_dir is not None else None) / info.path
        if not path.exists():
            raise DataError(f"{path}: not found for registered image task {name_or_path!r} "
                            f"(set --data_dir or ${paths.DATA_DIR_ENV})")
        return path
    given = Path(name_or_path).expanduser()
    return given.resolve() if given.exists() and images.is_image_source(given) else None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_images_cached(path_str: str, name_or_path: str, mtime_ns: int, size: int, seed: int) -> Task:
    del mtime_ns, size  # cache key only
    path = Path(path_str)
    info = registry().get(name_or_path)
    name = info.name if info else path.name.removesuffix(".gz").removesuffix(".tar").removesuffix(
        ".tgz").removesuffix(".npz")
    data = images.load_images(path, name, seed, _split_indices, dict(info.max_rows) if info else None)
    splits = {}
    for split in SPLITS:
        labels, pixels = data.labels[split], data.images[split]
        labels.flags.writeable = pixels.flags.writeable = False
        splits[split] = Split(texts=(), labels=labels, images=pixels)
    return Task(name=name, modality="image", language=info.language if info else "none",
                label_names=data.label_names, source=str(path), cache_dir=data.cache_dir, **splits)


def _task_name(path: Path) -> str:
    """<dir>/<name>/data.csv(.gz) -> name; <dir>/<name>.csv(.gz) -> name."""
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    return path.parent.name if stem == "data" else stem


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _read_rows(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Texts, label strings and split values of every row; one-line DataError on bad input."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))
    texts: list[str] = []
    labels: list[str] = []
    splits: list[str] = []
    reader = None
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            rows = _nonblank(reader)
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path}: empty file (no header, no rows)")
            header = [h.strip() for h in header]
            for column in _REQUIRED_COLUMNS:
                if column not in header:
                    raise DataError(f"{path}: missing column {column!r} (header: {','.join(header)})")
            t, l = header.index("text"), header.index("label")
            s = header.index("split") if "split" in header else None
            width = len(header)
            for row in rows:
                if len(row) != width:
                    raise DataError(f"{path}: line {reader.line_num} has {len(row)} fields, "
                                    f"the header has {width}")
                label = row[l].strip()
                if not label:
                    raise DataError(f"{path}: line {reader.line_num} has an empty label")
                texts.append(row[t])
                labels.append(label)
                splits.append(row[s].strip() if s is not None else "")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({_first_bad_byte(path)}); re-save it as UTF-8") from e
    except csv.Error as e:
        line = reader.line_num if reader is not None else 0
        raise DataError(f"{path}: malformed CSV at line {line} ({e})") from e
    except (OSError, EOFError) as e:  # unreadable, not gzip, truncated gzip
        raise DataError(f"{path}: cannot read the file ({e})") from e
    if not texts:
        raise DataError(f"{path}: empty file (a header but no rows)")
    return texts, labels, splits


def _first_bad_byte(path: Path) -> str:
    """Where decoding fails, as a physical line number (the text reader decodes whole chunks)."""
    if path.name.endswith(".gz"):
        with gzip.open(path) as f:
            raw = f.read()
    else:
        raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"byte 0x{raw[e.start]:02x} on line {line}"
    return "undecodable bytes"


def _nonblank(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """Rows, skipping fully blank lines (a trailing newline, a blank line in the middle)."""
    return (row for row in reader if row)


def _split_indices(path: Path, split_values: list[str], seed: int) -> dict[str, np.ndarray]:
    """Row indices of train/valid/test, per the module's split rule."""
    values = np.asarray(split_values, dtype=object)
    present = set(split_values)
    unknown = present - set(SPLITS) - {""}
    if unknown:
        first = next(i for i, v in enumerate(split_values) if v in unknown)
        raise DataError(f"{path}: data row {first + 1} has split {split_values[first]!r}; "
                        f"allowed: {', '.join(SPLITS)} or empty in every row")
    if "" in present and len(present) > 1:
        empty = sum(1 for v in split_values if not v)
        raise DataError(f"{path}: split column mixes empty ({empty} rows) and set "
                        f"({len(split_values) - empty} rows) values; fill it in every row or none")
    rng = np.random.default_rng(seed)
    if present == {""}:
        n = len(split_values)
        n_eval = n // EVAL_FRACTION_DIVISOR
        if n_eval == 0:
            raise DataError(f"{path}: {n} rows are too few for an 80/10/10 split "
                            f"(need at least {EVAL_FRACTION_DIVISOR})")
        order = rng.permutation(n)
        return {"test": np.sort(order[:n_eval]), "valid": np.sort(order[n_eval:2 * n_eval]),
                "train": np.sort(order[2 * n_eval:])}
    given = {split: np.flatnonzero(values == split) for split in SPLITS}
    if present == {"train", "test"}:
        train = given["train"]
        n_valid = len(train) // EVAL_FRACTION_DIVISOR
        if n_valid == 0:
            raise DataError(f"{path}: {len(train)} train rows are too few to carve a validation "
                            f"split (need at least {EVAL_FRACTION_DIVISOR})")
        order = rng.permutation(len(train))
        return {"train": np.sort(train[order[n_valid:]]), "valid": np.sort(train[order[:n_valid]]),
                "test": given["test"]}
    if present == set(SPLITS):
        return given
    raise DataError(f"{path}: split column has only {', '.join(s for s in SPLITS if s in present)}; "
                    f"give train and test (valid optional), or leave it empty in every row")
