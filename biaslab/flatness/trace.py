"""Hutchinson's estimator of the Hessian trace from Hessian-vector products."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from biaslab.flatness.progress import Progress


@dataclasses.dataclass(frozen=True)
class TraceBlock:
    """A named slice ``[start, stop)`` of the flat parameter vector, such as one variable."""

    name: str
    start: int
    stop: int


@dataclasses.dataclass(frozen=True)
class TraceEstimate:
    """Mean and standard error of the trace, in total and per block, over ``samples`` probes."""

    mean: float
    stderr: float
    samples: int
    by_block: dict[str, dict[str, float]]


def _mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.inf
    return mean, float(values.std(ddof=1) / math.sqrt(values.size))


def hutchinson_trace(
    hvp: Callable[[np.ndarray], np.ndarray],
    dimension: int,
    *,
    samples: int = 100,
    rtol: float = 0.0,
    min_samples: int = 10,
    seed: int = 0,
    blocks: Sequence[TraceBlock] = (),
    progress: Progress | None = None,
) -> TraceEstimate:
    """Estimate Tr(H) as the mean of z^T H z over Rademacher vectors z (entries +1 or -1).

    Draws at most ``samples`` vectors. After ``min_samples`` it stops early once the standard
    error falls below ``rtol`` times the absolute mean (``rtol=0`` never stops early).

    Each block's share is the mean of z_b^T (H z)_b over the same vectors, an unbiased estimate of
    the trace of that diagonal block of H. The blocks' shares of one vector sum to z^T H z when the
    blocks cover the vector, so the block means sum to the total mean.
    """
    rng = np.random.default_rng(seed)
    totals: list[float] = []
    by_block: dict[str, list[float]] = {block.name: [] for block in blocks}

    for index in range(samples):
        probe = rng.integers(0, 2, size=dimension).astype(np.float64) * 2.0 - 1.0
        product = np.asarray(hvp(probe), dtype=np.float64)
        contributions = probe * product
        totals.append(float(contributions.sum()))
        for block in blocks:
            by_block[block.name].append(float(contributions[block.start:block.stop].sum()))
        if progress is not None:
            progress.update(index + 1)

        done = index + 1
        if rtol > 0 and done >= max(min_samples, 2):
            mean, stderr = _mean_and_stderr(np.asarray(totals))
            # NOTE: stopping on the estimated error (optional stopping) can bias the mean slightly.
            if stderr <= rtol * abs(mean):
                break

    mean, stderr = _mean_and_stderr(np.asarray(totals))
    block_estimates = {}
    for name, values in by_block.items():
        block_mean, block_stderr = _mean_and_stderr(np.asarray(values))
        block_estimates[name] = {"mean": block_mean, "stderr": block_stderr}
    if progress is not None:
        progress.finish(len(totals))
    return TraceEstimate(mean=mean, stderr=stderr, samples=len(totals), by_block=block_estimates)
