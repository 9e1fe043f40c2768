"""Fingerprints of what a run's results depend on beyond its settings: each task's data file and
each module its trials can use (those of its tasks' modalities). The store records them at the
start of a run; a resume whose task file or module changed (same path, other rows, a rebuilt
module) is refused instead of mixing two datasets under one task.

Cheap by design: a task is fingerprinted by the sha256 of its file's bytes (tens of MB hash in
well under a second; nothing is parsed or tokenised), memoised per process on path, size and
mtime. A local module by its manifest.json (which a rebuild rewrites) or, without one, by its
saved_model.pb and variable index (the index holds a checksum of every tensor); a remote
module by its handle.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from automl_transfer.modules import registry

MANIFEST = "manifest.json"
_CHUNK = 1 << 20
_MODULE_FILES = ("saved_model.pb", os.path.join("variables", "variables.index"))


def task_fingerprint(path: str | Path) -> str:
    """'sha256:<hex>' of the task file's bytes; of a folder task (images), of every file's
    relative path and bytes."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(member.relative_to(path)).encode())
            digest.update(bytes.fromhex(task_fingerprint(member).removeprefix("sha256:")))
        return f"sha256:{digest.hexdigest()}"
    stat = path.stat()
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # cache key only: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def module_fingerprint(handle: str) -> str:
    """'sha256:<hex>' of a local module's manifest (or SavedModel graph and variable index);
    'handle:<handle>' for a remote one."""
    if registry.is_remote(handle):
        return f"handle:{handle}"
    root = Path(handle)
    files = [root / MANIFEST] if (root / MANIFEST).is_file() else [root / f for f in _MODULE_FILES]
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(bytes.fromhex(task_fingerprint(path).removeprefix("sha256:")))
    return f"sha256:{digest.hexdigest()}"


def first_change(recorded: dict[str, dict[str, str]], current: dict[str, dict[str, str]]
                 ) -> str | None:
    """'the data of task 'x' changed (...)' for the first fingerprint recorded earlier that no
    longer matches; None when all match. Kinds or names not recorded yet are not changes."""
    for kind, names in current.items():
        for name, fingerprint in names.items():
            old = recorded.get(kind, {}).get(name)
            if old is not None and old != fingerprint:
                what = f"the data of task {name!r}" if kind == "tasks" else f"module {name!r}"
                return (f"{what} changed since this run started ({_short(old)} recorded, "
                        f"{_short(fingerprint)} now)")
    return None


def _short(fingerprint: str) -> str:
    kind, _, value = fingerprint.partition(":")
    return f"{kind} {value[:12]}" if kind == "sha256" else fingerprint
