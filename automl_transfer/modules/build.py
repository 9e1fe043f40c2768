"""Build the offline text modules into the cache directory: `python -m automl_transfer.modules.build`.

Each slot of the offline profile in hub_modules.yaml is either a published table imported from
<data_dir>/embeddings or a word2vec table trained here on <data_dir>/corpora, exported as our
TF-Hub-format text module. A module counts as built only when its manifest.json exists; it is
written into a temporary directory and renamed into place, so an interrupted build leaves nothing
that looks finished, and re-running reuses what is already built. Builds into one cache directory
take turns (a file lock): several runs or cluster workers starting at once on a fresh cache build
each module once, the others wait and reuse it.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from automl_transfer import cli_process, paths

if __name__ == "__main__":  # quiet TensorFlow (unless --verbose) before the imports below load it
    cli_process.configure_tensorflow_logging("--verbose" in sys.argv[1:])
    cli_process.import_tensorflow()

import tensorflow as tf  # noqa: E402 (after the quiet set-up above)

from automl_transfer.errors import ModuleError, UserError
from automl_transfer.modules import corpora, image_build, registry, word2vec
from automl_transfer.modules.loading import MANIFEST
from automl_transfer.modules.pretrained import load_pretrained_table
from automl_transfer.modules.text_embedding import export_text_module

Log = Callable[[str], Any]

LOCK_FILE = "modules/.build.lock"  # under the cache directory
# Bump when what a recipe produces changes (text normalisation, vocabulary rules, export format):
# modules built by older code then no longer count as built and are rebuilt, not silently reused.
BUILD_FORMAT = 2


def _selected(names: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """Build recipes of the asked-for offline modules (all by default), in yaml order."""
    recipes = registry.build_recipes("offline")
    unknown = [n for n in names or () if n not in recipes]
    if unknown:
        raise ModuleError(f"unknown offline module {', '.join(map(repr, unknown))}; "
                          f"known modules: {', '.join(recipes)}")
    return {n: r for n, r in recipes.items() if names is None or n in names}


def read_manifest(module_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of a finished build, or None when the directory is not a finished build."""
    try:
        return json.loads((Path(module_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stale_reason(manifest: dict[str, Any], recipe: dict[str, Any]) -> str | None:
    """Why a finished build no longer matches what this code would build; None if it does."""
    if manifest.get("build_format") != BUILD_FORMAT:
        old = manifest.get("build_format", 1)
        return f"built by an older version (format {old}, now {BUILD_FORMAT})"
    if manifest.get("recipe") != recipe:
        return "its recipe in hub_modules.yaml changed"
    return None


def _damage(module_dir: str | Path, manifest: dict[str, Any]) -> str | None:
    """Why a finished build cannot be used as it is (a truncated or unreadable file); None if its
    files have the size recorded at build time and every variable reads back."""
    module_dir = Path(module_dir)
    expected = manifest.get("size_bytes")
    actual = _dir_size(module_dir) - (module_dir / MANIFEST).stat().st_size
    if expected is not None and actual != expected:
        return f"damaged ({actual} bytes on disk, {expected} when built)"
    try:
        reader = tf.train.load_checkpoint(str(module_dir / "variables" / "variables"))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as err:  # IndexError: truncated
        return f"damaged (variables unreadable: {(str(err).strip().splitlines() or [''])[0]})"
    return None


def _make_table(recipe: dict[str, Any], dim: int, data_dir: Path,
                corpus_cache: dict[str, corpora.Sentences]) -> tuple[list[str], np.ndarray, str]:
    """(vocabulary, table, description of the source text) for one recipe."""
    source = recipe["source"]
    if source == "pretrained":
        vocab, table = load_pretrained_table(data_dir / recipe["path"])
        return vocab, table, recipe["path"]
    corpus = recipe["corpus"]
    if corpus not in corpora.CORPORA:
        raise UserError(f"{registry.REGISTRY_FILE}: unknown corpus {corpus!r}")
    if corpus not in corpus_cache:
        corpus_cache[corpus] = corpora.CORPORA[corpus](data_dir)
    vocab, table = word2vec.train_table(corpus_cache[corpus], source, dim, int(recipe["epochs"]),
                                        int(recipe["min_count"]), int(recipe["window"]))
    if recipe.get("normalise"):
        table = word2vec.centre_and_normalise(table)
    return vocab, table, corpora.CORPUS_SOURCES[corpus]


def _dir_size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def _export_text(staging: Path, spec: registry.ModuleSpec, recipe: dict[str, Any], data_dir: Path,
                 corpus_cache: dict[str, corpora.Sentences]) -> dict[str, Any]:
    """Write a text module into `staging`; its manifest fields."""
    vocab, table, corpus = _make_table(recipe, spec.dim, data_dir, corpus_cache)
    if table.shape[1] != spec.dim:
        raise ModuleError(f"module {spec.name!r}: table has dim {table.shape[1]}, "
                          f"hub_modules.yaml says {spec.dim}")
    export_text_module(str(staging), vocab, table)
    return {"source": recipe["source"], "corpus": corpus, "language": spec.language,
            "vocab_size": len(vocab), "dim": int(table.shape[1])}


def _build_one(spec: registry.ModuleSpec, recipe: dict[str, Any], data_dir: Path,
               corpus_cache: dict[str, corpora.Sentences]) -> dict[str, Any]:
    """Export one module into a temporary sibling directory, then rename it into place."""
    start = time.perf_counter()
    target = Path(spec.handle)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    if recipe["source"] in image_build.SOURCES:
        details = image_build.export(staging, spec, recipe, data_dir)
    else:
        details = _export_text(staging, spec, recipe, data_dir, corpus_cache)
    manifest = {"name": spec.name, **details, "recipe": recipe, "build_format": BUILD_FORMAT,
                "build_seconds": round(time.perf_counter() - start, 2)}
    manifest["size_bytes"] = _dir_size(staging)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if target.exists():  # --force, or a directory left without a manifest
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.rename(target, old)
        shutil.rmtree(old)
    os.rename(staging, target)
    return manifest


@contextlib.contextmanager
def build_lock(cache_dir: str | Path | None, log: Log = print) -> Iterator[None]:
    """Hold the cache directory's build lock, saying so when another process holds it first (the
    kernel releases it when a holder dies, so a killed build never blocks the next one)."""
    path = paths.cache_dir(str(cache_dir) if cache_dir is not None else None) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process building modules in {path.parent} ...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_offline_modules(data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                          names: Sequence[str] | None = None, force: bool = False,
                          log: Log = print) -> list[dict[str, Any]]:
    """Build (or reuse) the offline modules; one manifest dict per module, in yaml order. Takes
    the cache's build lock first, so what another process built meanwhile is reused."""
    with build_lock(cache_dir, log):
        return _build_locked(data_dir, cache_dir, names, force, log)


def _build_locked(data_dir: str | Path | None, cache_dir: str | Path | None,
                  names: Sequence[str] | None, force: bool, log: Log) -> list[dict[str, Any]]:
    data_root = paths.data_dir(str(data_dir) if data_dir is not None else None)
    specs = registry.load_registry("offline", cache_dir)
    recipes = _selected(names)
    corpus_cache: dict[str, corpora.Sentences] = {}
    manifests = []
    for name, recipe in recipes.items():
        spec = specs[name]
        Path(spec.handle).parent.mkdir(parents=True, exist_ok=True)
        manifest = None if force else read_manifest(spec.handle)
        stale = None if manifest is None else (_stale_reason(manifest, recipe)
                                               or _damage(spec.handle, manifest))
        if manifest is not None and stale is None:
            log(f"{name}: already built at {spec.handle} (reused)")
        else:
            if stale is not None:
                log(f"{name}: {stale}: rebuilding")
            log(f"{name}: building ({recipe['source']}) ...")
            manifest = _build_one(spec, recipe, data_root, corpus_cache)
            shape = (f"input {manifest['input_size']} px -> {manifest['dim']} features"
                     if "input_size" in manifest else f"vocabulary {manifest['vocab_size']} x {manifest['dim']}")
            log(f"{name}: built in {manifest['build_seconds']:.1f} s, {shape}, "
                f"{manifest['size_bytes'] / 2**20:.1f} MiB at {spec.handle}")
        manifests.append(manifest)
    return manifests


def ensure_offline_modules(data_dir: str | Path | None = None,
                           cache_dir: str | Path | None = None,
                           names: Sequence[str] | None = None, log: Log = print) -> None:
    """Build only the offline modules that are missing (what an experiment calls before it runs)."""
    build_offline_modules(data_dir, cache_dir, names, force=False, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m automl_transfer.modules.build",
        description="Build the offline text-embedding modules of hub_modules.yaml into "
                    "<cache_dir>/modules/<name>/ (TF-Hub SavedModels). Modules already built "
                    "(with a manifest.json) are reused unless --force.")
    parser.add_argument("--data_dir", help="datasets root holding embeddings/ and corpora/ "
                        f"(default: ${paths.DATA_DIR_ENV} or ../shared/datasets)")
    parser.add_argument("--cache_dir", help="where modules/<name>/ are written "
                        f"(default: ${paths.CACHE_DIR_ENV} or ~/.cache/automl_transfer)")
    parser.add_argument("--modules", help="comma-separated module names (default: all): "
                        + ", ".join(registry.build_recipes("offline")))
    parser.add_argument("--force", action="store_true", help="rebuild modules already built")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.modules.split(",") if n.strip()] if args.modules else None
    start = time.perf_counter()
    try:
        manifests = build_offline_modules(args.data_dir, args.cache_dir, names, args.force)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(manifests)} module(s) ready in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
