"""One search run from its options: the single code path behind the CLI and the Python API.

`run_search(SearchOptions(...))` checks what can be checked in a second (tasks, modules, the
experiment directory, its lock and resume settings, controller settings) before TensorFlow is
imported or a module built, then builds missing offline modules, makes the searcher of the mode
and runs (or resumes) the experiment loop. run_experiment.py fills the options from flags, api.py
from arguments.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from automl_transfer import cli_process, paths, pretrained, workers
from automl_transfer import tasks as task_lib
from automl_transfer.errors import UserError
from automl_transfer.executors import make_executor
from automl_transfer.experiment import (Callback, ChildEvaluator, check_experiment_dir,
                                        run_experiment, task_schedule)
from automl_transfer.fingerprints import module_fingerprint, task_fingerprint
from automl_transfer.metrics import accuracy_top_n
from automl_transfer.modules import registry
from automl_transfer.progress import FailureCount, ProgressDisplay
from automl_transfer.search_space import PAPER, SearchSpace
from automl_transfer.searchers.base import Searcher
from automl_transfer.searchers.presets import resolve_settings
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.store import TrialStore
from automl_transfer.trial import Status, Trial

TOP_N = 10


@dataclasses.dataclass
class SearchOptions:
    """What a search run needs (the CLI's flags of the same names say what each means)."""

    mode: str
    tasks: Sequence[str]  # registered names or CSV paths
    trials: int  # per task
    experiment_dir: str
    seed: int = 0
    controller_dir: str | None = None  # transfer; None: the shipped controller for the space
    preset: str = "default"
    learning_rate: float | None = None
    entropy_weight: float | None = None
    data_dir: str | None = None
    cache_dir: str | None = None
    modules: str = "offline"  # module profile
    module_handles: Sequence[str] = ()  # name=handle pairs replacing the profile's modules
    space: str = PAPER
    fine_tune_images: bool = False  # fine_tune trains image modules' weights (hours per trial on CPUs)
    overwrite: bool = False
    tensorboard: bool = True
    max_in_flight: int | None = None  # None: default_in_flight(mode)
    executor: str = "process"
    ray_address: str = ""


def default_in_flight(mode: str) -> int:
    """Trials at once when the user does not say. Random search: one worker per core (see
    workers.local_slots); its trials never depend on each other's results, so the same seed gives
    the same configurations, trial ids and seeds as one at a time, about 1.5x faster on 2 cores
    (docs/cluster.md). A searcher that learns from results (controller, TPE): one at a time, so
    that the seed alone fixes the trial sequence."""
    return workers.local_slots() if mode == "random" else 1


@dataclasses.dataclass(frozen=True)
class Mode:
    """How one mode searches: its searcher factory and whether tasks interleave."""

    make_searcher: Callable[[SearchOptions, SearchSpace, Sequence[str]], Searcher]
    interleave: bool


def _controller_settings(options: SearchOptions) -> dict:
    return {"preset": options.preset, "learning_rate": options.learning_rate,
            "entropy_weight": options.entropy_weight}


def _multitask(options: SearchOptions, space: SearchSpace, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    return ControllerSearcher(space, options.seed, tasks, **_controller_settings(options))


def _single(options: SearchOptions, space: SearchSpace, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import PerTaskControllerSearcher
    return PerTaskControllerSearcher(space, options.seed, tasks, **_controller_settings(options))


def controller_source(controller_dir: str) -> Path:
    """A saved controller's folder (a run's controller/ or that folder itself); checked for its
    description before anything is built."""
    directory = Path(controller_dir).expanduser()
    if (directory / "controller").is_dir():
        directory = directory / "controller"
    if not (directory / "controller.json").is_file():  # controller_io.METADATA_FILE (imports TF)
        raise UserError(f"--controller_dir: no saved controller at {directory} (controller.json "
                        f"is missing): give a multitask or single-task run's controller/ folder")
    return directory


class StopWhenSignalled(Callback):
    """Stops the run at the next committed trial if a stop signal's exception was swallowed
    where it landed (see `cli_process.raise_if_interrupted`)."""

    def on_trial_end(self, trial: Trial, searcher: Searcher, store: TrialStore) -> None:
        cli_process.raise_if_interrupted()


def transfer_space(run_space: SearchSpace, controller_dir: Path) -> SearchSpace:
    """The space a transfer searches: the run's own, or the saved controller's when that one
    holds every module of the run and more (a controller pre-trained on text and image tasks
    transfers to an image task; the task's module mask hides the other modality's modules).
    Anything else is left to the controller's loader, which says what does not match."""
    try:
        saved = SearchSpace.from_json(json.loads((controller_dir / "controller.json").read_text())["space"])
    except (OSError, ValueError, KeyError, TypeError):
        return run_space
    if saved.name == run_space.name and set(run_space.modules) < set(saved.modules):
        return saved
    return run_space


def _transfer(options: SearchOptions, space: SearchSpace, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    return ControllerSearcher.from_saved(controller_source(options.controller_dir), tasks,
                                         options.seed, space=space,
                                         **_controller_settings(options))


def _tpe(options: SearchOptions, space: SearchSpace, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.tpe import TPESearcher  # imports Optuna
    return TPESearcher(space, options.seed)


MODES: dict[str, Mode] = {
    "random": Mode(lambda options, space, tasks: RandomSearcher(space, options.seed),
                   interleave=False),
    "tpe": Mode(_tpe, interleave=False),
    "single": Mode(_single, interleave=False),
    "multitask": Mode(_multitask, interleave=True),
    "transfer": Mode(_transfer, interleave=True),
}


def _module_handles(specs: dict, pairs: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(name -> handle, name -> modality) from the profile, or from --module_handles if given."""
    if not pairs:
        return ({n: s.handle for n, s in specs.items()}, {n: s.modality for n, s in specs.items()})
    handles, modalities = {}, {}
    for pair in pairs:
        name, sep, handle = pair.partition("=")
        if not sep or not name or not handle:
            raise UserError(f"--module_handles: {pair!r} is not name=handle")
        local = not registry.is_remote(handle)
        if local and not Path(handle).expanduser().is_dir():
            raise UserError(f"--module_handles: {handle}: module directory not found")
        handles[name] = str(Path(handle).expanduser().resolve()) if local else handle
        modalities[name] = specs[name].modality if name in specs else "text"
    return handles, modalities


def summary(trials: Sequence[Trial], task_names: Sequence[str], fine_tune_images: bool = False
            ) -> list[str]:
    """Per task: validation and test accuracy-top10, failures, and the best configuration."""
    lines = [f"accuracy-top{TOP_N} (mean over the {TOP_N} best trials by validation accuracy; "
             f"failed and diverged trials count as 0):"]
    for name in task_names:
        finished = [t for t in trials if t.task == name and t.finished]
        if not finished:
            lines.append(f"  {name}: no finished trials")
            continue
        valid, test = accuracy_top_n(finished, TOP_N)
        failures = FailureCount(finished)
        counted = f" ({failures.describe()})" if failures.total else ""
        lines.append(f"  {name}: {len(finished)} trials{counted}, valid {valid:.4f}, "
                     f"test {test:.4f}")
        top = sorted(finished, key=lambda t: (-t.result.reward, t.trial_id))[:TOP_N]
        zeros = sum(t.result.status != Status.COMPLETED for t in top)
        if zeros:
            lines.append(f"    {zeros} of the {len(top)} trials in that mean failed or diverged "
                         f"(counted as 0)")
        completed = [t for t in finished if t.result.status == Status.COMPLETED]
        if not completed:
            lines.append("    no completed trial")
            continue
        best = max(completed, key=lambda t: (t.result.reward, -t.trial_id))
        lines.append(f"    best (trial {best.trial_id}, valid {best.result.reward:.4f}, test "
                     f"{best.result.test_accuracy:.4f}): "
                     f"{best.config.describe(registry.trains_when_fine_tuned(best.config.module, fine_tune_images))}")
    return lines


def _task_entries(given: Sequence[str]) -> list[str]:
    """--tasks without empty entries ('sms_spam,' is one task); a file name holding a comma,
    which the flag splits apart, is named."""
    entries = [entry.strip() for entry in given]
    for start in range(len(entries)):
        for end in range(start + 2, len(entries) + 1):
            joined = ",".join(entries[start:end])
            if Path(joined).expanduser().is_file():
                raise UserError(f"--tasks: {joined!r} holds a comma, which separates tasks: "
                                f"rename the file without commas")
    entries = [entry for entry in entries if entry]
    if not entries:
        raise UserError("--tasks is empty: name at least one task")
    return entries


def _load_tasks(given: Sequence[str], data_dir: Path
                ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(task name -> name or path as given, task name -> modality, task name -> its file); bad
    tasks fail here, early; warnings about a task's data go to stderr, one line each."""
    sources, modalities, files = {}, {}, {}
    for name_or_path in _task_entries(given):
        task = task_lib.load_task(name_or_path, data_dir)
        if task.name in sources:
            if files[task.name] == task.source:
                raise UserError(f"--tasks: task {task.name!r} is named twice")
            raise UserError(f"--tasks: {files[task.name]} and {task.source} are both task "
                            f"{task.name!r} (a task is named after its file): give them "
                            f"distinct names")
        for warning in task.warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        sources[task.name] = name_or_path
        modalities[task.name] = task.modality
        files[task.name] = task.source
    return sources, modalities, files


def _allowed_modules(task_modalities: dict[str, str], module_modalities: dict[str, str],
                     profile: str) -> dict[str, list[str]]:
    """Task -> the modules of its modality."""
    allowed = {task: [m for m, kind in module_modalities.items() if kind == modality]
               for task, modality in task_modalities.items()}
    for task, modules in allowed.items():
        if not modules:
            raise UserError(f"task {task!r} is {task_modalities[task]}, but no "
                            f"{task_modalities[task]} module is available (--modules={profile})")
    return allowed


def _ensure_built(modules: Sequence[str], data_dir: Path, cache_dir: str | None,
                  log: Callable[[str], None]) -> None:
    """Build the offline modules the run needs and that are missing, saying what it does."""
    from automl_transfer.modules import build  # imports TensorFlow
    recipes = registry.build_recipes("offline")
    log(f"checking offline modules in {paths.cache_dir(cache_dir)}")
    build.ensure_offline_modules(data_dir, cache_dir, [m for m in modules if m in recipes],
                                 log=lambda line: log(f"  {line}"))


def run_search(options: SearchOptions, log: Callable[[str], None] = print) -> list[Trial]:
    """Run (or resume, or extend) the search `options` describe; every finished trial, by id."""
    if options.mode not in MODES:
        raise UserError(f"unknown search mode {options.mode!r}; one of {', '.join(MODES)}")
    # Controller flags are checked before anything runs: inf or NaN would crash a trial later.
    learning_rate, entropy_weight = resolve_settings(options.preset, options.learning_rate,
                                                     options.entropy_weight)
    if options.executor == "ray":
        from automl_transfer.ray_executor import import_ray
        import_ray()  # says how to install Ray before any slow step
    mode = MODES[options.mode]
    data_dir = paths.data_dir(options.data_dir)
    sources, task_modalities, task_files = _load_tasks(options.tasks, data_dir)
    task_names = list(sources)
    specs = registry.load_registry(options.modules, options.cache_dir)
    handles, module_modalities = _module_handles(specs, options.module_handles)
    allowed = _allowed_modules(task_modalities, module_modalities, options.modules)
    # The module decision holds the modules of the run's modalities: a text run's space (and
    # so the controllers saved for it) does not change when image modules are registered. A
    # transfer from a controller pre-trained across modalities keeps that controller's space.
    modalities = set(task_modalities.values())
    space = SearchSpace([m for m in handles if module_modalities[m] in modalities], options.space)
    if options.mode == "transfer":
        if not options.controller_dir:  # the one shipped for the space
            options = dataclasses.replace(
                options, controller_dir=str(pretrained.default_controller(space.fingerprint())))
        space = transfer_space(space, controller_source(options.controller_dir))
    settings = {"mode": options.mode, "tasks": task_names, "seed": options.seed,
                "profile": options.modules, "trials_per_task": options.trials,
                "space": options.space, "fine_tune_images": options.fine_tune_images,
                "sources": {"tasks": {name: str(path) for name, path in task_files.items()},
                            "module_handles": handles, "data_dir": str(data_dir)}}
    fingerprints = {"tasks": {name: task_fingerprint(path) for name, path in task_files.items()}}
    # The directory, the lock and the resume settings are checked before a module is built or
    # TensorFlow imported; the searcher's own settings are checked again when it exists.
    searcher_flags = ({"searcher": {"preset": options.preset, "learning_rate": learning_rate,
                                    "entropy_weight": entropy_weight}}
                      if options.mode not in ("random", "tpe") else {})
    saved = check_experiment_dir(options.experiment_dir, {**settings, **searcher_flags},
                                 options.overwrite, fingerprints)
    recorded_budget = (saved or {}).get("trials_per_task", 0)
    if recorded_budget > options.trials:
        print(f"note: this run's budget is {recorded_budget} trials per task; a smaller "
              f"--trials={options.trials} does not shrink it", file=sys.stderr, flush=True)
        settings["trials_per_task"] = recorded_budget
    cli_process.import_tensorflow()  # the module build, the controller and the trials need it
    used = sorted({m for modules in allowed.values() for m in modules})
    if options.modules == "offline" and not options.module_handles:
        _ensure_built(used, data_dir, options.cache_dir, log)
    # Only the modules the run's trials can use: a text run resumes after an image module of
    # the profile is built or rebuilt.
    fingerprints["modules"] = {name: module_fingerprint(handles[name]) for name in used}

    searcher = mode.make_searcher(options, space, task_names)
    budget = settings["trials_per_task"]
    schedule = task_schedule(task_names, budget, options.seed, interleave=mode.interleave)
    callbacks = [ProgressDisplay(), StopWhenSignalled()]
    if options.tensorboard:
        from automl_transfer.tensorboard_logging import TensorBoardLogger
        callbacks.append(TensorBoardLogger(options.experiment_dir))
    in_flight = options.max_in_flight or default_in_flight(options.mode)
    log(f"experiment {options.experiment_dir}: mode={options.mode}, tasks={','.join(task_names)}, "
        f"{budget} trials per task, seed={options.seed}, space={options.space}, "
        f"{len(space.modules)} modules ({', '.join(space.modules)})"
        + (f", {in_flight} trials at once ({options.executor} workers)" if in_flight > 1 else ""))
    evaluator = ChildEvaluator(sources, handles, str(data_dir),
                               fine_tune_images=options.fine_tune_images)
    return run_experiment(
        options.experiment_dir, searcher, schedule, allowed, evaluator, settings,
        executor=make_executor(in_flight, options.executor, options.ray_address),
        callbacks=callbacks, overwrite=options.overwrite, fingerprints=fingerprints)
