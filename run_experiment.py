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
(one-line `error: ...`), 130 interrupted by Ctrl-C, 143 by SIGTERM (results so far are saved).
"""
from __future__ import annotations

import dataclasses  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

# None of these imports TensorFlow: bad flags, task names and resume settings are refused in a
# second; TensorFlow comes with the first trial (or the offline module build).
from automl_transfer import cli_process  # noqa: E402
from automl_transfer import paths  # noqa: E402
from automl_transfer import tasks as task_lib  # noqa: E402
from automl_transfer.errors import UserError  # noqa: E402
from automl_transfer.executors import make_executor  # noqa: E402
from automl_transfer.experiment import (ChildEvaluator, check_experiment_dir,  # noqa: E402
                                        run_experiment, task_schedule)
from automl_transfer.fingerprints import module_fingerprint, task_fingerprint  # noqa: E402
from automl_transfer.metrics import accuracy_top_n  # noqa: E402
from automl_transfer.modules import registry  # noqa: E402
from automl_transfer.progress import FailureCount, ProgressDisplay  # noqa: E402
from automl_transfer.ray_executor import import_ray  # noqa: E402
from automl_transfer.search_space import PAPER, SPACES, SearchSpace  # noqa: E402
from automl_transfer.searchers.base import Searcher  # noqa: E402
from automl_transfer.searchers.random_search import RandomSearcher  # noqa: E402
from automl_transfer.searchers.presets import PRESETS, resolve_settings  # noqa: E402
from automl_transfer.trial import Status, Trial  # noqa: E402

FLAGS = flags.FLAGS
# The paper's multitask pre-training tasks that we have (Complaints and Economic News are missing).
PRETRAIN_TASKS = ["airline", "news_aggregator", "political_message", "primary_emotions", "sst2",
                  "us_economy"]
DEFAULT_TRIALS = 40  # per task: the default multitask run takes about 15 minutes on 2 cores

flags.DEFINE_enum("mode", "multitask", ["random", "tpe", "single", "multitask", "transfer",
                                        "protocol", "report"],
                  "What to run. random: random search (the paper's RS baseline). tpe: Optuna's "
                  "TPE sampler, one study per task (a baseline). single: one "
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
flags.DEFINE_enum("space", PAPER, list(SPACES), "Search space: 'paper' (the paper's 12 "
                  "decisions) or 'extended' (also the wide tower's n-gram range, TF-IDF or binary "
                  "weighting and vocabulary size; docs/method.md). A run resumes, and a saved "
                  "controller is reused, only in the space it was made in.")
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
                     "process; more uses that many workers (--executor), capped at the CPUs "
                     "available.", lower_bound=1)
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's own log (hidden by default: on a CPU "
                     "machine it starts with CUDA and oneDNN notices that are not errors).")
flags.DEFINE_enum("executor", "process", ["process", "ray"], "Where trials run when "
                  "--max_in_flight > 1: 'process' (worker processes on this machine) or 'ray' (a "
                  "pool of Ray workers, local or on a cluster, see --ray_address; also with "
                  "--max_in_flight=1). Ray: pip install -e \".[ray]\"; docs/cluster.md.")
flags.DEFINE_string("ray_address", "", "--executor=ray: '' starts a local Ray sized to this "
                    "machine; 'auto' or host:port joins a running cluster (`ray start --head`).")

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


def _controller_source() -> Path:
    """--controller_dir's controller folder (a run's controller/ or that folder itself); checked
    for its description before anything is built."""
    directory = Path(FLAGS.controller_dir).expanduser()
    if (directory / "controller").is_dir():
        directory = directory / "controller"
    if not (directory / "controller.json").is_file():  # controller_io.METADATA_FILE (imports TF)
        raise UserError(f"--controller_dir: no saved controller at {directory} (controller.json "
                        f"is missing): give a multitask or single-task run's controller/ folder")
    return directory


def _transfer(space: SearchSpace, seed: int, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.controller_searcher import ControllerSearcher
    return ControllerSearcher.from_saved(_controller_source(), tasks, seed, space=space,
                                         **_controller_settings())


def _tpe(space: SearchSpace, seed: int, tasks: Sequence[str]) -> Searcher:
    from automl_transfer.searchers.tpe import TPESearcher  # imports Optuna
    return TPESearcher(space, seed)


MODES: dict[str, Mode] = {
    "random": Mode(lambda space, seed, tasks: RandomSearcher(space, seed), interleave=False),
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


def _summary(trials: Sequence[Trial], task_names: Sequence[str]) -> list[str]:
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
                     f"{best.result.test_accuracy:.4f}): {best.config.describe()}")
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
        ("preset", FLAGS.preset), ("learning_rate", FLAGS.learning_rate), ("space", FLAGS.space),
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
    if FLAGS.experiment_dir is None:
        FLAGS.experiment_dir = str(Path("experiments") / FLAGS.mode) if FLAGS.mode != "report" \
            else "experiments"
    if FLAGS.mode == "protocol" and FLAGS.overwrite:
        raise UserError("--overwrite is not supported with --mode=protocol: remove the "
                        "protocol's directory to start afresh")
    # Controller flags are checked before anything runs: inf or NaN would crash a trial later.
    learning_rate, entropy_weight = resolve_settings(FLAGS.preset, FLAGS.learning_rate,
                                                     FLAGS.entropy_weight)
    if FLAGS.mode == "report":
        return _report()
    if FLAGS.mode == "protocol":
        return _protocol()
    if FLAGS.mode == "transfer" and not FLAGS.controller_dir:
        raise UserError("--mode=transfer needs --controller_dir: the controller/ folder of a "
                        "multitask (or single-task) run")
    if FLAGS.mode == "transfer":
        _controller_source()
    if FLAGS.executor == "ray":
        import_ray()  # says how to install Ray before any slow step
    mode = MODES[FLAGS.mode]
    data_dir = paths.data_dir(FLAGS.data_dir)
    sources, task_modalities, task_files = _load_tasks(FLAGS.tasks, data_dir)
    task_names = list(sources)
    specs = registry.load_registry(FLAGS.modules, FLAGS.cache_dir)
    handles, module_modalities = _module_handles(specs, FLAGS.module_handles)
    allowed = _allowed_modules(task_modalities, module_modalities)
    settings = {"mode": FLAGS.mode, "tasks": task_names, "seed": FLAGS.seed,
                "profile": FLAGS.modules, "trials_per_task": FLAGS.trials, "space": FLAGS.space}
    fingerprints = {"tasks": {name: task_fingerprint(path) for name, path in task_files.items()}}
    # The directory, the lock and the resume settings are checked before a module is built or
    # TensorFlow imported; the searcher's own settings are checked again when it exists.
    searcher_flags = ({"searcher": {"preset": FLAGS.preset, "learning_rate": learning_rate,
                                    "entropy_weight": entropy_weight}}
                      if FLAGS.mode != "random" else {})
    saved = check_experiment_dir(FLAGS.experiment_dir, {**settings, **searcher_flags},
                                 FLAGS.overwrite, fingerprints)
    recorded_budget = (saved or {}).get("trials_per_task", 0)
    if recorded_budget > FLAGS.trials:
        print(f"note: this run's budget is {recorded_budget} trials per task; a smaller "
              f"--trials={FLAGS.trials} does not shrink it", file=sys.stderr, flush=True)
        settings["trials_per_task"] = recorded_budget
    cli_process.import_tensorflow()  # the module build, the controller and the trials need it
    if FLAGS.modules == "offline" and not FLAGS.module_handles:
        _ensure_built(sorted({m for modules in allowed.values() for m in modules}), data_dir)
    fingerprints["modules"] = {name: module_fingerprint(handle) for name, handle in handles.items()}

    space = SearchSpace(list(handles), FLAGS.space)
    searcher = mode.make_searcher(space, FLAGS.seed, task_names)
    budget = settings["trials_per_task"]
    schedule = task_schedule(task_names, budget, FLAGS.seed, interleave=mode.interleave)
    callbacks = [ProgressDisplay()]
    if FLAGS.tensorboard:
        from automl_transfer.tensorboard_logging import TensorBoardLogger
        callbacks.append(TensorBoardLogger(FLAGS.experiment_dir))
    print(f"experiment {FLAGS.experiment_dir}: mode={FLAGS.mode}, tasks={','.join(task_names)}, "
          f"{budget} trials per task, seed={FLAGS.seed}, space={FLAGS.space}, "
          f"{len(handles)} modules "
          f"({', '.join(handles)})", flush=True)
    evaluator = ChildEvaluator(sources, handles, str(data_dir))
    trials = run_experiment(
        FLAGS.experiment_dir, searcher, schedule, allowed, evaluator, settings,
        executor=make_executor(FLAGS.max_in_flight, FLAGS.executor, FLAGS.ray_address),
        callbacks=callbacks, overwrite=FLAGS.overwrite, fingerprints=fingerprints)
    print("\n".join(_summary(trials, task_names)))
    if trials and all(t.result.status != Status.COMPLETED for t in trials):
        print(f"error: all {len(trials)} trials failed or diverged "
              f"({FailureCount(trials).describe()})", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    """absl entry: user errors as one line (exit 2); Ctrl-C or SIGTERM keeps what finished (exit
    130 or 143); output whose reader went away (`| head -1`) is dropped, the run goes on."""
    cli_process.guard_std_streams()
    cli_process.configure_tensorflow_logging(FLAGS.verbose)
    cli_process.stop_on_signals()
    if not FLAGS.verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notes drown progress
        absl_logging.set_verbosity(absl_logging.WARNING)  # SavedModel writes log INFO per save
    try:
        return _run(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        cli_process.stop_workers()
        stopped = "terminated" if cli_process.exit_code(interrupt) == 143 else "interrupted"
        print(f"\n{stopped}: finished trials are saved in {FLAGS.experiment_dir}; "
              f"{RESUME_HINT}", file=sys.stderr)
        return cli_process.exit_code(interrupt)
    finally:
        sys.stdout.flush()  # a reader gone at exit: dropped here, not a traceback at shutdown


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
