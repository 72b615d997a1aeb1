"""Tests of the Dask-sharded 2D surface against the single-process one."""

import os
import socket
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import keras
import numpy as np
import pytest
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits

from biaslab.errors import ConfigError
from biaslab.landscape import LandscapeSettings, probe_landscape
from biaslab.landscape.distributed import compute_surface_2d_sharded, dask_client, probe_surface_distributed
from biaslab.landscape.engine import LandscapeEvaluator
from biaslab.landscape.grid import PointMetrics, make_axis
from biaslab.landscape.store import IDENTITY_KEYS, SurfaceStore
from biaslab.plugins import load_plugins

SETTINGS = LandscapeSettings(n_candidates=4, resolution=5, batch_size=64)

# cloudpickle sends this module's functions to workers by value, because workers cannot import tests
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def build_model() -> keras.Model:
    """A small conv net with BatchNormalization and a softmax Dense layer on 8x8x1 input."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    hidden = keras.layers.Activation("relu")(hidden)
    hidden = keras.layers.Flatten()(hidden)
    outputs = keras.layers.Dense(10, activation="softmax", name="classifier")(hidden)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A .keras checkpoint and an .npz of 150 digits that every worker can read."""
    folder = tmp_path_factory.mktemp("inputs")
    model = build_model()
    checkpoint = folder / "model.keras"
    model.save(checkpoint)
    digits = load_digits()
    x = (digits.images[:150] / 16.0).astype(np.float32)[..., None]
    y = digits.target[:150].astype(np.int64)
    data = folder / "data.npz"
    np.savez(data, x=x, y=y)
    return {"checkpoint": checkpoint, "data": data, "x": x, "y": y}


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local_cluster:
        yield local_cluster


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=False)


def test_sharded_surface_equals_single_process(tmp_path, files, cluster, plugins):
    model = keras.models.load_model(files["checkpoint"], compile=False)
    single = probe_landscape(model, files["x"], files["y"], SETTINGS, tmp_path / "single", plugins,
                             checkpoint_hash="c1", meta={"split": "test"}, progress=False, do_1d=False)

    sharded = probe_surface_distributed(files["checkpoint"], files["data"], SETTINGS, tmp_path / "sharded", plugins,
                                        checkpoint_hash="c1", meta={"split": "test"}, address=cluster.scheduler_address,
                                        rows_per_shard=2, progress=False)

    single_store = SurfaceStore.load(tmp_path / "single" / "landscape" / "surface_2d.npz")
    sharded_store = SurfaceStore.load(tmp_path / "sharded" / "landscape" / "surface_2d.npz")
    assert sharded_store.complete
    for metric in ("ce", "mse", "acc"):
        np.testing.assert_array_equal(sharded_store.values[metric], single_store.values[metric])
    for key in IDENTITY_KEYS:
        assert sharded_store.metadata.get(key) == single_store.metadata.get(key), key
    assert sharded.metrics == single.metrics
    assert sorted(path.name for path in sharded.files["plots"]) == sorted(path.name for path in single.files["plots"])


