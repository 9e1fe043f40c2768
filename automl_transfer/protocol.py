"""The paper's protocol from one config file: multitask pre-training, then random search,
single-task controllers and transferred controllers (and, if listed, TPE) on held-out tasks,
over several seeds. The search space is run_experiment.py's --space, passed to every run.

Every run is an ordinary `run_experiment.py` run in its own folder, so rerunning the protocol
resumes each run where it stopped. Layout under the protocol's directory:
    pretrain/seed<k>/               multitask controller over the pre-training tasks (with
                                    `pretrain_once`, only the first seed's, used by every seed)
    <method>/<task>/seed<k>/        random | tpe | single | transfer on each transfer task
Runs that do not depend on each other go `parallel_runs` at a time (separate processes).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import yaml

from automl_transfer.errors import UserError
from automl_transfer.paths import REPO_ROOT

METHODS = ("random", "tpe", "single", "transfer")
PAPER_METHODS = ("random", "single", "transfer")  # the default: the paper's three


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """What one protocol run does; see configs/protocol.yaml for a documented example."""

    pretrain_tasks: tuple[str, ...]
    transfer_tasks: tuple[str, ...]
    pretrain_trials: int      # per pre-training task
    transfer_trials: int      # per transfer task, for every method
    seeds: tuple[int, ...]
    methods: tuple[str, ...] = PAPER_METHODS
    parallel_runs: int = 1
    # One pre-training (the first seed) serves every seed's transfer, as one shipped controller
    # serves every user: the seeds then measure the transfer's noise, not the pre-training's.
    pretrain_once: bool = False

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ProtocolConfig":
        try:
            values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise UserError(f"{path}: cannot read the protocol config: {err}") from None
        if not isinstance(values, dict):
            raise UserError(f"{path}: a protocol config is a mapping of settings")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise UserError(f"{path}: unknown settings {unknown}; known: {sorted(fields)}")
        try:
            config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as err:
            raise UserError(f"{path}: {err}") from None
        config.validate(path)
        return config

    def validate(self, source: str | Path = "protocol config") -> None:
        if not self.pretrain_tasks or not self.transfer_tasks or not self.seeds:
            raise UserError(f"{source}: pretrain_tasks, transfer_tasks and seeds must be non-empty")
        if not isinstance(self.pretrain_once, bool):
            raise UserError(f"{source}: pretrain_once is true or false, not {self.pretrain_once!r}")
        if min(self.pretrain_trials, self.transfer_trials, self.parallel_runs) < 1:
            raise UserError(f"{source}: trial budgets and parallel_runs must be positive")
        bad = sorted(set(self.methods) - set(METHODS))
        if bad:
            raise UserError(f"{source}: unknown methods {bad}; choose from {list(METHODS)}")
        overlap = sorted(set(self.pretrain_tasks) & set(self.transfer_tasks))
        if overlap:
            raise UserError(f"{source}: tasks {overlap} are both pre-training and transfer tasks")


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run_experiment.py invocation of the protocol."""

    directory: Path
    flags: tuple[str, ...]
    after: Path | None = None  # a run that must finish first (transfer needs its pre-training)


def _folder_name(task: str) -> str:
    """A task's folder: its name, or for a CSV path the file name without .csv/.csv.gz."""
    name = Path(task).name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    return name


def plan(config: ProtocolConfig, root: Path) -> list[PlannedRun]:
    """Every run of the protocol, pre-training first."""
    runs = []
    for seed in config.seeds:
        pretrain_seed = config.seeds[0] if config.pretrain_once else seed
        pretrain = root / "pretrain" / f"seed{pretrain_seed}"
        if pretrain_seed == seed:
            runs.append(PlannedRun(pretrain, ("--mode=multitask",
                                              f"--tasks={','.join(config.pretrain_tasks)}",
                                              f"--trials={config.pretrain_trials}",
                                              f"--seed={seed}")))
        for method in config.methods:
            for task in config.transfer_tasks:
                flags = [f"--mode={method}", f"--tasks={task}",
                         f"--trials={config.transfer_trials}", f"--seed={seed}"]
                if method == "transfer":
                    flags.append(f"--controller_dir={pretrain / 'controller'}")
                runs.append(PlannedRun(root / method / _folder_name(task) / f"seed{seed}", tuple(flags),
                                       after=pretrain if method == "transfer" else None))
    return runs


def run_protocol(config: ProtocolConfig, root: str | Path, common_flags: Sequence[str] = (),
                 log: Callable[[str], None] = print) -> list[str]:
    """Run (or resume) every run of the protocol; returns the failures, one line each.

    Args:
        config: the protocol.
        root: the protocol's directory.
        common_flags: flags passed to every run (e.g. --data_dir, --cache_dir, --modules).
        log: where progress lines go.
    """
    root = Path(root)
    runs = plan(config, root)
    done: dict[Path, bool] = {}
    failures: list[str] = []

    def launch(run: PlannedRun) -> tuple[PlannedRun, int]:
        run.directory.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(REPO_ROOT / "run_experiment.py"), *run.flags,
                   f"--experiment_dir={run.directory}", *common_flags]
        with open(run.directory / "run.log", "a", encoding="utf-8") as out:
            code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
        return run, code

    pending = list(runs)
    with concurrent.futures.ThreadPoolExecutor(config.parallel_runs) as pool:
        active: set[concurrent.futures.Future] = set()
        while pending or active:
            ready = [r for r in pending if r.after is None or done.get(r.after)]
            blocked = [r for r in pending if r.after is not None and done.get(r.after) is False]
            for run in blocked:  # its pre-training failed: say so, do not run it
                failures.append(f"{run.directory}: skipped, {run.after} did not finish")
                pending.remove(run)
            for run in ready[: config.parallel_runs - len(active)]:
                pending.remove(run)
                name = run.directory.relative_to(root)
                log(f"start {name} (its progress: {name}/run.log)")
                active.add(pool.submit(launch, run))
            if not active:
                break
            finished, active = concurrent.futures.wait(
                active, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                run, code = future.result()
                done[run.directory] = code == 0
                status = "done" if code == 0 else f"FAILED (exit {code}, see {run.directory}/run.log)"
                log(f"{status}: {run.directory.relative_to(root)} "
                    f"({len(done)} of {len(runs)} runs ended)")
                if code != 0:
                    failures.append(f"{run.directory}: exit {code}, see its run.log")
    return failures
