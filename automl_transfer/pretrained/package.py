"""Package a trained controller for shipping: `python -m automl_transfer.pretrained.package
--experiment_dir=E [--name=N]` writes automl_transfer/pretrained/<N>/ (the controller without
its optimizer slots) and its card.json.

It only reads E, and reads a consistent snapshot while a run is still writing there: the
controller folder is copied first, then the store through SQLite's backup API, so the store holds
at least the trials the controller learned from (its checkpoint says how many: `trials_seen`).
The card counts those trials per task. A transfer run that continued a packaged controller
(`--controller_dir` of a folder with a card) adds the trials that controller had seen: its card
lists both stages, and its rebuild command runs them in turn.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from automl_transfer.errors import UserError
from automl_transfer.experiment import CHECKPOINT_FILE, SETTINGS_KEY
from automl_transfer.pretrained import CARD_FILE, ROOT
from automl_transfer.store import STORE_FILE, TrialStore

MAX_BYTES = 5 * 1024 * 1024
CONTROLLER = "controller"
_LEFT_OUT = ("optimizer.npz",)  # a transfer starts a fresh optimizer
_COPY_ATTEMPTS = 3  # the run may swap its controller folder while we copy it


def _copy_controller(experiment_dir: Path, destination: Path) -> None:
    source = experiment_dir / CONTROLLER
    for attempt in range(_COPY_ATTEMPTS):
        shutil.rmtree(destination, ignore_errors=True)
        try:
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns(*_LEFT_OUT))
        except (shutil.Error, FileNotFoundError):
            if attempt + 1 == _COPY_ATTEMPTS:
                raise UserError(f"{source}: cannot copy the controller (is the run swapping it "
                                f"right now? try again)") from None
            continue
        if (destination / CHECKPOINT_FILE).is_file():
            return
        raise UserError(f"{source}: not a complete controller checkpoint ({CHECKPOINT_FILE} is "
                        f"missing)")


def _snapshot_store(experiment_dir: Path, destination: Path) -> None:
    source = sqlite3.connect(f"file:{experiment_dir / STORE_FILE}?mode=ro", uri=True)
    target = sqlite3.connect(str(destination))
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def package(experiment_dir: str | Path, name: str | None = None, root: Path = ROOT) -> Path:
    """Write `<root>/<name>/` (replaced) from a multitask or transfer run in `experiment_dir`;
    returns it."""
    experiment_dir = Path(experiment_dir).expanduser().resolve()
    if not (experiment_dir / STORE_FILE).is_file() or not (experiment_dir / CONTROLLER).is_dir():
        raise UserError(f"{experiment_dir}: not a controller run ({STORE_FILE} and {CONTROLLER}/ "
                        f"are needed)")
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch) / "controller"
        _copy_controller(experiment_dir, staging)
        _snapshot_store(experiment_dir, Path(scratch) / STORE_FILE)
        checkpoint = json.loads((staging / CHECKPOINT_FILE).read_text())
        with TrialStore(Path(scratch) / STORE_FILE) as store:
            settings = store.get_meta(SETTINGS_KEY) or {}
            seen = store.trials_in_commit_order()[:checkpoint["trials_seen"]]
        described = json.loads((staging / "controller.json").read_text())
        name = name or f"{settings.get('mode', 'controller')}{len(described['tasks'])}-" \
                        f"{described['space_fingerprint']}"
        card = _card(name, settings, described, seen, experiment_dir)
        (staging / CARD_FILE).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")
        size = _folder_bytes(staging)
        if size > MAX_BYTES:
            raise UserError(f"the packaged controller takes {size} bytes, more than {MAX_BYTES}")
        target = root / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(staging, target)
    return target


def _rebuild_step(settings: dict[str, Any], name: str, experiment_dir: str,
                  controller_dir: str | None) -> str:
    searcher = settings.get("searcher", {})
    source = f"--controller_dir={controller_dir} " if controller_dir else ""
    return (f"python run_experiment.py --mode={settings.get('mode')} {source}"
            f"--tasks={','.join(settings.get('tasks', []))} "
            f"--trials={settings.get('trials_per_task')} --seed={settings.get('seed')} "
            f"--modules={settings.get('profile')} --preset={searcher.get('preset')} "
            f"--experiment_dir={experiment_dir} && python -m automl_transfer.pretrained.package "
            f"--experiment_dir={experiment_dir} --name={name}")


def _earlier_stages(settings: dict[str, Any], experiment_dir: Path) -> list[dict[str, Any]]:
    """The stages of the packaged controller a transfer run started from (none if it had no
    card). A stage of this very run is left out: packaging it again into the folder it started
    from must not count its trials twice."""
    source = settings.get("searcher", {}).get("transferred_from") or {}
    path = Path(source.get("directory", "")) / CARD_FILE
    if not source or not path.is_file():
        return []
    card = json.loads(path.read_text())
    stages = card.get("stages") or [_stage(card, card["trials_seen"], card["rebuild_command"])]
    return [stage for stage in stages if stage["experiment_dir"] != str(experiment_dir)]


def _stage(card: dict[str, Any], trials_seen: dict[str, int], rebuild: str) -> dict[str, Any]:
    """One run of a chain. `trials_scheduled` beside `trials_seen_total` says whether it was
    packaged before its budget ended (rebuilding it then means stopping after that many)."""
    budget = card.get("trials_per_task_budget")
    return {"name": card.get("name"), "created": card.get("created"), "trials_seen": trials_seen,
            "trials_seen_total": sum(trials_seen.values()),
            "trials_scheduled": budget * len(trials_seen) if budget else None,
            "last_trial_id": card.get("last_trial_id"), "trials_per_task_budget": budget,
            "rebuild_command": rebuild, "experiment_dir": card.get("experiment_dir")}


def _card(name: str, settings: dict[str, Any], described: dict[str, Any], seen: Sequence,
          experiment_dir: Path) -> dict[str, Any]:
    tasks = list(described["tasks"])
    per_task = collections.Counter(trial.task for trial in seen)
    stages = _earlier_stages(settings, experiment_dir)
    # A continued controller is rebuilt by rebuilding its source, then continuing from where
    # that rebuild packages it.
    source_dir = f"automl_transfer/pretrained/{stages[-1]['name']}" if stages else None
    step = _rebuild_step(settings, name, f"EXPERIMENT_DIR_{len(stages) + 1}" if stages
                         else "EXPERIMENT_DIR", source_dir)
    card = {
        "name": name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tasks": tasks,
        "last_trial_id": max((trial.trial_id for trial in seen), default=None),
        "trials_per_task_budget": settings.get("trials_per_task"),
        "space_fingerprint": described["space_fingerprint"],
        "modules": next(d["options"] for d in described["space"] if d["name"] == "module"),
        "module_profile": settings.get("profile"),
        "settings": {key: value for key, value in settings.items() if key != "sources"},
        "experiment_dir": str(experiment_dir),
    }
    this_stage = _stage(card, {task: per_task.get(task, 0) for task in tasks}, step)
    for stage in stages:
        per_task.update(stage["trials_seen"])
    card["trials_seen"] = {task: per_task.get(task, 0) for task in tasks}
    card["trials_seen_total"] = sum(card["trials_seen"].values())
    card["rebuild_command"] = " && ".join(stage["rebuild_command"] for stage in stages + [this_stage])
    if stages:
        card["stages"] = stages + [this_stage]
    return card


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m automl_transfer.pretrained.package",
        description="Copy a multitask or transfer run's controller into "
                    "automl_transfer/pretrained/<name>/ "
                    "with a card.json (tasks and trials seen, settings, space fingerprint, "
                    "module profile, rebuild command, date). Reads the run only.")
    parser.add_argument("--experiment_dir", required=True,
                        help="the multitask or transfer run (holds trials.sqlite and "
                        "controller/); a transfer run from a packaged controller adds the "
                        "trials that one saw, as a second stage on the card")
    parser.add_argument("--name", help="folder name (default: <mode><tasks>-<space fingerprint>)")
    parser.add_argument("--root", default=str(ROOT), help="where the folder goes (default: the "
                        "package's pretrained/)")
    args = parser.parse_args(argv)
    try:
        target = package(args.experiment_dir, args.name, Path(args.root))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = json.loads((target / CARD_FILE).read_text())
    print(f"packaged {target} ({_folder_bytes(target)} bytes): {card['trials_seen_total']} "
          f"trials over {len(card['tasks'])} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
