"""Shared fixtures: the real datasets directory and tiny real tasks and modules cut from it."""
import os
import sys
from pathlib import Path

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
