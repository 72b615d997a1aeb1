"""Drivers that fill a resumable curve set or surface point by point.

Both drivers take a plain callable for one point, so they run the same with the compiled model
evaluator or with an analytic function in tests. Points are visited in row-major order. The
file is saved every ``save_every`` points, at least every ``save_seconds`` seconds, at the end, and
when the callable raises, so an interrupted probe keeps every finished point.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from biaslab.landscape.grid import PointMetrics
from biaslab.landscape.store import SurfaceStore, open_store
from biaslab.progress import Progress

SAVE_EVERY = 10
SAVE_SECONDS = 30.0


def compute_surface_2d(
    evaluate: Callable[[float, float], PointMetrics],
    a: np.ndarray,
    b: np.ndarray,
    path: Path,
    metadata: dict,
    progress: bool = True,
) -> SurfaceStore:
    """Fill a surface with ``evaluate(a[i], b[j])`` at every point not already stored at ``path``.

    ``metadata`` is stored in the file, and its ``IDENTITY_KEYS`` decide whether a stored file is
    reused. The grid may have a different number of points along a and b.
    """
    fresh = SurfaceStore.empty(path, (len(a), len(b)), {"a": np.asarray(a), "b": np.asarray(b)}, metadata)
    store = open_store(fresh)
    fill_store(store, lambda index: evaluate(float(a[index[0]]), float(b[index[1]])), "2D surface", progress)
    return store


def compute_curves_1d(
    evaluate: Callable[[int, float], PointMetrics],
    direction_count: int,
    a: np.ndarray,
    path: Path,
    metadata: dict,
    progress: bool = True,
) -> SurfaceStore:
    """Fill curves with ``evaluate(k, a[i])`` for direction k at every point not already stored at ``path``."""
    fresh = SurfaceStore.empty(path, (direction_count, len(a)), {"a": np.asarray(a)}, metadata)
    store = open_store(fresh)
    fill_store(store, lambda index: evaluate(index[0], float(a[index[1]])), "1D curves", progress)
    return store


def fill_store(
    store: SurfaceStore,
    evaluate_index: Callable[[tuple[int, ...]], PointMetrics],
    label: str,
    progress: bool = True,
    save_every: int = SAVE_EVERY,
    save_seconds: float = SAVE_SECONDS,
) -> int:
    """Compute every point of ``store`` that is not done and return how many were computed."""
    bar = Progress(label, total=store.done.size, done=int(store.done.sum()), enabled=progress)
    computed = 0
    unsaved = 0
    last_save = time.monotonic()
    try:
        for index in np.ndindex(store.done.shape):
            if store.done[index]:
                continue
            store.record(index, evaluate_index(index))
            computed += 1
            unsaved += 1
            bar.advance()
            if unsaved >= save_every or time.monotonic() - last_save >= save_seconds:
                store.save()
                unsaved = 0
                last_save = time.monotonic()
    finally:
        # save on success and on any exception, so finished points survive an interruption and a
        # reused file carries the metadata of this probe
        store.save()
        bar.close()
    return computed
