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

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

# None of these imports TensorFlow: bad flags, task names and resume settings are refused in a
# second; TensorFlow comes with the first trial (or the offline module build).
from automl_transfer import cli_process  # noqa: E402
from automl_transfer import paths  # noqa: E402
from automl_transfer import tasks as task_lib  # noqa: E402
from automl_transfer.errors import UserError  # noqa: E402
from automl_transfer.search import SearchOptions, run_search, summary  # noqa: E402
from automl_transfer.search_space import PAPER, SPACES  # noqa: E402
from automl_transfer.searchers.presets import PRESETS, resolve_settings  # noqa: E402
from automl_transfer.progress import FailureCount  # noqa: E402
from automl_transfer.trial import Status  # noqa: E402

FLAGS = flags.FLAGS
# The paper's multitask pre-training tasks that we have (Complaints and Economic News are missing).
PRETRAIN_TASKS = ["airline", "news_aggregator", "political_message", "primary_emotions", "sst2",
                  "us_economy"]
DEFAULT_TRIALS = 40  # per task: the default multitask run takes about 15 minutes on 2 cores

flags.DEFINE_enum("mode", "multitask", ["random", "tpe", "single", "multitask", "transfer",
                                        "protocol", "report", "export", "predict"],
                  "What to run. random: random search (the paper's RS baseline). tpe: Optuna's "
                  "TPE sampler, one study per task (a baseline). single: one "
                  "controller per task (NAML). multitask: one controller over all --tasks, each "
                  "trial's task drawn uniformly, task embeddings the only task-specific weights. "
                  "transfer: load --controller_dir, add a fresh task embedding per task, train on "
                  "(T-NAML). protocol: the paper's whole experiment from --protocol_config "
                  "(pre-training, then random/single/transfer on held-out tasks over seeds), "
                  "every run in its own folder under --experiment_dir, then the report. report: "
                  "write <experiment_dir>/report.md with figures from every run found under "
                  "--experiment_dir. export: re-train the best configurations of the search in "
                  "--experiment_dir and write the most robust as a SavedModel to --export_dir. "
                  "predict: classify --input with the model in --model_dir, writing --output.")
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
                    "controller/ folder, or the experiment directory holding it). Default: the "
                    "controller shipped in automl_transfer/pretrained/ for the search space.")
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
flags.DEFINE_boolean("fine_tune_images", False, "Let the fine_tune decision really train an image "
                     "module's CNN weights (with the deep tower's learning rate, for the trial's "
                     "training samples). Off: image modules train their cached frozen features "
                     "either way, since a fine-tuned 1,000,000-sample trial takes 3-58 hours on "
                     "2 CPU cores (docs/modules.md); turn it on where a GPU makes that affordable.")
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
flags.DEFINE_string("export_dir", None, "--mode=export: where the SavedModel and its card.json go.")
flags.DEFINE_integer("export_top_k", 5, "--mode=export: distinct configurations (best validation "
                     "accuracy first) re-trained with fresh seeds; the best mean is exported.",
                     lower_bound=1)
flags.DEFINE_string("model_dir", None, "--mode=predict: an exported model (--mode=export).")
flags.DEFINE_string("input", None, "--mode=predict: CSV with a `text` column, or .txt with one "
                    "text per line.")
flags.DEFINE_string("output", None, "--mode=predict: CSV to write: the input's columns, the "
                    "predicted `label` and p_<class> per class.")
flags.DEFINE_integer("max_in_flight", None, "Trials evaluated at once. Default: one per CPU "
                     "for --mode=random (its trials do not depend on each other: the same trials, "
                     "about 1.5x faster on 2 cores), 1 for the other modes (a searcher that learns "
                     "from results then gives the same trials for the same seed). 1 runs trials "
                     "in this process; more uses that many workers (--executor), capped at the "
                     "CPUs available. --mode=protocol passes it to each of its runs (with "
                     "parallel_runs > 1, 1 keeps runs from competing for the CPUs).", lower_bound=1)
flags.DEFINE_boolean("verbose", False, "Show TensorFlow's own log (hidden by default: on a CPU "
                     "machine it starts with CUDA and oneDNN notices that are not errors).")
