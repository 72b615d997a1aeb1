"""Figures of a training run: the confusion matrix and the learning curves (PNG, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> Path:
    """Draw a row-normalized confusion matrix (rows: true class) with the counts in each cell."""
    totals = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)
    size = max(5.0, 0.6 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            color = "white" if rates[row, column] > 0.5 else "black"
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center", color=color, fontsize=8)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_history(history: Mapping[str, Sequence[float]], path: Path, title: str) -> Path:
    """Draw loss and accuracy per epoch for the training and the test (validation) split."""
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    for key, axes in (("loss", loss_axes), ("accuracy", accuracy_axes)):
        for prefix, label in (("", "train (biased labels)"), ("val_", "test")):
            values = history.get(prefix + key)
            if values:
                axes.plot(range(1, len(values) + 1), values, marker=".", label=label)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(key)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
