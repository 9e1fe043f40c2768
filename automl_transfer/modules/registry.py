"""The module registry: hub_modules.yaml, read into one immutable ModuleSpec per module.

The yaml is the single list of modules the search space can choose from. Offline handles are
relative paths under the cache directory (where `python -m automl_transfer.modules.build` writes
them); remote handles (TF-Hub / Kaggle URLs) are kept as they are, so one loading path serves both.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from automl_transfer import paths
from automl_transfer.errors import UserError

REGISTRY_FILE = paths.REPO_ROOT / "hub_modules.yaml"
DEFAULT_PROFILE = "offline"
_FIELDS = ("handle", "modality", "language", "dim", "description")


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """One embedding module: where to load it from and what it produces."""

    name: str
    handle: str
    modality: str
    language: str
    dim: int
    description: str


def is_remote(handle: str) -> bool:
    """True for a TF-Hub / Kaggle URL, False for a local SavedModel directory."""
    return "://" in handle


def _profiles() -> dict[str, dict[str, dict[str, Any]]]:
    """Every profile's raw yaml entries."""
    try:
        document = yaml.safe_load(REGISTRY_FILE.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"{REGISTRY_FILE}: cannot read the module registry ({err})") from None
    return (document or {}).get("profiles") or {}


def _profile_entries(profile: str) -> dict[str, dict[str, Any]]:
    """The raw yaml entries of one profile, in file order."""
    profiles = _profiles()
    if profile not in profiles:
        raise UserError(f"{REGISTRY_FILE}: unknown module profile {profile!r}; "
                        f"known profiles: {', '.join(profiles)}")
    return profiles[profile]


def load_registry(profile: str = DEFAULT_PROFILE,
                  cache_dir: str | Path | None = None) -> dict[str, ModuleSpec]:
    """Modules of `profile`, ordered as in the yaml; local handles made absolute under cache_dir."""
    root = paths.cache_dir(str(cache_dir) if cache_dir is not None else None)
    specs = {}
    for name, entry in _profile_entries(profile).items():
        missing = [f for f in _FIELDS if f not in (entry or {})]
        if missing:
            raise UserError(f"{REGISTRY_FILE}: module {name!r} lacks {', '.join(missing)}")
        handle = str(entry["handle"])
        if not is_remote(handle):
            handle = str(root / handle)
        specs[name] = ModuleSpec(name=name, handle=handle, modality=str(entry["modality"]),
                                 language=str(entry["language"]), dim=int(entry["dim"]),
                                 description=str(entry["description"]))
    return specs


def trains_when_fine_tuned(module: str, fine_tune_images: bool = False) -> bool:
    """False for a registered image module of a run without --fine_tune_images: its fine_tune
    decision trains the frozen path (docs/method.md), and logs and reports say so rather than
    "fine-tuned"."""
    return fine_tune_images or all(((entries or {}).get(module) or {}).get("modality") != "image"
               for entries in _profiles().values())


def module_names(profile: str = DEFAULT_PROFILE) -> list[str]:
    """Names of the modules of `profile`, in yaml order (the search space's choices)."""
    return list(_profile_entries(profile))


def build_recipes(profile: str = DEFAULT_PROFILE) -> dict[str, dict[str, Any]]:
    """How the offline builder makes each module that has a `build` entry (name -> recipe)."""
    return {name: dict(entry["build"]) for name, entry in _profile_entries(profile).items()
            if entry.get("build")}
