"""Sweeps on Dask: children run in parallel on a LocalCluster of two processes on 127.0.0.1, log
to the same SQLite store through the tracking URI passed to the workers, and train exactly as a
serial sweep does."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from biaslab.config import build_config
from biaslab.sweep import run_sweep
from biaslab.sweep_runs import CONFIG_KEY_TAG, SWEEP_KEY_TAG, config_key, sweep_key

TINY = dict(preset="quick", epochs=2, landscape=False)


@pytest.fixture(scope="module")
def dask_sweep(tmp_path_factory, plugins):
    folder = tmp_path_factory.mktemp("dask")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            patch.delenv(name, raising=False)
        mlflow.set_tracking_uri(uri)
        configs = [build_config(plugins, bias="none", **TINY),
                   build_config(plugins, bias="mislabel", pct=30, **TINY)]
        first = run_sweep(configs, plugins, experiment="dask", parallel=True, n_workers=2, progress=False)
        second = run_sweep(configs, plugins, experiment="dask", parallel=True, n_workers=2, progress=False)
        serial = run_sweep(configs[:1], plugins, experiment="serial", progress=False)
        runs = {run.info.run_id: run for run in MlflowClient().search_runs([first.experiment_id])}
        serial_child = MlflowClient().get_run(serial.child_run_ids[0])
        yield configs, first, second, runs, serial_child
        mlflow.set_tracking_uri(None)


def test_dask_children_match_configs(dask_sweep):
    configs, first, _, runs, _ = dask_sweep

    assert first.failed == {}
    assert len(runs) == 3
    children = [runs[run_id] for run_id in first.child_run_ids]
    assert {child.data.tags[CONFIG_KEY_TAG] for child in children} == {config_key(config) for config in configs}
    for child, config in zip(children, configs):
        assert child.data.tags["mlflow.parentRunId"] == first.parent_run_id
        assert child.info.status == "FINISHED"
        assert child.data.params == {**child.data.params, **config.params()}
        assert "test_accuracy" in child.data.metrics


def test_dask_parent_same_as_serial_key(dask_sweep):
    configs, first, _, runs, _ = dask_sweep
    parent = runs[first.parent_run_id]

    # a serial run of the same configurations looks the parent up by this key
    assert parent.data.tags[SWEEP_KEY_TAG] == sweep_key(configs)
    assert parent.info.status == "FINISHED"


def test_dask_rerun_skips_all(dask_sweep):
    _, first, second, runs, _ = dask_sweep

    assert second.parent_run_id == first.parent_run_id
    assert second.skipped == first.child_run_ids
    assert len(runs) == 3


def test_dask_child_equals_serial_child(dask_sweep):
    _, first, _, runs, serial_child = dask_sweep
    dask_child = runs[first.child_run_ids[0]]

    # each Dask child trains in a fresh process, so it repeats the serial training exactly
    for key in ("train_accuracy", "test_accuracy", "gen_error", "loss"):
        assert dask_child.data.metrics[key] == pytest.approx(serial_child.data.metrics[key], abs=1e-6), key
