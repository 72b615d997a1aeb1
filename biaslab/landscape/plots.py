"""PNG figures of 1D curves and 2D surfaces.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas, so nothing here touches
pyplot's global state or the backend that the calling program has chosen. In every 2D figure,
direction 1 (a, axis 0 of the stored array) is the horizontal axis and direction 2 (b) the vertical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colors, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRIC_LABELS = {"ce": "cross-entropy", "mse": "MSE", "acc": "accuracy"}
AXIS_LABELS = ("direction 1 (a)", "direction 2 (b)")
CONTOUR_LEVELS = 30


def describe(split: str = "", model: str = "") -> str:
    """Return the ", test split, resnet20" part of a title for what is given."""
    parts = []
    if split:
        parts.append(f"{split} split")
    if model:
        parts.append(model)
    return "".join(f", {part}" for part in parts)


def plot_curves_1d(path: Path, a: np.ndarray, curves: dict[str, np.ndarray], context: str = "") -> Path:
    """Plot CE, MSE and accuracy panels: thin per-direction lines, the mean and a +-1 std band."""
    figure = Figure(figsize=(15, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    for column, metric in enumerate(("ce", "mse", "acc")):
        axes = figure.add_subplot(1, 3, column + 1)
        values = np.asarray(curves[metric], dtype=np.float64)
        for row in values:
            axes.plot(a, row, color="tab:blue", linewidth=0.5, alpha=0.3)
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        axes.fill_between(a, mean - std, mean + std, color="tab:orange", alpha=0.3, label="mean +- 1 std")
        axes.plot(a, mean, color="tab:orange", linewidth=2.0, label=f"mean of {len(values)} directions")
        axes.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
        axes.set_xlabel("step along direction (a)")
        axes.set_ylabel(METRIC_LABELS[metric])
        axes.set_title(f"{METRIC_LABELS[metric]}, 1D{context}")
        axes.legend(loc="best", fontsize="small")
    figure.savefig(path, dpi=100)
    return Path(path)


def plot_contour_2d(
    path: Path, a: np.ndarray, b: np.ndarray, values: np.ndarray, metric: str, context: str = "", log: bool = False
) -> Path:
    """Plot filled contours with contour lines, a colorbar and a marker at the center.

    With ``log=True`` the color scale is logarithmic and cells that are zero, negative, NaN or
    infinite are masked (left blank).
    """
    values = np.asarray(values, dtype=np.float64)
    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)

    # contour functions take Z with rows along the vertical axis, which is b here
    grid = values.T
    scale = "log scale" if log else "linear scale"
    if log:
        grid = np.ma.masked_where(~(np.isfinite(grid) & (grid > 0)), grid)
    else:
        grid = np.ma.masked_invalid(grid)

    if grid.count() == 0:
        axes.text(0.5, 0.1, "no values to show on this scale", ha="center", va="center", transform=axes.transAxes)
    elif np.ma.min(grid) == np.ma.max(grid):
        axes.text(0.5, 0.1, f"constant value {np.ma.min(grid):.6g}", ha="center", va="center", transform=axes.transAxes)
    elif log:
        lowest, highest = float(np.ma.min(grid)), float(np.ma.max(grid))
        levels = np.geomspace(lowest, highest, CONTOUR_LEVELS)
        filled = axes.contourf(a, b, grid, levels=levels, norm=colors.LogNorm(lowest, highest), cmap="viridis")
        axes.contour(a, b, grid, levels=levels, colors="black", linewidths=0.4)
        colorbar = figure.colorbar(filled, ax=axes, label=f"{METRIC_LABELS[metric]} (log scale)")
        ticks = ticker.LogLocator(subs=(1.0, 2.0, 5.0)).tick_values(lowest, highest)
        colorbar.set_ticks([tick for tick in ticks if lowest <= tick <= highest])
        colorbar.ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
        colorbar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        filled = axes.contourf(a, b, grid, levels=CONTOUR_LEVELS, cmap="viridis")
        axes.contour(a, b, grid, levels=filled.levels, colors="black", linewidths=0.4)
        figure.colorbar(filled, ax=axes, label=METRIC_LABELS[metric])

    axes.plot([0.0], [0.0], marker="*", markersize=12, color="red", linestyle="none", label="trained weights")
    axes.legend(loc="upper right", fontsize="small")
    axes.set_xlabel(AXIS_LABELS[0])
    axes.set_ylabel(AXIS_LABELS[1])
    axes.set_xlim(a[0], a[-1])
    axes.set_ylim(b[0], b[-1])
    axes.set_aspect("equal")
    axes.set_title(f"{METRIC_LABELS[metric]}, 2D contour, {scale}{context}")
    figure.savefig(path, dpi=100)
    return Path(path)


def plot_surface_3d(path: Path, a: np.ndarray, b: np.ndarray, values: np.ndarray, metric: str, context: str = "") -> Path:
    """Plot the surface in 3D. NaN and infinite cells are left as holes."""
    values = np.asarray(values, dtype=np.float64)
    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1, projection="3d")
    a_grid, b_grid = np.meshgrid(a, b, indexing="ij")
    finite = np.isfinite(values)
    if np.any(finite):
        finite_values = np.where(finite, values, np.nan)
        norm = colors.Normalize(np.min(values[finite]), np.max(values[finite]))
        surface = axes.plot_surface(a_grid, b_grid, finite_values, cmap="viridis", norm=norm, linewidth=0, antialiased=True)
        figure.colorbar(surface, ax=axes, shrink=0.6, pad=0.1)
    else:
        axes.text2D(0.5, 0.5, "no finite values", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(AXIS_LABELS[0])
    axes.set_ylabel(AXIS_LABELS[1])
    axes.set_zlabel(METRIC_LABELS[metric])
    axes.set_title(f"{METRIC_LABELS[metric]}, 3D surface{context}")
    figure.savefig(path, dpi=100)
    return Path(path)
