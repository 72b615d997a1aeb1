"""A 2D surface sharded over Dask workers, with the same file, identity and values as in one process.

The grid is split into shards of whole rows (fixed a, all b). Each worker loads the model from a
``.keras`` checkpoint, the evaluation data from an ``.npz`` file (arrays ``x`` and ``y``) and the
direction pair from ``directions_2d.npz`` once, and keeps them for later shards of the same probe.
Shards are submitted with ``retries``, so a shard whose task raises runs again, and Dask
reschedules the shards of a worker that dies. Each finished shard is merged into the resumable
surface file at once, so an interrupted run keeps every finished shard, and a run in one process
or a sharded one can continue the file that the other left.

By default a ``LocalCluster`` on 127.0.0.1 runs ``n_workers`` processes of one thread each.
Pass ``address`` to use an existing scheduler instead, such as one started by dask-jobqueue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from biaslab.errors import ConfigError
from biaslab.landscape.grid import PointMetrics, make_axis
from biaslab.landscape.result import LandscapeResult
from biaslab.landscape.settings import LandscapeSettings
from biaslab.landscape.store import SurfaceStore, open_store
from biaslab.progress import Progress

DEFAULT_WORKERS = 2
DEFAULT_RETRIES = 2
DEFAULT_CONNECT_TIMEOUT = 10.0

ShardFunction = Callable[[list[tuple[float, float]]], list[PointMetrics]]


@contextlib.contextmanager
def dask_client(
    address: str | None = None, n_workers: int = DEFAULT_WORKERS, timeout: float = DEFAULT_CONNECT_TIMEOUT
) -> Iterator["distributed.Client"]:  # noqa: F821 - distributed is imported inside
    """Yield a client of the scheduler at ``address``, or of a new local cluster on 127.0.0.1.

    An address that accepts no connection within ``timeout`` seconds raises ConfigError naming it. The
    local cluster, when one was started, is closed on exit.
    """
    from distributed import Client, LocalCluster

    if address is None:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return

    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as error:
        raise ConfigError(
            f"could not connect to the Dask scheduler at {address!r} within {timeout:g} s ({error}). "
            f"Check that the scheduler runs and the address is right, or pass no address to start a local cluster."
        ) from error
    with client:
        yield client


def compute_surface_2d_sharded(
    client,
    evaluate_shard: ShardFunction,
    a: np.ndarray,
    b: np.ndarray,
    path: Path,
    metadata: dict,
    rows_per_shard: int = 1,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
) -> SurfaceStore:
    """Fill a surface like ``compute_surface_2d``, with each shard of rows computed by a Dask task.

    ``evaluate_shard(points)`` takes a list of (a, b) coordinates and returns their metrics in the
    same order. It runs on workers, so it must be picklable. Only points not yet done in a stored
    file of the same probe are submitted.
    """
    from distributed import as_completed

    if rows_per_shard < 1:
        raise ConfigError(f"rows_per_shard={rows_per_shard} is too small. Set it to at least 1.")
    fresh = SurfaceStore.empty(path, (len(a), len(b)), {"a": np.asarray(a), "b": np.asarray(b)}, metadata)
    store = open_store(fresh)
    bar = Progress("2D surface", total=store.done.size, done=int(store.done.sum()), enabled=progress)

    futures = {}
    for start in range(0, len(a), rows_per_shard):
        indices = [
            (i, j) for i in range(start, min(start + rows_per_shard, len(a))) for j in range(len(b)) if not store.done[i, j]
        ]
        if not indices:
            continue
        points = [(float(a[i]), float(b[j])) for i, j in indices]
        future = client.submit(evaluate_shard, points, retries=retries, pure=False)
        futures[future] = indices

    try:
        for future in as_completed(list(futures)):
            indices = futures[future]
            # a shard that still fails after its retries raises here, after the finished ones are saved
            for index, metrics in zip(indices, future.result()):
                store.record(index, metrics)
            store.save()
            bar.advance(len(indices))
    finally:
        for future in futures:
            future.cancel()
        store.save()
        bar.close()
    return store


@dataclasses.dataclass(frozen=True)
class WorkerInputs:
    """Files a worker loads once per probe, with the SHA-256 digests that key its cache."""

    checkpoint: str
    checkpoint_digest: str
    data: str
    data_digest: str
    directions: str
    directions_digest: str
    batch_size: int


# one cached evaluator per worker process, for the WorkerInputs it was built from
_worker_cache: dict[WorkerInputs, object] = {}
_worker_lock = threading.Lock()


def evaluate_points_on_worker(inputs: WorkerInputs, points: list[tuple[float, float]]) -> list[PointMetrics]:
    """Evaluate the model at each (a, b) point, loading the files of ``inputs`` once per worker.

    The lock serializes shards of one worker process, because they share one set of model variables.
    """
    with _worker_lock:
        evaluator = _worker_cache.get(inputs)
        if evaluator is None:
            _worker_cache.clear()
            evaluator = _build_worker_evaluator(inputs)
            _worker_cache[inputs] = evaluator
        try:
            return [evaluator.evaluate(a, b) for a, b in points]
        finally:
            evaluator.restore()


def _build_worker_evaluator(inputs: WorkerInputs):
    import keras

    from biaslab.landscape.directions import load_directions
    from biaslab.landscape.engine import LandscapeEvaluator
    from biaslab.landscape.variables import collect_variables

    for path, expected in ((inputs.checkpoint, inputs.checkpoint_digest), (inputs.data, inputs.data_digest),
                           (inputs.directions, inputs.directions_digest)):
        if file_digest(Path(path)) != expected:
            raise RuntimeError(f"{path} changed after the probe started, so this worker would compute another surface")

    model = keras.models.load_model(inputs.checkpoint, compile=False)
    with np.load(inputs.data, allow_pickle=False) as data:
        x, y = data["x"], data["y"]
    (d1, d2), _ = load_directions(Path(inputs.directions))
    variables = collect_variables(model)
    perturbed = {path: variables[path] for path in sorted(variables) if np.any(d1[path]) or np.any(d2[path])}
    evaluator = LandscapeEvaluator(model, perturbed, x, y, batch_size=inputs.batch_size)
    evaluator.set_directions(d1, d2)
    return evaluator


def file_digest(path: Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def probe_surface_distributed(
    checkpoint: Path,
    data: Path,
    settings: LandscapeSettings,
    out_dir: Path,
    plugins,
    *,
    checkpoint_hash: str = "",
    meta: dict | None = None,
    address: str | None = None,
    n_workers: int = DEFAULT_WORKERS,
    rows_per_shard: int = 1,
    retries: int = DEFAULT_RETRIES,
    timeout: float = DEFAULT_CONNECT_TIMEOUT,
    progress: bool = True,
) -> LandscapeResult:
    """Compute the 2D surface of a checkpoint on Dask workers, with its summaries and plots.

    ``checkpoint`` is a ``.keras`` file and ``data`` an ``.npz`` file with preprocessed float32
    images ``x`` and integer labels ``y``. Settings, directions, file names, metadata and metrics
    are those of ``probe_landscape(..., do_1d=False)``, so either can resume the other's surface.
    The paths must be readable by every worker.
    """
    import keras

    from biaslab.landscape.probe import (
        draw_surface_pair,
        finish_surface,
        prepare_probe,
        save_surface_directions,
        surface_metadata,
    )

    if rows_per_shard < 1:
        raise ConfigError(f"rows_per_shard={rows_per_shard} is too small. Set it to at least 1.")
    checkpoint, data = Path(checkpoint), Path(data)
    for path in (checkpoint, data):
        if not path.is_file():
            raise ConfigError(f"{path} not found. Pass an existing file that every Dask worker can read.")
    settings.validate(plugins)
    model = keras.models.load_model(checkpoint, compile=False)
    with np.load(data, allow_pickle=False) as arrays:
        x, y = arrays["x"], arrays["y"]

    prepared = prepare_probe(model, x, y, settings, out_dir, plugins, checkpoint_hash, meta)
    result = LandscapeResult()
    pair, pair_metadata = draw_surface_pair(prepared, settings)
    directions_path = save_surface_directions(prepared, settings, pair, pair_metadata, result)
    inputs = WorkerInputs(
        checkpoint=str(checkpoint.resolve()),
        checkpoint_digest=file_digest(checkpoint),
        data=str(data.resolve()),
        data_digest=file_digest(data),
        directions=str(directions_path.resolve()),
        directions_digest=file_digest(directions_path),
        batch_size=settings.batch_size,
    )

    axis = make_axis(settings.lo, settings.hi, settings.resolution)
    with dask_client(address, n_workers, timeout) as client:
        store = compute_surface_2d_sharded(
            client,
            _ShardOnWorker(inputs),
            axis,
            axis,
            prepared.landscape_dir / "surface_2d.npz",
            surface_metadata(prepared, settings, pair, pair_metadata),
            rows_per_shard=rows_per_shard,
            retries=retries,
            progress=progress,
        )
    finish_surface(prepared, axis, store, pair_metadata, result)
    return result


@dataclasses.dataclass(frozen=True)
class _ShardOnWorker:
    """A picklable shard function bound to the files of one probe."""

    inputs: WorkerInputs

    def __call__(self, points: list[tuple[float, float]]) -> list[PointMetrics]:
        return evaluate_points_on_worker(self.inputs, points)
