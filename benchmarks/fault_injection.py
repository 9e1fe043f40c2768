"""Fault injection: kill -9 real runs at random moments, resume each, check nothing is lost.

Each of `--runs` runs is the real CLI on tiny real tasks (200 rows of sms_spam and subj from
../shared, a 2000-word GloVe module: tests/cli_helpers.py), alternating random search and the
multitask controller, with --max_in_flight 1 and 2. Each is killed with SIGKILL at a seeded
random moment: once the store holds a random number k of trials (0 <= k < budget), a random
0-3 s later, so the kill lands anywhere from start-up to the last trial, with trials in flight or
between them. Then the same command is rerun to completion. Per run it checks:
- lost: trials of the budget missing from the store after the resume (must be 0);
- rerun: trials stored before the kill that the resume ran again (a changed row; must be 0);
- consistent: the searcher checkpoint (and the state committed with the last trial) has learned
  from exactly the stored trials, and the resume, which restores it, exited 0;
- orphans: worker processes still alive one second after their parent was killed (the process
  group is then killed so none piles up).

    python benchmarks/fault_injection.py [--runs 30] [--seed 0] [--out /tmp/fault_injection]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cli_helpers import alive, command, descendants, env, finished_count, rows  # noqa: E402

from automl_transfer import paths  # noqa: E402

TRIALS = 2  # per task: 4 trials per run
MODES = ("random", "multitask")


def _searcher_seen(experiment_dir: Path) -> tuple[int | None, int | None]:
    """(trials_seen of the checkpoint folder, of the state committed with the last trial)."""
    checkpoints = [p for p in experiment_dir.glob("*/checkpoint.json") if p.parent.name in
                   ("searcher", "controller")]
    checkpoint = json.loads(checkpoints[0].read_text())["trials_seen"] if checkpoints else None
    db = sqlite3.connect(experiment_dir / "trials.sqlite")
    try:
        found = db.execute("SELECT value FROM meta WHERE key = 'searcher_state'").fetchone()
    finally:
        db.close()
    return checkpoint, json.loads(found[0])["trials_seen"] if found else None


def _wait_for_kill_moment(proc: subprocess.Popen, store: Path, stored: int, delay_s: float
                          ) -> bool:
    """Wait until `store` holds `stored` trials, then `delay_s`; True if the run ended first."""
    while proc.poll() is None and finished_count(store) < stored:
        time.sleep(0.2)
    try:
        proc.wait(timeout=delay_s)
        return True
    except subprocess.TimeoutExpired:
        return False


def one_run(index: int, workdir: Path, out: Path, stored: int, delay_s: float) -> dict:
    mode, in_flight = MODES[index % 2], 1 + (index // 2) % 2
    exp = out / f"run{index:02d}"
    args = command(workdir, exp, f"--max_in_flight={in_flight}", "--notensorboard",
                   trials=TRIALS, mode=mode)
    if mode != "random":  # random search keeps the helpers' seed, whose trials are all cheap
        args.append(f"--seed={index}")
    proc = subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    store = exp / "trials.sqlite"
    finished_first = _wait_for_kill_moment(proc, store, stored, delay_s)
    workers = descendants(proc.pid)
    proc.kill()
    proc.wait()
    time.sleep(1.0)  # a benchmark, not a test: give dying workers a moment before counting
    orphans = sum(alive(pid) for pid in workers if pid != proc.pid) if not finished_first else 0
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # leave nothing behind, whatever the count said
    except ProcessLookupError:
        pass
    before = rows(store) if store.exists() else []
    resumed = subprocess.run(args, env=env(), capture_output=True, text=True)
    after = rows(store) if store.exists() else []
    budget = TRIALS * 2
    kept = {row[0]: row for row in after}
    checkpoint, committed = _searcher_seen(exp) if store.exists() else (None, None)
    return {
        "run": index, "mode": mode, "in_flight": in_flight,
        "kill_at": f"{stored} stored + {delay_s:.1f} s",
        "finished_before_kill": finished_first, "stored_at_kill": len(before),
        "orphans": orphans, "resume_rc": resumed.returncode,
        "lost": len(set(range(budget)) - set(kept)),
        "duplicated": len(after) - len(kept) + sum(kept.get(row[0]) != row for row in before),
        "consistent": resumed.returncode == 0 and checkpoint == committed == len(after),
        "error": resumed.stderr.strip().splitlines()[-1] if resumed.returncode else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--out", default=None, help="where the runs go (default: a temp dir)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="fault_injection_"))
    out.mkdir(parents=True, exist_ok=True)
    from cli_helpers import make_workdir
    workdir = make_workdir(out, paths.data_dir())
    rng = random.Random(args.seed)
    columns = ("run", "mode", "in_flight", "kill_at", "finished_before_kill", "stored_at_kill",
               "orphans", "resume_rc", "lost", "duplicated", "consistent")
    print(" | ".join(columns), flush=True)
    results = []
    for index in range(args.runs):
        result = one_run(index, workdir, out, rng.randrange(TRIALS * 2), rng.uniform(0.0, 3.0))
        results.append(result)
        error = f" | {result['error']}" if result["error"] else ""
        print(" | ".join(str(result[c]) for c in columns) + error, flush=True)
    mid_run = [r for r in results if not r["finished_before_kill"]]
    print(f"\n{len(results)} runs ({len(mid_run)} killed mid-run, "
          f"{sum(r['stored_at_kill'] > 0 for r in mid_run)} of them with trials stored): "
          f"lost {sum(r['lost'] for r in results)}, duplicated "
          f"{sum(r['duplicated'] for r in results)}, inconsistent "
          f"{sum(not r['consistent'] for r in results)}, runs leaving orphans "
          f"{sum(r['orphans'] > 0 for r in results)} ({sum(r['orphans'] for r in results)} "
          f"processes); outputs in {out}")
    clean = all(r["consistent"] and not r["lost"] and not r["duplicated"] for r in results)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