def test_sharded_run_resumes_partial_file(tmp_path, files, cluster, plugins, monkeypatch):
    model = keras.models.load_model(files["checkpoint"], compile=False)
    original = LandscapeEvaluator.evaluate
    calls = []

    def interrupted(self, a, b=0.0):
        if len(calls) == 12:
            raise KeyboardInterrupt("interrupted for the test")
        calls.append((a, b))
        return original(self, a, b)

    monkeypatch.setattr(LandscapeEvaluator, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        probe_landscape(model, files["x"], files["y"], SETTINGS, tmp_path, plugins, progress=False, do_1d=False)
    monkeypatch.undo()
    submitted = []
    submit = Client.submit

    def counted_submit(self, function, points, **options):
        submitted.extend(points)
        return submit(self, function, points, **options)

    monkeypatch.setattr(Client, "submit", counted_submit)

    probe_surface_distributed(files["checkpoint"], files["data"], SETTINGS, tmp_path, plugins,
                              address=cluster.scheduler_address, progress=False)

    assert len(submitted) == 25 - 12
    assert set(submitted).isdisjoint(calls)
    store = SurfaceStore.load(tmp_path / "landscape" / "surface_2d.npz")
    assert store.complete
    reference = probe_landscape(model, files["x"], files["y"], SETTINGS, tmp_path / "reference", plugins,
                                progress=False, do_1d=False)
    reference_store = SurfaceStore.load(tmp_path / "reference" / "landscape" / "surface_2d.npz")
    np.testing.assert_array_equal(store.values["ce"], reference_store.values["ce"])
    assert reference.metrics["landscape_2d_ce_center"] == pytest.approx(store.values["ce"][2, 2])


def analytic_shard(folder: str, crash_at: float | None, fail_at: float | None, points):
    """Evaluate (a - 0.5)**2 + b**2, record each call, and crash or raise for the row at a given a."""
    first_a = points[0][0]
    Path(folder, f"{first_a:+.2f}_{uuid.uuid4().hex}").touch()
    marker = Path(folder, "crashed")
    if crash_at is not None and first_a == crash_at and not marker.exists():
        marker.touch()
        os._exit(1)
    if fail_at is not None and first_a == fail_at:
        time.sleep(0.5)
        raise RuntimeError(f"shard at a={first_a} failed for the test")
    return [PointMetrics(ce=(a - 0.5) ** 2 + b**2, mse=0.0, acc=1.0) for a, b in points]


def calls_per_row(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in folder.iterdir():
        if path.name != "crashed":
            row = path.name.split("_")[0]
            counts[row] = counts.get(row, 0) + 1
    return counts


def test_lost_worker_reruns_only_its_shard(tmp_path, cluster):
    calls = tmp_path / "calls"
    calls.mkdir()
    axis = make_axis(-1.0, 1.0, 5)
    shard = lambda points: analytic_shard(str(calls), 0.5, None, points)

    with Client(cluster.scheduler_address) as client:
        store = compute_surface_2d_sharded(client, shard, axis, axis, tmp_path / "surface.npz", {"kind": "test"},
                                           progress=False)

    assert (calls / "crashed").exists()
    assert store.complete
    np.testing.assert_allclose(store.values["ce"], (axis[:, None] - 0.5) ** 2 + axis[None, :] ** 2)
    counts = calls_per_row(calls)
    assert counts.pop("+0.50") == 2
    # a shard that the lost worker finished but the client had not fetched yet is computed again
    assert sorted(counts) == ["+0.00", "+1.00", "-0.50", "-1.00"]
    for row, count in counts.items():
        assert count in (1, 2), row


def test_failed_shard_keeps_finished_shards(tmp_path, cluster):
    calls = tmp_path / "calls"
    calls.mkdir()
    axis = make_axis(-1.0, 1.0, 5)
    shard = lambda points: analytic_shard(str(calls), None, 1.0, points)
    path = tmp_path / "surface.npz"

    with Client(cluster.scheduler_address) as client:
        with pytest.raises(RuntimeError, match="a=1.0 failed"):
            compute_surface_2d_sharded(client, shard, axis, axis, path, {"kind": "test"}, retries=1, progress=False)

    stored = SurfaceStore.load(path)
    assert calls_per_row(calls)["+1.00"] == 2
    assert not stored.done[4].any()
    assert stored.done[:4].all()
    np.testing.assert_allclose(stored.values["ce"][:4], (axis[:4, None] - 0.5) ** 2 + axis[None, :] ** 2)


def test_unreachable_scheduler_raises_config_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    started = time.monotonic()

    with pytest.raises(ConfigError) as raised:
        with dask_client(address, timeout=2.0):
            pass

    assert address in str(raised.value)
    assert time.monotonic() - started < 30.0


def test_missing_checkpoint_raises_config_error(tmp_path, files, plugins):
    with pytest.raises(ConfigError, match="missing.keras"):
        probe_surface_distributed(tmp_path / "missing.keras", files["data"], SETTINGS, tmp_path, plugins)
