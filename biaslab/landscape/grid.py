"""Grid axes of landscape probes and the metrics computed at each grid point."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PointMetrics:
    """Cross-entropy, MSE and accuracy of the model at one grid point."""

    ce: float
    mse: float
    acc: float


METRICS = ("ce", "mse", "acc")


def make_axis(lo: float, hi: float, points: int) -> np.ndarray:
    """Return ``points`` coordinates from ``lo`` to ``hi`` that contain exactly 0.0, ``lo`` and ``hi``.

    ``points`` must be odd and ``lo < 0 < hi``. The axis is built as two halves of (points - 1) / 2
    equal steps, lo..0 and 0..hi, so 0 is the middle point. On a symmetric range the two halves
    mirror each other exactly. On an asymmetric range the step differs on the two sides.
    """
    if points < 3 or points % 2 == 0:
        raise ValueError(f"an axis needs an odd number of points, at least 3, got {points}")
    if not lo < 0.0 < hi:
        raise ValueError(f"an axis range must contain 0 inside it, got [{lo}, {hi}]")
    half = (points - 1) // 2

    # linspace returns its end points exactly, so the products below are exactly lo, 0.0 and hi
    fractions = np.linspace(0.0, 1.0, half + 1)
    negative = lo * fractions[::-1][:-1]
    positive = hi * fractions
    axis = np.concatenate([negative, positive])

    if not (axis[0] == lo and axis[half] == 0.0 and axis[-1] == hi and np.all(np.diff(axis) > 0)):
        raise RuntimeError(f"axis construction failed for [{lo}, {hi}] with {points} points: {axis}")
    return axis


def center_index(axis: np.ndarray) -> int:
    """Return the index of the coordinate 0.0 on an axis built by ``make_axis``."""
    matches = np.flatnonzero(axis == 0.0)
    if len(matches) != 1:
        raise ValueError("the axis does not contain 0.0 exactly once")
    return int(matches[0])
