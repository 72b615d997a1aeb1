"""PNG figures of a report: overlaid 1D curves, 2D contours and 3D surfaces of all runs, the
flatness numbers against the generalization error, and per-class scores.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas, so pyplot's global state
is never touched. In 2D figures direction 1 (a, axis 0 of the stored array) is horizontal.
Each function returns the path it wrote, or None when no run has the data it draws.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import colormaps, colors, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from biaslab.report_data import Correlation, RunData, StudyTable

METRIC_LABELS = {"ce": "cross-entropy", "mse": "MSE", "acc": "accuracy"}
CONTOUR_LEVELS = 25
PANEL_COLUMNS = 3
SCATTER_COLUMNS = 4
DPI = 100


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def bias_colors(runs: Sequence[RunData]) -> dict[str, tuple]:
    """Give each bias label one color, the same in every figure and for every model."""
    labels = list(dict.fromkeys(run.bias_label for run in runs))
    palette = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: palette(index % palette.N) for index, label in enumerate(labels)}


def plot_curves_1d(runs: Sequence[RunData], path: Path) -> Path | None:
    """Overlay the mean 1D curves of all runs with a band of +-1 standard deviation over directions.

    One row per model, one column each for cross-entropy and MSE.
    """
    with_curves = [run for run in runs if run.curves is not None]
    if not with_curves:
        return None
    models = list(dict.fromkeys(run.model for run in with_curves))
    palette = bias_colors(runs)
    figure = _new_figure(12, 4.2 * len(models))
    for row, model in enumerate(models):
        for column, metric in enumerate(("ce", "mse")):
            axes = figure.add_subplot(len(models), 2, row * 2 + column + 1)
            for run in (run for run in with_curves if run.model == model):
                a = run.curves.coordinates["a"]
                statistics = run.curves.curve_statistics()
                mean, std = statistics[f"{metric}_mean"], statistics[f"{metric}_std"]
                color = palette[run.bias_label]
                axes.fill_between(a, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
                directions = run.curves.done.shape[0]
                axes.plot(a, mean, color=color, linewidth=1.8, label=f"{run.bias_label} ({directions} dir.)")
            axes.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
            axes.set_xlabel("step along the direction (a)")
            axes.set_ylabel(METRIC_LABELS[metric])
            axes.set_title(f"{model}: 1D {METRIC_LABELS[metric]}, mean and +-1 std over directions")
            axes.legend(fontsize="small", loc="upper center")
    figure.savefig(path, dpi=DPI)
    return Path(path)


def _shared_scale(values: Sequence[np.ndarray], log: bool) -> tuple[colors.Normalize, np.ndarray] | None:
    """Return one color norm and contour levels for all surfaces, from their finite values."""
    finite = np.concatenate([array[np.isfinite(array)].ravel() for array in values])
    if log:
        finite = finite[finite > 0]
    if finite.size == 0:
        return None
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low * 1.01 + 1e-12
    if log:
        return colors.LogNorm(low, high), np.geomspace(low, high, CONTOUR_LEVELS)
    return colors.Normalize(low, high), np.linspace(low, high, CONTOUR_LEVELS)


def _panel_grid(count: int, max_columns: int = PANEL_COLUMNS) -> tuple[int, int]:
    columns = min(max_columns, count)
    return math.ceil(count / columns), columns


def plot_contours_2d(runs: Sequence[RunData], metric: str, path: Path, log: bool = False) -> Path | None:
    """Draw the 2D surface of every run as filled contours on one shared color scale."""
    with_surface = [run for run in runs if run.surface is not None]
    if not with_surface:
        return None
    scale = _shared_scale([run.surface.values[metric] for run in with_surface], log)
    if scale is None:
        return None
    norm, levels = scale
    rows, columns = _panel_grid(len(with_surface))
    figure = _new_figure(4.6 * columns + 1.2, 4.0 * rows)
    mappable = None
    all_axes = []
    for index, run in enumerate(with_surface):
        axes = figure.add_subplot(rows, columns, index + 1)
        all_axes.append(axes)
        a, b = run.surface.coordinates["a"], run.surface.coordinates["b"]
        # points not computed (NaN) or, on the log scale, not positive are left blank
        values = np.ma.masked_invalid(run.surface.values[metric].T)
        if log:
            values = np.ma.masked_less_equal(values, 0)
        mappable = axes.contourf(a, b, values, levels=levels, norm=norm, cmap="viridis", extend="neither")
        axes.contour(a, b, values, levels=levels[::3], colors="white", linewidths=0.4, alpha=0.6)
        axes.plot(0.0, 0.0, marker="+", color="red", markersize=9)
        axes.set_title(f"{run.model} {run.bias_label}", fontsize="medium")
        axes.set_xlabel("direction 1 (a)")
        axes.set_ylabel("direction 2 (b)")
        axes.set_aspect("equal")
    scale_name = "log scale" if log else "linear scale"
    bar = figure.colorbar(mappable, ax=all_axes, label=f"{METRIC_LABELS[metric]} ({scale_name}, shared by all panels)")
    bar.ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
    bar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    figure.suptitle(f"2D {METRIC_LABELS[metric]} surfaces around the trained weights")
    figure.savefig(path, dpi=DPI)
    return Path(path)


def plot_surfaces_3d(runs: Sequence[RunData], metric: str, path: Path) -> Path | None:
    """Draw the 2D surface of every run in 3D with shared z limits and colors."""
    with_surface = [run for run in runs if run.surface is not None]
    if not with_surface:
        return None
    scale = _shared_scale([run.surface.values[metric] for run in with_surface], log=False)
    if scale is None:
        return None
    norm, _ = scale
    rows, columns = _panel_grid(len(with_surface))
    figure = _new_figure(4.6 * columns, 4.2 * rows)
    for index, run in enumerate(with_surface):
        axes = figure.add_subplot(rows, columns, index + 1, projection="3d")
        a, b = run.surface.coordinates["a"], run.surface.coordinates["b"]
        grid_a, grid_b = np.meshgrid(a, b)
        values = run.surface.values[metric].T
        axes.plot_surface(grid_a, grid_b, values, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
        axes.set_zlim(norm.vmin, norm.vmax)
        axes.set_title(f"{run.model} {run.bias_label}", fontsize="medium")
        axes.set_xlabel("a")
        axes.set_ylabel("b")
        axes.set_zlabel(METRIC_LABELS[metric])
    figure.suptitle(f"2D {METRIC_LABELS[metric]} surfaces in 3D (shared z axis)")
    figure.savefig(path, dpi=DPI)
    return Path(path)


def describe_correlation(correlation: Correlation) -> str:
    """Return "Kendall tau = 0.33 (p = 0.47, n = 9)", or why tau is undefined."""
    if math.isnan(correlation.tau):
        return f"Kendall tau undefined (n = {correlation.n}, or a constant column)"
    return f"Kendall tau = {correlation.tau:.2f} (p = {correlation.p_value:.2g}, n = {correlation.n})"


def plot_flatness_scatter(table: StudyTable, correlations: Sequence[Correlation], path: Path) -> Path | None:
    """Plot each flatness number against the generalization error, one panel per number."""
    if not correlations:
        return None
    gen_error = table.column("gen_error")
    models = list(dict.fromkeys(str(row["model"]) for row in table.rows))
    marker_of = {model: marker for model, marker in zip(models, "osD^v<>")}
    color_of = {model: colormaps["tab10"](index) for index, model in enumerate(models)}
    rows, columns = _panel_grid(len(correlations), SCATTER_COLUMNS)
    # fixed spacing, because the constrained layout of dozens of panels costs many times the drawing
    figure = _new_figure(4.2 * columns, 3.4 * rows, layout=None)
    figure.subplots_adjust(left=0.25 / columns + 0.02, right=0.98, bottom=0.3 / rows, top=1 - 0.35 / rows,
                           wspace=0.35, hspace=0.55)
    for index, correlation in enumerate(correlations):
        axes = figure.add_subplot(rows, columns, index + 1)
        values = table.column(correlation.metric)
        for model in models:
            chosen = np.array([row["model"] == model for row in table.rows])
            axes.scatter(values[chosen], gen_error[chosen], marker=marker_of.get(model, "o"), color=color_of[model],
                         label=model, s=30)
        for value, error, row in zip(values, gen_error, table.rows):
            if np.isfinite(value) and np.isfinite(error):
                axes.annotate(str(row["bias"]), (value, error), fontsize=6, xytext=(3, 3), textcoords="offset points")
        axes.xaxis.set_major_locator(ticker.MaxNLocator(4))
        axes.set_ylabel("generalization error")
        axes.set_title(f"{correlation.metric}\n{describe_correlation(correlation)}", fontsize="small")
        if len(models) > 1 and index == 0:
            axes.legend(fontsize="small")
    figure.savefig(path, dpi=DPI)
    return Path(path)


def plot_per_class(runs: Sequence[RunData], path: Path) -> Path | None:
    """Draw test precision, recall and F1 per class (columns) and run (rows); the biased class is outlined."""
    class_names = next((run.class_names for run in runs if run.class_names), ())
    chosen = [run for run in runs if run.class_names == class_names]
    if not class_names or not chosen:
        return None
    figure = _new_figure(3 * (0.45 * len(class_names) + 1.0) + 2.5, max(3.5, 0.4 * len(chosen) + 2.0))
    for column, (score, title) in enumerate((("precision", "precision"), ("recall", "recall"), ("f1", "F1"))):
        axes = figure.add_subplot(1, 3, column + 1)
        matrix = np.array([[run.metrics.get(f"test_{score}_{name}", np.nan) for name in class_names]
                           for run in chosen])
        image = axes.imshow(matrix, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
        for row, run in enumerate(chosen):
            for index, name in enumerate(class_names):
                value = matrix[row, index]
                text = "n/a" if np.isnan(value) else f"{value:.2f}"
                axes.text(index, row, text, ha="center", va="center", fontsize=6)
                if run.cls and name == run.cls:
                    axes.add_patch(Rectangle((index - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="black",
                                             linewidth=2.0))
        axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize="small")
        axes.set_yticks(range(len(chosen)), [run.label for run in chosen] if column == 0 else [""] * len(chosen),
                        fontsize="small")
        axes.set_title(f"test {title} (biased class outlined)", fontsize="medium")
    figure.colorbar(image, ax=figure.axes, shrink=0.8)
    figure.savefig(path, dpi=DPI)
    return Path(path)
