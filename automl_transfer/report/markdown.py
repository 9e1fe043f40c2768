"""Markdown text of the report's tables (numbers come from tables.py and the runs)."""
from __future__ import annotations

from typing import Sequence

from automl_transfer.modules.registry import trains_when_fine_tuned
from automl_transfer.report.loading import Run, method_label
from automl_transfer.report.tables import (COMPARED_METHODS, TABLE_METHODS, Estimate,
                                           Table1Row, TrialsNeeded)
from automl_transfer.trial import Status, Trial


def percent(estimate: Estimate) -> str:
    """'85.3 ± 1.2' (accuracy in percent, ± 2 s.e.m.)."""
    return f"{100 * estimate.mean:.1f} ± {100 * estimate.half_width:.1f}"


def trials_needed(needed: TrialsNeeded | None) -> str:
    """Mean trials over seeds (± 2 s.e.m.), or 'not reached within B' — never a number then."""
    if needed is None:
        return "no runs"
    seeds = len(needed.per_seed)
    if not needed.all_reached:
        reached = sum(k is not None for k in needed.per_seed)
        partial = f" ({reached}/{seeds} seeds reached)" if seeds > 1 else ""
        return f"not reached within {needed.budget}{partial}"
    values = [float(k) for k in needed.per_seed]
    if seeds == 1:
        return str(int(values[0]))
    mean = sum(values) / seeds
    sem = (sum((v - mean) ** 2 for v in values) / (seeds - 1)) ** 0.5 / seeds ** 0.5
    return f"{mean:.0f} ± {2 * sem:.0f}"


def speedups(values: Sequence[float | None] | None) -> str:
    """'×3.1, ×5.0' per seed pair; a seed that never reached the target says so in words."""
    if values is None:
        return "no runs"
    return ", ".join(f"×{v:.1f}" if v is not None else "not reached" for v in values)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def table1(rows: Sequence[Table1Row], n: int) -> str:
    """The paper's Table 1: trials to RS's validation top-N, speed-up, test top-N at a budget."""
    header = ["task", "RS budget", f"RS valid top-{n} (target)"]
    header += [f"{method_label(m)} trials to target" for m in COMPARED_METHODS]
    header += [f"{method_label(m)} speed-up over RS" for m in COMPARED_METHODS]
    header += [f"{method_label(m)} trials to target from trial {n}" for m in COMPARED_METHODS]
    header += [f"{method_label(m)} speed-up from trial {n}" for m in COMPARED_METHODS]
    header += ["fixed budget"] + [f"{method_label(m)} test top-{n}" for m in TABLE_METHODS]
    body = []
    for row in rows:
        cells = [row.task, str(row.rs_budget), f"{100 * row.target:.1f}"]
        cells += [trials_needed(row.trials_needed.get(m)) for m in COMPARED_METHODS]
        cells += [speedups(row.speedups.get(m)) for m in COMPARED_METHODS]
        cells += [trials_needed(row.strict_trials_needed.get(m)) for m in COMPARED_METHODS]
        cells += [speedups(row.strict_speedups.get(m)) for m in COMPARED_METHODS]
        cells.append(str(row.fixed_budget))
        for method in TABLE_METHODS:
            estimate = row.test_at_budget.get(method)
            cells.append(percent(estimate) + f" ({_basis(estimate)})" if estimate else "no runs")
        body.append(cells)
    return table(header, body)


def _basis(estimate: Estimate) -> str:
    if estimate.basis == "seeds":
        return f"{estimate.num_seeds} seeds"
    return "1 seed, s.e.m. over top-N trials"


def runs(runs_: Sequence[Run]) -> str:
    """One line per run: what it is and how its trials went."""
    body = []
    for run in runs_:
        done = [t for t in run.trials if t.finished]
        bad = sum(t.result.status in (Status.DIVERGED, Status.FAILED) for t in done)
        minutes = sum(t.result.wall_time_s for t in done) / 60
        rate = f"{len(done) / minutes:.1f}" if minutes > 0 else "n/a"
        body.append([run.label, method_label(run.method), str(run.seed), ", ".join(run.tasks),
                     str(len(done)), str(len(run.trials) - len(done)), str(bad), rate])
    return table(["run", "method", "seed", "tasks", "finished", "pending", "diverged/failed",
                  "trials per minute of trial time"], body)


def best_configs(best: Sequence[tuple[str, Run, Trial]]) -> str:
    """The best trial per task by validation accuracy, its configuration in readable form."""
    body = []
    for task, run, trial in best:
        body.append([task, method_label(run.method), run.label, str(trial.trial_id),
                     f"{100 * trial.result.valid_accuracy:.1f}",
                     f"{100 * trial.result.test_accuracy:.1f}",
                     trial.config.describe(trains_when_fine_tuned(
                         trial.config.module, bool(run.settings.get("fine_tune_images"))))])
    return table(["task", "method", "run", "trial", "valid %", "test %", "configuration"], body)
