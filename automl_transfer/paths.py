"""Where data, built modules and experiments live: flags first, then environment, then defaults.

Data and caches never go into git; the defaults point outside the package.
"""
import os
from pathlib import Path

DATA_DIR_ENV = "AUTOML_TRANSFER_DATA_DIR"
CACHE_DIR_ENV = "AUTOML_TRANSFER_CACHE_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "datasets"


def data_dir(flag_value: str | None = None) -> Path:
    """The datasets root (holds text/, embeddings/, corpora/): --data_dir, $AUTOML_TRANSFER_DATA_DIR,
    else ../shared/datasets beside the checkout."""
    chosen = flag_value or os.environ.get(DATA_DIR_ENV) or str(_DEFAULT_DATA_DIR)
    return Path(chosen).expanduser().resolve()


def cache_dir(flag_value: str | None = None) -> Path:
    """Root for built modules and other derived files: --cache_dir, $AUTOML_TRANSFER_CACHE_DIR,
    else $XDG_CACHE_HOME/automl_transfer (~/.cache/automl_transfer)."""
    if flag_value or os.environ.get(CACHE_DIR_ENV):
        return Path(flag_value or os.environ[CACHE_DIR_ENV]).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().resolve() / "automl_transfer"
