"""The experiment report: `write_report(dir)` writes DIR/report.md with PNG figures beside it.

It reports whatever runs it finds under the directory and says what is missing instead of failing
(a lone random-search run gets a smaller report). docs/report.md explains each table and figure.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from automl_transfer import metrics
from automl_transfer.errors import UserError
from automl_transfer.report import figures, markdown
from automl_transfer.report.loading import (Run, load_runs, load_task_embeddings, method_label,
                                            method_order)
from automl_transfer.report.tables import COMPARED_METHODS, RANDOM, TABLE_METHODS, table1_row
from automl_transfer.search_space import Config
from automl_transfer.trial import Status, Trial

__all__ = ["write_report"]

REPORT_NAME = "report.md"
# task -> method -> finished trials of one run (one seed) each
Groups = dict[str, dict[str, list[list[Trial]]]]


def _group(runs: list[Run], short_of_budget: list[str] | None = None) -> Groups:
    """Finished trials by task and method. With `short_of_budget`, a run with fewer finished
    trials on a task than its budget (`trials_per_task`; a run still going) is left out and named
    there: Table 1's target is RS at its full budget, and a partial run would lower it."""
    groups: Groups = {}
    for run in runs:
        budget = run.settings.get("trials_per_task")
        for task in run.tasks:
            finished = run.finished(task)
            if (short_of_budget is not None and run.method in TABLE_METHODS and budget
                    and len(finished) < budget):
                short_of_budget.append(f"{run.label} ({task}: {len(finished)}/{budget})")
            elif finished:
                groups.setdefault(task, {}).setdefault(run.method, []).append(finished)
    return groups


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"


def _table1_section(runs: list[Run], top_n: int, notes: list[str]) -> list[str]:
    short_of_budget: list[str] = []
    groups = _group(runs, short_of_budget)
    if short_of_budget:
        notes.append("Table 1 leaves out the runs short of their budget (still running or "
                     f"stopped): {', '.join(short_of_budget)}.")
    methods = sorted({m for by_method in groups.values() for m in by_method})
    tasks = [t for t, by in sorted(groups.items())
             if by.get(RANDOM) and any(by.get(m) for m in COMPARED_METHODS)]
    lines = [f"## Table 1: trials to reach random search's accuracy-top{top_n}", ""]
    if not tasks:
        notes.append("Table 1 needs random search and tpe, single or transfer runs on the same "
                     "task; found "
                     f"methods: {', '.join(methods) or 'none'}.")
        return lines + ["Not available: see *Missing* below.", ""]
    for method in COMPARED_METHODS:
        if not any(groups[t].get(method) for t in tasks):
            notes.append(f"no {method} runs found: Table 1's {method_label(method)} columns say "
                         "'no runs'.")
    rows = [table1_row(task, groups[task], top_n) for task in tasks]
    return lines + [
        f"Target: random search's validation accuracy-top{top_n} at its full budget (mean over "
        "its seeds). Trials to target: first trial at which the method's validation "
        f"accuracy-top{top_n} reaches it (mean ± 2 s.e.m. over seeds). Speed-up over RS, per "
        "seed pair (seed k of the method against seed k of RS, each against that RS run's own "
        f"final accuracy-top{top_n}): RS trials to reach it / the method's trials to reach it. "
        f"The columns 'from trial {top_n}' count a target as reached only from the {top_n}th "
        f"trial on, for both searches: before that an accuracy-top{top_n} is a mean over fewer "
        "trials, and one lucky first trial would look like a huge speed-up. So a speed-up "
        f"from trial {top_n} is at most RS's trials to target / {top_n} (for a budget of 100 "
        "trials: at most 10, and 10 only if RS needs all 100). "
        f"Test accuracy-top{top_n} (%) at the fixed budget, the smallest budget common to every "
        "run of the task, ± 2 s.e.m. (across seeds, or across the top-N trials when there is "
        "one seed, as noted).",
        "", markdown.table1(rows, top_n), ""]


def _curves_section(root: Path, groups: Groups, top_n: int) -> list[str]:
    curves = {task: {m: [metrics.top_n_curve(trials, top_n) for trials in seeds]
                     for m, seeds in by_method.items()} for task, by_method in groups.items()}
    lines = [f"## Learning curves (accuracy-top{top_n} vs trials)", "",
             "Mean over seeds; the band is ± 1 s.e.m. across seeds (one seed: across its top-N "
             "trials).", ""]
    for split, name in (("test", "test"), ("valid", "validation")):
        path = figures.learning_curves(curves, split, top_n, root / f"learning_curves_{split}.png")
        lines += [f"![{name} accuracy-top{top_n}]({path.name})", ""]
    return lines


