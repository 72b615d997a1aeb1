"""A sweep inside ``mlflow run``: MLflow sets MLFLOW_RUN_ID to the entry point's run, which becomes
the parent; the children must neither reuse that id nor leave its experiment.

``mlflow run`` is simulated as MLflow does it: create a run, then start the command with
MLFLOW_RUN_ID and MLFLOW_EXPERIMENT_ID in the environment.
"""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from biaslab.config import build_config
from biaslab.sweep import run_sweep
from biaslab.sweep_runs import KIND_TAG

TINY = dict(preset="quick", epochs=2, landscape=False)


@pytest.fixture(scope="module")
def outer_sweeps(tmp_path_factory, plugins):
    folder = tmp_path_factory.mktemp("mlflow-run")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        experiment_id = client.create_experiment("outer")
        client.create_experiment("unrelated")
        outer = client.create_run(experiment_id, run_name="mlflow-run-entry-point").info.run_id
        configs = [build_config(plugins, bias="none", **TINY),
                   build_config(plugins, bias="mislabel", pct=30, **TINY)]

        results = []
        environments = []
        for _ in range(2):
            patch.setenv("MLFLOW_RUN_ID", outer)
            patch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
            results.append(run_sweep(configs, plugins, progress=False))
            environments.append(os.environ.get("MLFLOW_RUN_ID"))
        runs = client.search_runs([experiment_id])
        yield {"outer": outer, "experiment_id": experiment_id, "results": results, "runs": runs,
               "environments": environments, "configs": configs}
        mlflow.set_tracking_uri(None)


def test_parent_is_mlflow_run(outer_sweeps):
    first = outer_sweeps["results"][0]
    parent = MlflowClient().get_run(outer_sweeps["outer"])

    assert first.parent_run_id == outer_sweeps["outer"]
    assert parent.data.tags[KIND_TAG] == "sweep"
    assert parent.info.status == "FINISHED"


def test_children_tagged_in_same_experiment(outer_sweeps):
    first = outer_sweeps["results"][0]
    runs = {run.info.run_id: run for run in outer_sweeps["runs"]}

    assert len(runs) == 3
    assert outer_sweeps["outer"] not in first.child_run_ids
    assert len(set(first.child_run_ids)) == 2
    for run_id in first.child_run_ids:
        assert runs[run_id].data.tags["mlflow.parentRunId"] == outer_sweeps["outer"]
        assert runs[run_id].info.experiment_id == outer_sweeps["experiment_id"]
        assert runs[run_id].info.status == "FINISHED"
        assert "test_accuracy" in runs[run_id].data.metrics


def test_entry_point_run_keeps_no_training(outer_sweeps):
    outer = MlflowClient().get_run(outer_sweeps["outer"])

    # the training metrics belong to the children, never to the run of the entry point
    assert "test_accuracy" not in outer.data.metrics
    assert "model" not in outer.data.params


def test_rerun_inside_mlflow_run_skips(outer_sweeps):
    first, second = outer_sweeps["results"]

    assert second.parent_run_id == first.parent_run_id
    assert second.child_run_ids == first.child_run_ids
    assert second.skipped == first.child_run_ids
    assert second.failed == {}


def test_mlflow_run_id_consumed(outer_sweeps):
    # the sweep takes MLFLOW_RUN_ID for the parent and removes it, as mlflow.start_run does
    assert outer_sweeps["environments"] == [None, None]


def test_other_experiments_stay_empty(outer_sweeps):
    client = MlflowClient()
    unrelated = client.get_experiment_by_name("unrelated")
    default = client.get_experiment_by_name("biaslab")

    assert client.search_runs([unrelated.experiment_id]) == []
    assert default is None or client.search_runs([default.experiment_id]) == []
