"""The report's figures as PNG files (matplotlib's Agg canvas: no display, no global pyplot state).

Each function takes plain arrays prepared by the report (or the TensorBoard logger) and draws
one figure; none of them reads runs.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from automl_transfer.metrics import TopNCurve, cosine_similarity
from automl_transfer.report.loading import method_label, method_order

_PANEL_SIZE = (4.0, 3.0)


def _grid(num_panels: int, max_columns: int = 4) -> tuple[Figure, list]:
    columns = min(max_columns, max(1, num_panels))
    rows = math.ceil(num_panels / columns)
    figure = Figure(figsize=(_PANEL_SIZE[0] * columns, _PANEL_SIZE[1] * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for extra in axes[num_panels:]:
        extra.set_visible(False)
    return figure, list(axes[:num_panels])


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=100)
    return path


def mean_band(series: Sequence[np.ndarray], sems: Sequence[np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
    """At each trial, the mean over the seeds that reached it and its s.e.m. (one seed: its
    own s.e.m.), to the longest seed: a seed still running neither cuts the others' curves
    short nor is padded (the legend says how many seeds each point averages)."""
    length = max(len(s) for s in series)
    mean, band = np.empty(length), np.empty(length)
    for i in range(length):
        present = [k for k, s in enumerate(series) if len(s) > i]
        values = np.array([series[k][i] for k in present], dtype=float)
        mean[i] = values.mean()
        band[i] = sems[present[0]][i] if len(present) == 1 else values.std(ddof=1) / math.sqrt(len(present))
    return mean, band


def _seeds_label(lengths: Sequence[int]) -> str:
    """'2 seeds', or '2 seeds to trial 25, then 1' when a seed is still running."""
    counts = f"{len(lengths)} seed{'s' if len(lengths) > 1 else ''}"
    if len(set(lengths)) == 1:
        return counts
    return counts + "".join(f" to trial {n}, then {sum(m > n for m in lengths)}"
                            for n in sorted(set(lengths))[:-1])


def learning_curves(curves: Mapping[str, Mapping[str, Sequence[TopNCurve]]], split: str,
                    top_n: int, path: Path) -> Path:
    """accuracy-topN vs trials, a panel per task, a line per method (mean over seeds, ± s.e.m.).

    Args:
        curves: task -> method -> one TopNCurve per seed.
        split: "valid" or "test".
    """
    figure, axes = _grid(len(curves))
    for ax, (task, by_method) in zip(axes, sorted(curves.items())):
        for method in method_order(list(by_method)):
            seeds = by_method[method]
            mean, sem = mean_band([getattr(c, split) for c in seeds],
                                  [getattr(c, f"{split}_sem") for c in seeds])
            x = np.arange(1, len(mean) + 1)
            lengths = [len(getattr(c, split)) for c in seeds]
            line, = ax.plot(x, mean, label=f"{method_label(method)} ({_seeds_label(lengths)})")
            ax.fill_between(x, mean - sem, mean + sem, color=line.get_color(), alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"{'validation' if split == 'valid' else 'test'} accuracy-top{top_n}")
        ax.legend(fontsize="small")
    return _save(figure, path)


def similarity_heatmap_png(names: Sequence[str], matrix: np.ndarray, title: str = "") -> bytes:
    """Cosine similarity between task embeddings, as PNG bytes (also used by TensorBoard)."""
    similarity = cosine_similarity(matrix)
    size = max(4.0, 0.5 * len(names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(similarity, vmin=-1.0, vmax=1.0, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 12:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=ax, label="cosine similarity")
    ax.set_title(title or "task embedding similarity")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def option_frequencies(frequencies: Mapping[str, Mapping[object, np.ndarray]], decision: str,
                       window: int, title: str, path: Path) -> Path:
    """Share of each option of `decision` over a sliding window of trials, a panel per task.

    Args:
        frequencies: task -> option value -> frequency after each trial (see
            automl_transfer.metrics.option_frequencies).
    """
    figure, axes = _grid(len(frequencies))
    for ax, (task, by_option) in zip(axes, sorted(frequencies.items())):
        for option, share in sorted(by_option.items(), key=lambda item: str(item[0])):
            ax.plot(np.arange(1, len(share) + 1), share, label=str(option))
        ax.set_ylim(0.0, 1.0)
        ax.set_title(task)
        ax.set_xlabel("trials")
        ax.set_ylabel(f"P({decision}) over last {window} trials")
        ax.legend(fontsize="x-small")
    figure.suptitle(title)
    return _save(figure, path)
