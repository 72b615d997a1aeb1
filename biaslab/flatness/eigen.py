"""Top Hessian eigenvalues from Hessian-vector products (implicitly restarted Lanczos)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.sparse.linalg

from biaslab.errors import BiaslabError, ConfigError
from biaslab.flatness.progress import Progress


class ConvergenceError(BiaslabError, RuntimeError):
    """An iterative estimate did not reach its tolerance within its budget of HVPs."""


class _BudgetExhausted(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class EigenResult:
    """The largest eigenvalues, in descending order, and the number of HVPs spent on them."""

    eigenvalues: list[float]
    hvps: int


def top_eigenvalues(
    hvp: Callable[[np.ndarray], np.ndarray],
    dimension: int,
    k: int,
    *,
    tol: float = 1e-3,
    max_hvps: int = 200,
    seed: int = 0,
    progress: Progress | None = None,
) -> EigenResult:
    """Compute the ``k`` largest (algebraic) eigenvalues of a symmetric operator given by ``hvp``.

    Uses ARPACK's implicitly restarted Lanczos method through ``scipy.sparse.linalg.eigsh``
    (``which="LA"``) with a seeded random start vector. ``tol`` is ARPACK's relative accuracy of
    each Ritz value. Raises ConvergenceError when ``max_hvps`` products are spent first.
    """
    if k < 1 or k >= dimension:
        raise ConfigError(f"k={k} is invalid for {dimension} parameters; choose 1 <= k < {dimension}")
    calls = 0

    def matvec(vector: np.ndarray) -> np.ndarray:
        nonlocal calls
        if calls >= max_hvps:
            raise _BudgetExhausted
        calls += 1
        product = hvp(np.asarray(vector, dtype=np.float64).ravel())
        if progress is not None:
            progress.update(calls)
        return product

    operator = scipy.sparse.linalg.LinearOperator((dimension, dimension), matvec=matvec, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal(dimension)
    try:
        values = scipy.sparse.linalg.eigsh(operator, k=k, which="LA", tol=tol, v0=start,
                                           return_eigenvectors=False)
    except (_BudgetExhausted, scipy.sparse.linalg.ArpackNoConvergence) as error:
        raise ConvergenceError(
            f"the top {k} Hessian eigenvalues did not converge to tol={tol} within {calls} HVPs "
            f"(max_hvps={max_hvps}); raise max_hvps or tol"
        ) from error
    return EigenResult(eigenvalues=sorted((float(v) for v in values), reverse=True), hvps=calls)
