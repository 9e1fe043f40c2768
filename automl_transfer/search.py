"""One search run from its options: the single code path behind the CLI and the Python API.

`run_search(SearchOptions(...))` checks the tasks and modules (bad ones fail in a second, before
TensorFlow), builds missing offline modules, makes the searcher of the mode and runs (or resumes)
the experiment loop. run_experiment.py fills the options from flags, api.py from arguments.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

from automl_transfer import paths, pretrained
from automl_transfer import tasks as task_lib
from automl_transfer.errors import UserError
from automl_transfer.executors import make_executor
from automl_transfer.experiment import ChildEvaluator, run_experiment, task_schedule
from automl_transfer.metrics import accuracy_top_n
from automl_transfer.modules import registry
from automl_transfer.progress import ProgressDisplay
from automl_transfer.search_space import SearchSpace
from automl_transfer.searchers.base import Searcher
from automl_transfer.searchers.random_search import RandomSearcher
from automl_transfer.trial import Trial

TOP_N = 10
SEARCH_MODES = ("random", "single", "multitask", "transfer")


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
    overwrite: bool = False
    tensorboard: bool = True
    max_in_flight: int = 1


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


def _transfer(options: SearchOptions, space: SearchSpace, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    directory = Path(options.controller_dir).expanduser()
    if (directory / "controller").is_dir():
        directory = directory / "controller"
    return ControllerSearcher.from_saved(directory, tasks, options.seed, space=space,
                                         **_controller_settings(options))


MODES: dict[str, Mode] = {
    "random": Mode(lambda options, space, tasks: RandomSearcher(space, options.seed),
                   interleave=False),
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


def summary(trials: Sequence[Trial], task_names: Sequence[str]) -> list[str]:
    """Per task: validation and test accuracy-top10, and the best configuration."""
    lines = [f"accuracy-top{TOP_N} (mean over the {TOP_N} best trials by validation accuracy):"]
    for name in task_names:
        finished = [t for t in trials if t.task == name and t.finished]
        if not finished:
            lines.append(f"  {name}: no finished trials")
            continue
        valid, test = accuracy_top_n(finished, TOP_N)
        best = max(finished, key=lambda t: (t.result.reward, -t.trial_id))
        lines.append(f"  {name}: {len(finished)} trials, valid {valid:.4f}, test {test:.4f}")
        lines.append(f"    best (trial {best.trial_id}, valid {best.result.reward:.4f}, test "
                     f"{best.result.test_accuracy:.4f}): {best.config.describe()}")
    return lines


def _load_tasks(given: Sequence[str], data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(task name -> name or path as given, task name -> modality); bad tasks fail here, early."""
    if not given:
        raise UserError("--tasks is empty: name at least one task")
    sources, modalities = {}, {}
    for name_or_path in given:
        task = task_lib.load_task(name_or_path, data_dir)
        if task.name in sources:
            raise UserError(f"--tasks: task {task.name!r} is named twice")
        sources[task.name] = name_or_path
        modalities[task.name] = task.modality
    return sources, modalities


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
    mode = MODES[options.mode]
    data_dir = paths.data_dir(options.data_dir)
    sources, task_modalities = _load_tasks(options.tasks, data_dir)
    task_names = list(sources)
    specs = registry.load_registry(options.modules, options.cache_dir)
    handles, module_modalities = _module_handles(specs, options.module_handles)
    allowed = _allowed_modules(task_modalities, module_modalities, options.modules)
    space = SearchSpace(list(handles))
    if options.mode == "transfer" and not options.controller_dir:  # the one shipped for the space
        options = dataclasses.replace(
            options, controller_dir=str(pretrained.default_controller(space.fingerprint())))
    if options.modules == "offline" and not options.module_handles:
        _ensure_built(sorted({m for modules in allowed.values() for m in modules}), data_dir,
                      options.cache_dir, log)

    searcher = mode.make_searcher(options, space, task_names)
    schedule = task_schedule(task_names, options.trials, options.seed, interleave=mode.interleave)
    settings = {"mode": options.mode, "tasks": task_names, "seed": options.seed,
                "profile": options.modules, "trials_per_task": options.trials,
                "sources": {"tasks": {name: str(task_lib.resolve_task_path(source, data_dir))
                                      for name, source in sources.items()},
                            "module_handles": handles, "data_dir": str(data_dir)}}
    callbacks = [ProgressDisplay()]
    if options.tensorboard:
        from automl_transfer.tensorboard_logging import TensorBoardLogger
        callbacks.append(TensorBoardLogger(options.experiment_dir))
    log(f"experiment {options.experiment_dir}: mode={options.mode}, tasks={','.join(task_names)}, "
        f"{options.trials} trials per task, seed={options.seed}, {len(handles)} modules "
        f"({', '.join(handles)})")
    evaluator = ChildEvaluator(sources, handles, str(data_dir))
    return run_experiment(
        options.experiment_dir, searcher, schedule, allowed, evaluator, settings,
        executor=make_executor(options.max_in_flight), callbacks=callbacks,
        overwrite=options.overwrite)
