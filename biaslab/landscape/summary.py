"""Summary metrics of 1D curves and 2D surfaces, with names that are stable across runs.

For each metric m in ``ce``, ``mse`` and ``acc`` (names as logged to MLflow):

- ``landscape_1d_{m}_center``: the mean curve at a = 0, which is the plain evaluation of the model.
- ``landscape_1d_{m}_rise_{r}`` for r in 0.25, 0.5 and 1: the mean curve averaged over a = -r and
  a = +r, minus its value at the center. Values between grid points are interpolated linearly,
  because the default 51-point grid (step 0.04) has no point at 0.25 or 0.5. A side whose range
  ends before r is left out, and the rise is NaN when neither side reaches r. For accuracy the
  rise is usually negative.
- ``landscape_1d_{m}_rise_{r}_std``: the population standard deviation over directions of that
  rise computed on each direction's own curve.
- ``landscape_1d_{m}_curvature``: f''(0) of the mean curve, that is 2 * c2 of the least-squares
  quadratic c0 + c1*a + c2*a**2 fitted to the points with |a| <= 0.2. When fewer than 5 points lie
  there, the fit uses the 5 points nearest to the center, or all points of a shorter grid.
- ``landscape_2d_{m}_center``: the surface at (0, 0).
- ``landscape_2d_{m}_rise_{r}``: the mean over the ring of points where max(|a|, |b|) equals r,
  minus the center. When no ring lies at r, the means of the two nearest rings, inside and outside
  r, are interpolated linearly in the radius. NaN when r is beyond every point of the grid.
- ``landscape_2d_{m}_curvature``: the mean of the second derivatives along a and along b, that is
  c3 + c5 of the least-squares fit c0 + c1*a + c2*b + c3*a**2 + c4*a*b + c5*b**2 over the points
  with max(|a|, |b|) <= 0.2. When fewer than 9 points lie there, the fit uses the 3 x 3 block
  around the center.

A rise or curvature is NaN when a value it uses is NaN or infinite. ``landscape_2d_cosine``, the
cosine between the two 2D directions, is added by the probe.
"""

from __future__ import annotations

import numpy as np

from biaslab.landscape.grid import METRICS, center_index

RISE_RADII = (0.25, 0.5, 1.0)
CURVATURE_RADIUS = 0.2

# coordinates within this distance count as equal when matching a radius
_TOLERANCE = 1e-9


def summarize_curves(a: np.ndarray, curves: dict[str, np.ndarray]) -> dict[str, float]:
    """Return the 1D summaries of ``curves`` (metric to an array of shape (n_directions, len(a)))."""
    summary = {}
    center = center_index(a)
    for metric in METRICS:
        values = np.asarray(curves[metric], dtype=np.float64)
        mean_curve = values.mean(axis=0)
        prefix = f"landscape_1d_{metric}"
        summary[f"{prefix}_center"] = float(mean_curve[center])
        for radius in RISE_RADII:
            rises = _rises_1d(a, values, radius)
            summary[f"{prefix}_rise_{radius:g}"] = float(np.mean(rises)) if rises is not None else float("nan")
            summary[f"{prefix}_rise_{radius:g}_std"] = float(np.std(rises)) if rises is not None else float("nan")
        summary[f"{prefix}_curvature"] = _curvature_1d(a, mean_curve)
    return summary


def summarize_surface(a: np.ndarray, b: np.ndarray, surfaces: dict[str, np.ndarray]) -> dict[str, float]:
    """Return the 2D summaries of ``surfaces`` (metric to an array of shape (len(a), len(b)))."""
    summary = {}
    center = (center_index(a), center_index(b))
    radius_grid = np.maximum(np.abs(a)[:, None], np.abs(b)[None, :])
    for metric in METRICS:
        values = np.asarray(surfaces[metric], dtype=np.float64)
        prefix = f"landscape_2d_{metric}"
        summary[f"{prefix}_center"] = float(values[center])
        for radius in RISE_RADII:
            summary[f"{prefix}_rise_{radius:g}"] = _rise_2d(values, radius_grid, radius, values[center])
        summary[f"{prefix}_curvature"] = _curvature_2d(a, b, values, radius_grid, center)
    return summary


def _rises_1d(a: np.ndarray, values: np.ndarray, radius: float) -> np.ndarray | None:
    """Return each direction's rise at ``radius``, or None when neither side of the grid reaches it."""
    center = center_index(a)
    sides = []
    if -a[0] + _TOLERANCE >= radius:
        sides.append(np.array([np.interp(-radius, a, row) for row in values]))
    if a[-1] + _TOLERANCE >= radius:
        sides.append(np.array([np.interp(radius, a, row) for row in values]))
    if not sides:
        return None
    return np.mean(sides, axis=0) - values[:, center]


def _rise_2d(values: np.ndarray, radius_grid: np.ndarray, radius: float, center_value: float) -> float:
    radii = np.unique(radius_grid)
    if radii[-1] + _TOLERANCE < radius:
        return float("nan")
    ring_means = np.array([np.mean(values[radius_grid == ring]) for ring in radii])
    exact = np.flatnonzero(np.abs(radii - radius) <= _TOLERANCE)
    if len(exact):
        return float(ring_means[exact[0]] - center_value)
    return float(np.interp(radius, radii, ring_means) - center_value)


def _curvature_1d(a: np.ndarray, curve: np.ndarray) -> float:
    selected = np.flatnonzero(np.abs(a) <= CURVATURE_RADIUS + _TOLERANCE)
    if len(selected) < 5:
        selected = np.argsort(np.abs(a), kind="stable")[:5]
    points, values = a[selected], curve[selected]
    if not np.all(np.isfinite(values)):
        return float("nan")
    design = np.stack([np.ones_like(points), points, points**2], axis=1)
    coefficients = np.linalg.lstsq(design, values, rcond=None)[0]
    return float(2.0 * coefficients[2])


def _curvature_2d(
    a: np.ndarray, b: np.ndarray, values: np.ndarray, radius_grid: np.ndarray, center: tuple[int, int]
) -> float:
    selected = radius_grid <= CURVATURE_RADIUS + _TOLERANCE
    if np.count_nonzero(selected) < 9:
        selected = np.zeros_like(selected)
        selected[center[0] - 1 : center[0] + 2, center[1] - 1 : center[1] + 2] = True
    a_points = np.broadcast_to(a[:, None], values.shape)[selected]
    b_points = np.broadcast_to(b[None, :], values.shape)[selected]
    targets = values[selected]
    if not np.all(np.isfinite(targets)):
        return float("nan")
    design = np.stack(
        [np.ones_like(a_points), a_points, b_points, a_points**2, a_points * b_points, b_points**2], axis=1
    )
    coefficients = np.linalg.lstsq(design, targets, rcond=None)[0]
    return float(coefficients[3] + coefficients[5])
