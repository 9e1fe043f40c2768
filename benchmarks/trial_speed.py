"""Trial wall time of our child vs the plain Keras way, on the same random configurations.

For each task, the same seeded random configurations (RandomSearcher over the whole space) are
run by our `evaluate` in one process and by benchmarks/keras_baseline_child.py in another (legacy
tf-keras must be chosen before TensorFlow loads; separate processes also give each way its own
peak RSS). Prints median, mean and p90 trial wall time, peak RSS and the mean ratio.

Usage: python benchmarks/trial_speed.py [--trials 50] [--keras_trials 50] [--tasks sms_spam,subj]
           [--modules_dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def module_handles(modules_dir: Path) -> dict[str, str]:
    """Built modules under `modules_dir` (one SavedModel directory per module name)."""
    return {d.name: str(d) for d in sorted(modules_dir.iterdir()) if (d / "saved_model.pb").is_file()}


def make_job(task: str, handles: dict[str, str], trials: int, seed: int) -> dict:
    from automl_transfer.search_space import SearchSpace
    from automl_transfer.searchers.random_search import RandomSearcher

    searcher = RandomSearcher(SearchSpace(list(handles)), seed=seed)
    suggested = [searcher.suggest(i, task, list(handles)) for i in range(trials)]
    return {"task": task, "handles": handles,
            "trials": [{"config": t.config.to_dict(), "seed": t.seed} for t in suggested]}


def run_ours(job_path: str, out_path: str) -> None:
    """Worker: our evaluate() on every configuration of the job, in this process."""
    from automl_transfer.child.evaluate import TaskRef, evaluate
    from automl_transfer.search_space import Config

    job = json.loads(Path(job_path).read_text())
    results = []
    for item in job["trials"]:
        start = time.perf_counter()
        r = evaluate(Config.from_dict(item["config"]), TaskRef(job["task"]), job["handles"], item["seed"])
        results.append({"status": r.status.value, "valid_accuracy": r.valid_accuracy, "steps": r.steps,
                        "wall_time_s": time.perf_counter() - start, "setup_time_s": r.setup_time_s,
                        "train_time_s": r.train_time_s, "eval_time_s": r.eval_time_s, "error": r.error})
        print(json.dumps(results[-1]), flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_path).write_text(json.dumps({"trials": results, "peak_rss_mb": peak_mb}))


def run_worker(command: list[str], out_path: str) -> dict:
    subprocess.run(command, check=True, cwd=REPO_ROOT)  # per-trial lines go to our stdout
    return json.loads(Path(out_path).read_text())


def summary(times: list[float]) -> str:
    import numpy as np

    t = np.array(times)
    return f"median {np.median(t):7.3f} s  mean {t.mean():7.3f} s  p90 {np.percentile(t, 90):7.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--keras_trials", type=int, default=None,
                        help="run the Keras way on the first K configurations only (default: all)")
    parser.add_argument("--tasks", default="sms_spam,subj")
    parser.add_argument("--modules_dir", default=None, help="default: <cache_dir>/modules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["ours"], help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_ours(args.job, args.out)
        return
    from automl_transfer import paths

    handles = module_handles(Path(args.modules_dir) if args.modules_dir else paths.cache_dir() / "modules")
    keras_trials = args.trials if args.keras_trials is None else min(args.keras_trials, args.trials)
    print(f"modules: {', '.join(handles)}; {args.trials} configurations per task "
          f"(Keras way: first {keras_trials})")
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            job = make_job(task, handles, args.trials, args.seed)
            job_path, ours_out = f"{tmp}/{task}.json", f"{tmp}/{task}.ours.json"
            Path(job_path).write_text(json.dumps(job))
            ours = run_worker([sys.executable, __file__, "--worker", "ours", "--job", job_path,
                               "--out", ours_out], ours_out)
            keras_job = dict(job, trials=job["trials"][:keras_trials])
            keras_path, keras_out = f"{tmp}/{task}.keras_job.json", f"{tmp}/{task}.keras.json"
            Path(keras_path).write_text(json.dumps(keras_job))
            keras = run_worker([sys.executable, str(REPO_ROOT / "benchmarks" / "keras_baseline_child.py"),
                                keras_path, keras_out], keras_out)
            ours_times = [t["wall_time_s"] for t in ours["trials"]]
            keras_times = [t["wall_time_s"] for t in keras["trials"]]
            statuses = {s: sum(t["status"] == s for t in ours["trials"]) for s in
                        ("completed", "diverged", "failed")}
            print(f"\n== {task}")
            print(f"ours  ({len(ours_times)} trials): {summary(ours_times)}  peak RSS "
                  f"{ours['peak_rss_mb']:.0f} MB  statuses {statuses}")
            print(f"ours  (first {keras_trials}):   {summary(ours_times[:keras_trials])}")
            print(f"keras (first {keras_trials}):   {summary(keras_times)}  peak RSS "
                  f"{keras['peak_rss_mb']:.0f} MB  failed "
                  f"{sum(t['status'] == 'failed' for t in keras['trials'])}")
            parts = {k: sum(t[k] for t in ours["trials"]) / len(ours_times)
                     for k in ("setup_time_s", "train_time_s", "eval_time_s")}
            print("ours mean split: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
            ratio = (sum(keras_times) / len(keras_times)) / (sum(ours_times[:keras_trials]) / keras_trials)
            print(f"mean ratio keras/ours on the same {keras_trials} configurations: {ratio:.1f}x")
            for i, t in enumerate(ours["trials"]):
                if t["status"] == "failed":
                    print(f"  ours trial {i} failed: {t['error']}")


if __name__ == "__main__":
    main()
