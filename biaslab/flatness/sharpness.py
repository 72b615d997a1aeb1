"""Epsilon-sharpness (Keskar et al., "On Large-Batch Training for Deep Learning", ICLR 2017).

    sharpness = 100 * (max over the box of L(w + delta) - L(w)) / (1 + L(w))
    box: |delta_i| <= epsilon * (|w_i| + 1) for every parameter i

Keskar et al. maximize with L-BFGS-B. Here the maximum is searched by projected sign-gradient
ascent in the full parameter space: each step moves every coordinate by ``step_fraction`` of its
box half-width in the direction of the gradient's sign, then clips back into the box. The
result is the largest loss seen over all visited points, which is a lower bound of the true
maximum, so the sharpness is a lower bound too.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from biaslab.flatness.progress import Progress


@dataclasses.dataclass(frozen=True)
class AscentResult:
    """The best point found by projected ascent, the loss there, and the evaluations used."""

    base_loss: float
    max_loss: float
    delta: np.ndarray
    gradient_evaluations: int
    loss_evaluations: int


def box_half_widths(weights: np.ndarray, epsilon: float) -> np.ndarray:
    """Return epsilon * (|w| + 1), the half-width of the sharpness box for each parameter."""
    return epsilon * (np.abs(weights) + 1.0)


def projected_gradient_ascent(
    loss_and_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]],
    loss: Callable[[np.ndarray], float],
    half_widths: np.ndarray,
    *,
    steps: int,
    step_fraction: float,
    start: np.ndarray | None = None,
    progress: Progress | None = None,
) -> AscentResult:
    """Maximize a loss of the offset ``delta`` over the box |delta| <= half_widths.

    ``loss_and_gradient(delta)`` and ``loss(delta)`` evaluate the loss at the offset. The ascent
    starts at ``start`` (zero by default, which is the unperturbed point), takes ``steps`` steps,
    and evaluates the loss after the last one. It uses ``steps`` gradient evaluations and one
    loss evaluation, plus one more when ``start`` is given, to measure the unperturbed loss.
    """
    zero = np.zeros_like(half_widths)
    delta = zero.copy() if start is None else np.clip(start, -half_widths, half_widths)
    loss_evaluations = 0
    if start is None:
        base_loss = None
    else:
        base_loss = loss(zero)
        loss_evaluations += 1

    max_loss = -np.inf
    best = delta.copy()
    for step in range(steps):
        value, gradient = loss_and_gradient(delta)
        if base_loss is None:
            base_loss = value
        if value > max_loss:
            max_loss, best = value, delta.copy()
        delta = np.clip(delta + step_fraction * half_widths * np.sign(gradient), -half_widths, half_widths)
        if progress is not None:
            progress.update(step + 1)

    final = loss(delta)
    loss_evaluations += 1
    if base_loss is None:
        base_loss = final
    if final > max_loss:
        max_loss, best = final, delta.copy()
    return AscentResult(
        base_loss=float(base_loss),
        max_loss=float(max_loss),
        delta=best,
        gradient_evaluations=steps,
        loss_evaluations=loss_evaluations,
    )


def relative_increase(base_loss: float, max_loss: float) -> float:
    """Return 100 * (max_loss - base_loss) / (1 + base_loss), Keskar et al.'s sharpness."""
    return 100.0 * (max_loss - base_loss) / (1.0 + base_loss)
