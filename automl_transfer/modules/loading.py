"""Loading modules through tensorflow_hub, so local directories and TF-Hub handles share one path.

Loaded modules are memoised per process: a search loads each module once, not once per trial.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tensorflow as tf
import tensorflow_hub as hub

from automl_transfer.errors import ModuleError
from automl_transfer.modules import registry

MANIFEST = "manifest.json"
BUILD_COMMAND = "python -m automl_transfer.modules.build"
_LOADED: dict[str, Any] = {}


def load_module(handle: str) -> Any:
    """`hub.load(handle)`, memoised by handle; an unloadable handle raises a one-line ModuleError."""
    if handle in _LOADED:
        return _LOADED[handle]
    if not registry.is_remote(handle):
        if not os.path.isdir(handle):
            raise ModuleError(f"module directory {handle} does not exist")
        if not os.path.isfile(os.path.join(handle, "saved_model.pb")):
            raise ModuleError(f"module directory {handle} holds no saved_model.pb")
    try:
        module = hub.load(handle)
    except (OSError, ValueError, IndexError, KeyError, tf.errors.OpError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModuleError(f"cannot load module {handle}: {first_line}") from None
    _LOADED[handle] = module
    return module


def get_module(name: str, profile: str = registry.DEFAULT_PROFILE,
               cache_dir: str | Path | None = None) -> Any:
    """The loaded module called `name` in `profile`; says how to build an offline one not built."""
    specs = registry.load_registry(profile, cache_dir)
    if name not in specs:
        raise ModuleError(f"unknown module {name!r} in profile {profile!r}; "
                          f"known modules: {', '.join(specs)}")
    handle = specs[name].handle
    if not registry.is_remote(handle) and not os.path.isfile(os.path.join(handle, MANIFEST)):
        cache_flag = f" --cache_dir {cache_dir}" if cache_dir is not None else ""
        raise ModuleError(f"module {name!r} is not built yet at {handle}: run "
                          f"`{BUILD_COMMAND} --modules {name}{cache_flag}`")
    return load_module(handle)
