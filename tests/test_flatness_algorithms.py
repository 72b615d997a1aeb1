"""Lanczos eigenvalues, Hutchinson trace and projected ascent on problems with known solutions."""

import numpy as np
import pytest

from biaslab.errors import ConfigError
from biaslab.flatness.eigen import ConvergenceError, top_eigenvalues
from biaslab.flatness.sharpness import box_half_widths, projected_gradient_ascent, relative_increase
from biaslab.flatness.trace import TraceBlock, hutchinson_trace

# eigenvalues of the quadratic loss 0.5 * x^T A x; its Hessian is A
EIGENVALUES = np.array([9.0, 6.0, 4.0, 2.5, 2.0, 1.8, 1.5, 1.2, 1.0, 0.9,
                        0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.2, -0.5, -1.0])


def symmetric_matrix(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    """Return Q diag(eigenvalues) Q^T for a random orthogonal Q."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((eigenvalues.size, eigenvalues.size)))
    return q @ np.diag(eigenvalues) @ q.T


def test_top_eigenvalues_quadratic():
    matrix = symmetric_matrix(EIGENVALUES)
    result = top_eigenvalues(lambda v: matrix @ v, 20, 3, seed=0)
    assert result.eigenvalues == pytest.approx([9.0, 6.0, 4.0], rel=0.01)
    assert result.hvps > 0


def test_top_eigenvalues_large_quadratic_restarts():
    # 400 dimensions with a dense bulk: ARPACK must restart, since it keeps only 20 vectors
    rng = np.random.default_rng(1)
    eigenvalues = np.concatenate([[50.0, 40.0, 30.0], rng.uniform(-1.0, 5.0, size=397)])
    matrix = symmetric_matrix(eigenvalues, seed=2)
    result = top_eigenvalues(lambda v: matrix @ v, 400, 3, seed=0)
    assert result.eigenvalues == pytest.approx([50.0, 40.0, 30.0], rel=0.01)
    assert result.hvps > 20


def test_top_eigenvalues_budget_exhausted():
    rng = np.random.default_rng(1)
    matrix = symmetric_matrix(rng.uniform(0.0, 1.0, size=300), seed=3)
    with pytest.raises(ConvergenceError, match="max_hvps=5"):
        top_eigenvalues(lambda v: matrix @ v, 300, 3, max_hvps=5, seed=0)


def test_top_eigenvalues_rejects_k_not_below_dimension():
    with pytest.raises(ConfigError, match="k=20"):
        top_eigenvalues(lambda v: v, 20, 20)


def test_hutchinson_quadratic_within_three_stderr():
    matrix = symmetric_matrix(EIGENVALUES)
    estimate = hutchinson_trace(lambda v: matrix @ v, 20, samples=200, seed=0)
    assert estimate.samples == 200
    assert estimate.stderr > 0
    assert abs(estimate.mean - EIGENVALUES.sum()) <= 3 * estimate.stderr


def test_hutchinson_diagonal_is_exact():
    # Rademacher probes give z^T D z = Tr(D) for every diagonal D, so the error is zero
    diagonal = np.arange(1.0, 11.0)
    estimate = hutchinson_trace(lambda v: diagonal * v, 10, samples=5, seed=0)
    assert estimate.mean == pytest.approx(55.0)
    assert estimate.stderr == pytest.approx(0.0, abs=1e-12)


def test_hutchinson_blocks_sum_to_total():
    matrix = symmetric_matrix(EIGENVALUES)
    blocks = [TraceBlock("first", 0, 7), TraceBlock("second", 7, 20)]
    estimate = hutchinson_trace(lambda v: matrix @ v, 20, samples=50, seed=4, blocks=blocks)
    block_sum = sum(values["mean"] for values in estimate.by_block.values())
    assert block_sum == pytest.approx(estimate.mean, rel=1e-12)
    first = np.trace(matrix[:7, :7])
    assert abs(estimate.by_block["first"]["mean"] - first) <= 3 * estimate.by_block["first"]["stderr"]


def test_hutchinson_stops_early_at_rtol():
    matrix = symmetric_matrix(EIGENVALUES) + 20.0 * np.eye(20)
    estimate = hutchinson_trace(lambda v: matrix @ v, 20, samples=100, rtol=0.05, min_samples=10, seed=0)
    assert 10 <= estimate.samples < 100
    assert estimate.stderr <= 0.05 * abs(estimate.mean)


def test_hutchinson_is_seeded():
    matrix = symmetric_matrix(EIGENVALUES)
    first = hutchinson_trace(lambda v: matrix @ v, 20, samples=10, seed=7)
    second = hutchinson_trace(lambda v: matrix @ v, 20, samples=10, seed=7)
    assert first.mean == second.mean


def test_projected_ascent_reaches_box_corner():
    # L(delta) = 0.5 * sum(a * (w + delta)^2) with a > 0 is largest at delta = sign(w) * h
    a = np.array([1.0, 2.0, 0.5, 3.0])
    weights = np.array([0.5, -1.0, 2.0, -0.1])
    half_widths = box_half_widths(weights, 0.1)

    def loss(delta):
        return 0.5 * float(np.sum(a * (weights + delta) ** 2))

    def loss_and_gradient(delta):
        return loss(delta), a * (weights + delta)

    result = projected_gradient_ascent(loss_and_gradient, loss, half_widths, steps=10, step_fraction=0.25)
    corner = np.sign(weights) * half_widths
    assert result.delta == pytest.approx(corner)
    assert result.max_loss == pytest.approx(loss(corner))
    assert result.base_loss == pytest.approx(loss(np.zeros(4)))
    assert result.gradient_evaluations == 10
    assert result.loss_evaluations == 1


def test_projected_ascent_stays_in_box():
    rng = np.random.default_rng(0)
    half_widths = rng.uniform(0.01, 0.1, size=30)

    def loss(delta):
        return float(np.sin(delta * 50.0).sum())

    def loss_and_gradient(delta):
        return loss(delta), 50.0 * np.cos(delta * 50.0)

    start = rng.uniform(-2.0, 2.0, size=30)
    result = projected_gradient_ascent(loss_and_gradient, loss, half_widths, steps=7, step_fraction=0.7,
                                       start=start)
    assert np.all(np.abs(result.delta) <= half_widths + 1e-15)
    assert result.loss_evaluations == 2


def test_box_half_widths():
    assert box_half_widths(np.array([0.0, -2.0, 3.0]), 1e-3) == pytest.approx([1e-3, 3e-3, 4e-3])


def test_relative_increase_formula():
    assert relative_increase(1.0, 1.5) == pytest.approx(25.0)
    assert relative_increase(0.0, 0.0) == 0.0