def _embeddings_section(root: Path, runs: list[Run], notes: list[str]) -> list[str]:
    lines = ["## Task embedding similarity", ""]
    controllers = [run for run in runs if run.controller_dir is not None]
    if not controllers:
        notes.append("no controller directories found (a SavedModel in <run>/controller/): the task-embedding similarity needs a saved single, "
                     "multitask or transfer controller.")
        return lines + ["Not available: see *Missing* below.", ""]
    for run in controllers:
        found = load_task_embeddings(run.controller_dir)
        if found is None:
            notes.append(f"{run.controller_dir}: the controller embeddings are missing (no "
                         "'task_embedding' variable or no JSON file with a 'tasks' list).")
            continue
        names, matrix = found
        path = root / f"task_similarity_{_safe(run.label)}.png"
        path.write_bytes(figures.similarity_heatmap_png(names, matrix, f"{run.label}"))
        lines += [f"Cosine similarity of the learned task embeddings of `{run.label}` "
                  f"({method_label(run.method)}):", "", f"![task similarity]({path.name})", ""]
    return lines


def _options_section(root: Path, groups: Groups, decision: str, window: int) -> list[str]:
    lines = [f"## Option probability of decision '{decision}' over trials", "",
             f"Share of each option among the last {window} trials (the empirical sampling "
             "probability of the searcher), averaged over seeds.", ""]
    for method in method_order({m for by_method in groups.values() for m in by_method}):
        per_task = {}
        for task, by_method in groups.items():
            per_seed = [metrics.option_frequencies(
                [trial.config.to_dict()[decision] for trial in trials], window)
                for trials in by_method.get(method, [])]
            if not per_seed:
                continue
            length = min(len(trials) for trials in by_method[method])
            options = {o for freqs in per_seed for o in freqs}
            per_task[task] = {o: np.mean([f.get(o, np.zeros(length))[:length] for f in per_seed], 0)
                              for o in options}
        path = figures.option_frequencies(
            per_task, decision, window, f"{method_label(method)}: {decision}",
            root / f"option_probability_{_safe(decision)}_{_safe(method)}.png")
        lines += [f"![{method_label(method)} {decision}]({path.name})", ""]
    return lines


def _best_section(runs: list[Run]) -> list[str]:
    best: dict[str, tuple[Run, Trial]] = {}
    for run in runs:
        for trial in run.trials:
            if not trial.finished or trial.result.status != Status.COMPLETED:
                continue
            current = best.get(trial.task)
            if current is None or trial.result.valid_accuracy > current[1].result.valid_accuracy:
                best[trial.task] = (run, trial)
    rows = [(task, run, trial) for task, (run, trial) in sorted(best.items())]
    return ["## Best configuration per task (by validation accuracy)", "",
            markdown.best_configs(rows) if rows else "No completed trial.", ""]


def write_report(experiment_dir: str | Path, *, top_n: int = metrics.DEFAULT_TOP_N,
                 decision: str = "module", window: int = 50) -> Path:
    """Write DIR/report.md and its figures from every run under `experiment_dir`.

    Args:
        top_n: N of accuracy-topN (the paper: 10).
        decision: the decision whose option probabilities are plotted over trials.
        window: trials in the sliding window of that plot.
    Returns:
        The path of report.md.
    """
    root = Path(experiment_dir)
    fields = [f.name for f in dataclasses.fields(Config)]
    if decision not in fields:
        raise UserError(f"unknown decision '{decision}': choose one of {', '.join(fields)}")
    runs, notes = load_runs(root)
    if not runs:  # an empty report would look like a result
        found = f" ({notes[0]})" if notes else " (no trials.sqlite under it)"
        raise UserError(f"{root}: no run to report{found}: point --experiment_dir at a "
                        f"directory holding runs")
    groups = _group(runs)
    lines = [f"# Experiment report: {root.resolve().name}", "", "## Runs", ""]
    if not groups:
        notes.append(f"no finished trials in any trial store ({len(runs)} found) under {root}.")
        lines += [markdown.runs(runs), ""]
    else:
        lines += [markdown.runs(runs), ""]
        lines += _table1_section(runs, top_n, notes)
        lines += _curves_section(root, groups, top_n)
        lines += _embeddings_section(root, runs, notes)
        lines += _options_section(root, groups, decision, window)
        lines += _best_section(runs)
    lines += ["## Missing", ""] + ([f"- {note}" for note in notes] or ["Nothing."]) + [""]
    path = root / REPORT_NAME
    path.write_text("\n".join(lines))
    return path