flags.DEFINE_enum("executor", "process", ["process", "ray"], "Where trials run when "
                  "more than one is in flight: 'process' (worker processes on this machine) or 'ray' (a "
                  "pool of Ray workers, local or on a cluster, see --ray_address; also with "
                  "--max_in_flight=1). Ray: pip install -e \".[ray]\"; docs/cluster.md.")
flags.DEFINE_string("ray_address", "", "--executor=ray: '' starts a local Ray sized to this "
                    "machine; 'auto' or host:port joins a running cluster (`ray start --head`).")

RESUME_HINT = "rerun the same command to resume"


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
        ("entropy_weight", FLAGS.entropy_weight), ("max_in_flight", FLAGS.max_in_flight))
        if value is not None]
    passed += [f"--module_handles={','.join(FLAGS.module_handles)}"] if FLAGS.module_handles else []
    passed += ["--fine_tune_images"] if FLAGS.fine_tune_images else []
    failures = run_protocol(config, FLAGS.experiment_dir, passed,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
    _report()
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


def _required(*names: str) -> None:
    for name in names:
        if not FLAGS[name].value:
            raise UserError(f"--mode={FLAGS.mode} needs --{name}")


def _export() -> int:
    from automl_transfer.export import export_model
    _required("experiment_dir", "export_dir")
    task = None
    if FLAGS["tasks"].present:
        if len(FLAGS.tasks) != 1:
            raise UserError("--mode=export: name one task with --tasks")
        task = task_lib.task_name(FLAGS.tasks[0])
    card = export_model(FLAGS.experiment_dir, FLAGS.export_dir, task, top_k=FLAGS.export_top_k,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"exported {card['task']} to {FLAGS.export_dir}: valid {card['valid_accuracy']:.4f}, "
          f"test {card['test_accuracy']:.4f} (trials {card['trial_ids']})")
    return 0


def _predict() -> int:
    from automl_transfer.predict import predict_file
    _required("model_dir", "input", "output")
    count = predict_file(FLAGS.model_dir, FLAGS.input, FLAGS.output,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"{count} predictions written to {FLAGS.output}", flush=True)
    return 0


def _run(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise UserError(f"unexpected argument {argv[1]!r} (flags look like --name=value)")
    if FLAGS.cache_dir:  # decoded images (images.py) follow --cache_dir too, in child processes as well
        os.environ[paths.CACHE_DIR_ENV] = FLAGS.cache_dir
    if FLAGS.mode == "export":
        return _export()
    if FLAGS.mode == "predict":
        return _predict()
    if FLAGS.experiment_dir is None:
        FLAGS.experiment_dir = str(Path("experiments") / FLAGS.mode) if FLAGS.mode != "report" \
            else "experiments"
    if FLAGS.mode == "protocol" and FLAGS.overwrite:
        raise UserError("--overwrite is not supported with --mode=protocol: remove the "
                        "protocol's directory to start afresh")
    if FLAGS.mode == "report":
        return _report()
    if FLAGS.mode == "protocol":
        resolve_settings(FLAGS.preset, FLAGS.learning_rate, FLAGS.entropy_weight)
        return _protocol()
    options = SearchOptions(
        mode=FLAGS.mode, tasks=FLAGS.tasks, trials=FLAGS.trials,
        experiment_dir=FLAGS.experiment_dir, seed=FLAGS.seed, controller_dir=FLAGS.controller_dir,
        preset=FLAGS.preset, learning_rate=FLAGS.learning_rate,
        entropy_weight=FLAGS.entropy_weight, data_dir=FLAGS.data_dir, cache_dir=FLAGS.cache_dir,
        modules=FLAGS.modules, module_handles=FLAGS.module_handles, space=FLAGS.space,
        fine_tune_images=FLAGS.fine_tune_images, overwrite=FLAGS.overwrite, tensorboard=FLAGS.tensorboard,
        max_in_flight=FLAGS.max_in_flight, executor=FLAGS.executor,
        ray_address=FLAGS.ray_address)
    trials = run_search(options, log=lambda line: print(line, flush=True))
    task_names = [task_lib.task_name(t) for t in FLAGS.tasks if t.strip()]
    print("\n".join(summary(trials, task_names, FLAGS.fine_tune_images)))
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
    cli_process.quiet_tensorflow_import()  # every mode: report, export and predict load it late
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
