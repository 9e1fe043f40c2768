"""Run, resume or extend an architecture search, or write the report of one.

With no flags: multitask pre-training of the controller on the paper's pre-training tasks we have
(about 15 minutes on 2 cores once the offline modules are built). Examples:
    python run_experiment.py --mode=random --tasks=sms_spam,subj --trials=50 \\
        --experiment_dir=experiments/rs --seed=0
    python run_experiment.py --mode=transfer --controller_dir=experiments/multitask \\
        --tasks=sms_spam --trials=100 --experiment_dir=experiments/tnaml_sms
    python run_experiment.py --mode=report --experiment_dir=experiments

Rerunning the same command on the same --experiment_dir resumes it (finished trials are kept);
a larger --trials extends it; --overwrite starts afresh. Progress goes to stderr; the summary
(accuracy-top10 per task and the best configuration) to stdout. Exit codes: 0 done, 2 bad input
(one-line `error: ...`), 130 interrupted (results so far are saved).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import dataclasses  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

# None of these imports TensorFlow: bad flags, task names and resume settings are refused in a
# second; TensorFlow comes with the first trial (or the offline module build).
from automl_transfer import paths  # noqa: E402
from automl_transfer import tasks as task_lib  # noqa: E402
from automl_transfer.errors import UserError  # noqa: E402
from automl_transfer.executors import make_executor  # noqa: E402
from automl_transfer.experiment import ChildEvaluator, run_experiment, task_schedule  # noqa: E402
from automl_transfer.metrics import accuracy_top_n  # noqa: E402
from automl_transfer.modules import registry  # noqa: E402
from automl_transfer.progress import ProgressDisplay  # noqa: E402
from automl_transfer.search_space import SearchSpace  # noqa: E402
from automl_transfer.searchers.base import Searcher  # noqa: E402
from automl_transfer.searchers.random_search import RandomSearcher  # noqa: E402
from automl_transfer.searchers.presets import PRESETS  # noqa: E402
from automl_transfer.trial import Trial  # noqa: E402

FLAGS = flags.FLAGS
# The paper's multitask pre-training tasks that we have (Complaints and Economic News are missing).
PRETRAIN_TASKS = ["airline", "news_aggregator", "political_message", "primary_emotions", "sst2",
                  "us_economy"]
DEFAULT_TRIALS = 40  # per task: the default multitask run takes about 15 minutes on 2 cores

flags.DEFINE_enum("mode", "multitask", ["random", "single", "multitask", "transfer", "protocol",
                                        "report"],
                  "What to run. random: random search (the paper's RS baseline). single: one "
                  "controller per task (NAML). multitask: one controller over all --tasks, each "
                  "trial's task drawn uniformly, task embeddings the only task-specific weights. "
                  "transfer: load --controller_dir, add a fresh task embedding per task, train on "
                  "(T-NAML). protocol: the paper's whole experiment from --protocol_config "
                  "(pre-training, then random/single/transfer on held-out tasks over seeds), "
                  "every run in its own folder under --experiment_dir, then the report. report: "
                  "write <experiment_dir>/report.md with figures from every run found under "
                  "--experiment_dir.")
flags.DEFINE_list("tasks", PRETRAIN_TASKS, "Comma-separated tasks: registered names (see "
                  "datasets/tasks.yaml, read from --data_dir) or paths to .csv/.csv.gz files with "
                  "columns text,label[,split]. Default: the paper's pre-training tasks we have.")
flags.DEFINE_integer("trials", DEFAULT_TRIALS, "Trials per task (the budget); a larger value on an "
                     "existing --experiment_dir extends that run.", lower_bound=1)
flags.DEFINE_string("experiment_dir", None, "Directory for this experiment: trials.sqlite (every "
                    "finished trial), controller/ (the controller SavedModel, for controller "
                    "modes) and tensorboard/. Reusing it resumes the run. Default: "
                    "experiments/<mode> under the current directory.")
flags.DEFINE_string("controller_dir", None, "--mode=transfer: a saved controller (a run's "
                    "controller/ folder, or the experiment directory holding it).")
flags.DEFINE_enum("preset", "default", sorted(PRESETS), "Controller settings: 'default' "
                  f"(learning rate {PRESETS['default']['learning_rate']}, measured to learn within "
                  f"a few hundred trials: docs/method.md) or 'paper' (learning rate "
                  f"{PRESETS['paper']['learning_rate']}, as in the paper).")
flags.DEFINE_string("protocol_config", str(paths.REPO_ROOT / "configs" / "protocol.yaml"),
                    "--mode=protocol: YAML file with pretrain_tasks, transfer_tasks, "
                    "pretrain_trials, transfer_trials, seeds, methods, parallel_runs.")
flags.DEFINE_float("learning_rate", None, "Controller learning rate; overrides --preset.")
flags.DEFINE_float("entropy_weight", None, "Controller entropy bonus weight; overrides --preset.")
flags.DEFINE_boolean("tensorboard", True, "Write TensorBoard logs under "
                     "<experiment_dir>/tensorboard/.")
flags.DEFINE_integer("seed", 0, "Seed of the search: the same seed gives the same trial schedule "
                     "and (for random search) the same configurations.")
flags.DEFINE_string("data_dir", None, f"Datasets root (holds text/<task>/data.csv.gz and the corpora "
                    f"offline modules are built from); default ${paths.DATA_DIR_ENV} or "
                    f"../shared/datasets beside the checkout.")
flags.DEFINE_string("cache_dir", None, f"Where built offline modules live; default "
                    f"${paths.CACHE_DIR_ENV} or ~/.cache/automl_transfer.")
flags.DEFINE_string("modules", "offline", "Module profile of hub_modules.yaml: 'offline' (built "
                    "here from --data_dir, missing ones are built before the run) or 'paper' "
                    "(the paper's TF-Hub modules; needs internet).")
flags.DEFINE_list("module_handles", [], "Use exactly these modules instead of the profile's: "
                  "comma-separated name=handle pairs, a handle being a SavedModel directory or a "
                  "TF-Hub URL. Names missing from the profile are taken to be text modules. "
                  "Nothing is built. Example: --module_handles=glove=/tmp/glove_module")
flags.DEFINE_boolean("overwrite", False, "Delete the run already in --experiment_dir and start afresh "
                     "instead of resuming it.")
flags.DEFINE_string("report_decision", "module", "--mode=report: the decision whose option "
                    "probabilities over trials are plotted (a search-space field, e.g. "
                    "num_layers, train_samples).")
flags.DEFINE_integer("report_window", 50, "--mode=report: sliding window, in trials, of the "
                     "option-probability figure.", lower_bound=1)
flags.DEFINE_integer("max_in_flight", 1, "Trials evaluated at once: 1 runs them one by one in this "
                     "process; more uses that many worker processes.", lower_bound=1)

TOP_N = 10
RESUME_HINT = "rerun the same command to resume"


@dataclasses.dataclass(frozen=True)
class Mode:
    """How one --mode searches: its searcher factory and whether tasks interleave."""

    make_searcher: Callable[[SearchSpace, int, Sequence[str]], Searcher]  # (space, seed, tasks)
    interleave: bool


def _controller_settings() -> dict:
    return {"preset": FLAGS.preset, "learning_rate": FLAGS.learning_rate,
            "entropy_weight": FLAGS.entropy_weight}


def _multitask(space: SearchSpace, seed: int, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    return ControllerSearcher(space, seed, tasks, **_controller_settings())


def _single(space: SearchSpace, seed: int, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import PerTaskControllerSearcher
    return PerTaskControllerSearcher(space, seed, tasks, **_controller_settings())


def _transfer(space: SearchSpace, seed: int, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    directory = Path(FLAGS.controller_dir).expanduser()
    if (directory / "controller").is_dir():
        directory = directory / "controller"
    return ControllerSearcher.from_saved(directory, tasks, seed, space=space,
                                         **_controller_settings())


MODES: dict[str, Mode] = {
    "random": Mode(lambda space, seed, tasks: RandomSearcher(space, seed), interleave=False),
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


def _summary(trials: Sequence[Trial], task_names: Sequence[str]) -> list[str]:
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


def _allowed_modules(task_modalities: dict[str, str], module_modalities: dict[str, str]
                     ) -> dict[str, list[str]]:
    """Task -> the modules of its modality."""
    allowed = {task: [m for m, kind in module_modalities.items() if kind == modality]
               for task, modality in task_modalities.items()}
    for task, modules in allowed.items():
        if not modules:
            raise UserError(f"task {task!r} is {task_modalities[task]}, but no "
                            f"{task_modalities[task]} module is available (--modules={FLAGS.modules})")
    return allowed


def _ensure_built(modules: Sequence[str], data_dir: Path) -> None:
    """Build the offline modules the run needs and that are missing, saying what it does."""
    from automl_transfer.modules import build  # imports TensorFlow
    recipes = registry.build_recipes("offline")
    print(f"checking offline modules in {paths.cache_dir(FLAGS.cache_dir)}", flush=True)
    build.ensure_offline_modules(data_dir, FLAGS.cache_dir, [m for m in modules if m in recipes],
                                 log=lambda line: print(f"  {line}", flush=True))


def _report() -> int:
    from automl_transfer.report import write_report
    path = write_report(FLAGS.experiment_dir, decision=FLAGS.report_decision,
                        window=FLAGS.report_window)
    print(f"report written to {path}")
    return 0


def _protocol() -> int:
    from automl_transfer.protocol import ProtocolConfig, run_protocol
    config = ProtocolConfig.from_yaml(FLAGS.protocol_config)
    passed = [f"--{name}={value}" for name, value in (
        ("data_dir", FLAGS.data_dir), ("cache_dir", FLAGS.cache_dir), ("modules", FLAGS.modules),
        ("preset", FLAGS.preset), ("learning_rate", FLAGS.learning_rate),
        ("entropy_weight", FLAGS.entropy_weight)) if value is not None]
    passed += [f"--module_handles={','.join(FLAGS.module_handles)}"] if FLAGS.module_handles else []
    failures = run_protocol(config, FLAGS.experiment_dir, passed,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    _report()
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


def _run(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise UserError(f"unexpected argument {argv[1]!r} (flags look like --name=value)")
    if FLAGS.cache_dir:  # decoded images (images.py) follow --cache_dir too, in child processes as well
        os.environ[paths.CACHE_DIR_ENV] = FLAGS.cache_dir
    if FLAGS.experiment_dir is None:
        FLAGS.experiment_dir = str(Path("experiments") / FLAGS.mode) if FLAGS.mode != "report" \
            else "experiments"
    if FLAGS.mode == "protocol" and FLAGS.overwrite:
        raise UserError("--overwrite is not supported with --mode=protocol: remove the "
                        "protocol's directory to start afresh")
    if FLAGS.mode == "report":
        return _report()
    if FLAGS.mode == "protocol":
        return _protocol()
    if FLAGS.mode == "transfer" and not FLAGS.controller_dir:
        raise UserError("--mode=transfer needs --controller_dir: the controller/ folder of a "
                        "multitask (or single-task) run")
    mode = MODES[FLAGS.mode]
    data_dir = paths.data_dir(FLAGS.data_dir)
    sources, task_modalities = _load_tasks(FLAGS.tasks, data_dir)
    task_names = list(sources)
    specs = registry.load_registry(FLAGS.modules, FLAGS.cache_dir)
    handles, module_modalities = _module_handles(specs, FLAGS.module_handles)
    allowed = _allowed_modules(task_modalities, module_modalities)
    if FLAGS.modules == "offline" and not FLAGS.module_handles:
        _ensure_built(sorted({m for modules in allowed.values() for m in modules}), data_dir)

    space = SearchSpace(list(handles))
    searcher = mode.make_searcher(space, FLAGS.seed, task_names)
    schedule = task_schedule(task_names, FLAGS.trials, FLAGS.seed, interleave=mode.interleave)
    settings = {"mode": FLAGS.mode, "tasks": task_names, "seed": FLAGS.seed,
                "profile": FLAGS.modules, "trials_per_task": FLAGS.trials}
    callbacks = [ProgressDisplay()]
    if FLAGS.tensorboard:
        from automl_transfer.tensorboard_logging import TensorBoardLogger
        callbacks.append(TensorBoardLogger(FLAGS.experiment_dir))
    print(f"experiment {FLAGS.experiment_dir}: mode={FLAGS.mode}, tasks={','.join(task_names)}, "
          f"{FLAGS.trials} trials per task, seed={FLAGS.seed}, {len(handles)} modules "
          f"({', '.join(handles)})", flush=True)
    evaluator = ChildEvaluator(sources, handles, str(data_dir))
    trials = run_experiment(
        FLAGS.experiment_dir, searcher, schedule, allowed, evaluator, settings,
        executor=make_executor(FLAGS.max_in_flight), callbacks=callbacks,
        overwrite=FLAGS.overwrite)
    print("\n".join(_summary(trials, task_names)))
    return 0


def main(argv: Sequence[str]) -> int:
    """absl entry: user errors as one line (exit 2), Ctrl-C keeps what finished (exit 130)."""
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes drown the progress
    absl_logging.set_verbosity(absl_logging.WARNING)  # SavedModel writes log INFO lines per save
    try:
        return _run(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are saved in {FLAGS.experiment_dir}; "
              f"{RESUME_HINT}", file=sys.stderr)
        return 130


def _parse_flags(argv: list[str]) -> list[str]:
    """--help on stdout (exit 0); flag errors (unknown flag, bad value, missing required flag) as
    one line, exit code 2."""
    if any(arg in ("-h", "-help", "--help", "--helpshort", "-?") for arg in argv[1:]):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    try:
        return FLAGS(argv)
    except flags.Error as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
