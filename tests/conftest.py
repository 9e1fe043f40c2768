"""Shared fixtures: the real datasets directory and tiny real tasks and modules cut from it."""
import csv
import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from automl_transfer import paths  # noqa: E402


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The prepared real datasets (../shared/datasets or $AUTOML_TRANSFER_DATA_DIR)."""
    root = paths.data_dir()
    if not (root / "text").is_dir():
        pytest.fail(f"real datasets not found at {root}: set {paths.DATA_DIR_ENV}")
    return root


@pytest.fixture(scope="session")
def workdir(tmp_path_factory, shared_data_dir) -> Path:
    """The tiny real tasks and module the CLI tests run on (see cli_helpers.py), made once."""
    from cli_helpers import make_workdir
    return make_workdir(tmp_path_factory.mktemp("cli"), shared_data_dir)


def write_glove2k(data_dir: Path, destination: Path) -> Path:
    """Export a real text module of the 2000 most frequent GloVe words to `destination`."""
    from automl_transfer.modules.text_embedding import export_text_module
    glove = data_dir / "embeddings" / "glove-6b-50d-top50k"
    vocab = (glove / "vocab.txt").read_text(encoding="utf-8").splitlines()[:2000]
    export_text_module(str(destination), vocab, np.load(glove / "vectors.npy")[:2000])
    return destination


def write_task_sample(data_dir: Path, task: str, rows: int, destination: Path, seed: int = 0
                      ) -> Path:
    """Write `rows` seeded random rows of a real task to `destination` (CSV: text,label)."""
    with gzip.open(data_dir / "text" / task / "data.csv.gz", "rt", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    picked = np.random.default_rng(seed).choice(len(records), rows, replace=False)
    with open(destination, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([records[i]["text"], records[i]["label"]] for i in picked)
    return destination
