"""Serial sweeps: one parent run, child runs tagged with it, reruns that skip finished children and
retry failed ones, and a report over the children.

The fixture runs three sweeps of the same two configurations into one SQLite store: the first with
a bias that fails on purpose, the second unchanged, the third after the bias is repaired. Each
training is 2 epochs on digits with a 3-point landscape.
"""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy.stats import kendalltau

from biaslab.biases import BiasSpec
from biaslab.config import build_config
from biaslab.default_plugins.biases import apply_none
from biaslab.hookspecs import hookimpl
from biaslab.plugins import load_plugins
from biaslab.report import build_report
from biaslab.sweep import run_sweep
from biaslab.sweep_runs import CONFIG_KEY_TAG, ERROR_TAG, KIND_TAG, SWEEP_KEY_TAG, config_key, sweep_key

TINY = dict(preset="quick", epochs=2, landscape_resolution=3, landscape_points=3, landscape_n_directions=2,
            landscape_candidates=2, landscape_samples=50)
FAILURE = {"on": True}


def apply_flaky(data):
    if FAILURE["on"]:
        raise RuntimeError("flaky bias failed on purpose")
    return apply_none(data)


class FlakyPlugin:
    @hookimpl
    def biaslab_register_biases(self, register):
        register(BiasSpec(name="flaky", description="fails while FAILURE is on, else none", apply=apply_flaky,
                          takes_pct=False))


@dataclasses.dataclass
class Stage:
    result: object
    runs: dict


def snapshot(experiment_id: str) -> dict:
    return {run.info.run_id: run for run in MlflowClient().search_runs([experiment_id])}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            patch.delenv(name, raising=False)
        mlflow.set_tracking_uri(uri)
        plugins = load_plugins(extra=[("flaky-test-plugin", FlakyPlugin())], entry_points=False)
        configs = [build_config(plugins, bias="none", **TINY), build_config(plugins, bias="flaky", seed=1, **TINY)]

        stages = []
        FAILURE["on"] = True
        for repaired in (False, False, True):
            FAILURE["on"] = not repaired
            result = run_sweep(configs, plugins, experiment="sweep-test", progress=False)
            stages.append(Stage(result, snapshot(result.experiment_id)))
        report = build_report(parent_run_id=stages[-1].result.parent_run_id, output=folder / "report")
        yield configs, stages, report
        mlflow.set_tracking_uri(None)


def test_first_sweep_parent_and_children(sweeps):
    configs, stages, _ = sweeps
    result, runs = stages[0].result, stages[0].runs
    parent = runs[result.parent_run_id]

    assert len(runs) == 3
    assert parent.data.tags[KIND_TAG] == "sweep"
    assert parent.data.tags[SWEEP_KEY_TAG] == sweep_key(configs)
    assert parent.info.status == "FAILED"
    assert len(result.child_run_ids) == 2
    for run_id, config in zip(result.child_run_ids, configs):
        child = runs[run_id]
        assert child.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert child.info.experiment_id == parent.info.experiment_id
        assert child.data.tags[CONFIG_KEY_TAG] == config_key(config)
        assert child.data.params["bias"] == config.bias


def test_failed_child_marked_and_reported(sweeps):
    _, stages, _ = sweeps
    result, runs = stages[0].result, stages[0].runs
    good, flaky = result.child_run_ids

    assert runs[good].info.status == "FINISHED"
    assert runs[flaky].info.status == "FAILED"
    assert "flaky bias failed on purpose" in runs[flaky].data.tags[ERROR_TAG]
    assert list(result.failed) == [flaky]
    assert "RuntimeError: flaky bias failed on purpose" in result.failed[flaky]
    assert "test_accuracy" in runs[good].data.metrics


def test_rerun_skips_finished_children(sweeps):
    _, stages, _ = sweeps
    first, second = stages[0], stages[1]
    good, flaky = first.result.child_run_ids

    assert second.result.parent_run_id == first.result.parent_run_id
    assert second.result.child_run_ids == first.result.child_run_ids
    assert second.result.skipped == [good]
    assert list(second.result.failed) == [flaky]
    assert set(second.runs) == set(first.runs)
    # the finished child was not touched: same end time and no new metric values
    assert second.runs[good].info.end_time == first.runs[good].info.end_time


def test_rerun_repairs_failed_child(sweeps):
    _, stages, _ = sweeps
    first, third = stages[0], stages[2]
    good, flaky = first.result.child_run_ids

    assert third.result.failed == {}
    assert third.result.skipped == [good]
    assert set(third.runs) == set(first.runs)
    assert third.runs[flaky].info.status == "FINISHED"
    assert ERROR_TAG not in third.runs[flaky].data.tags
    assert "test_accuracy" in third.runs[flaky].data.metrics
    assert third.runs[third.result.parent_run_id].info.status == "FINISHED"


def test_report_over_sweep_children(sweeps):
    _, stages, report = sweeps
    children = stages[2].result.child_run_ids

    assert sorted(row["run_id"] for row in report.table.rows) == sorted(children)
    assert report.table.columns[:7] == ["run", "run_id", "model", "bias", "train_accuracy", "test_accuracy",
                                        "gen_error"]
    for name in ("report.md", "report.html", "study_table.csv", "curves_1d.png", "contours_2d_ce.png",
                 "surfaces_3d_ce.png", "flatness_vs_gen_error.png", "per_class.png"):
        assert (report.folder / name).is_file(), name
    assert report.logged_run_id == stages[2].result.parent_run_id
    logged = {item.path for item in MlflowClient().list_artifacts(report.logged_run_id, "report")}
    assert "report/report.html" in logged


def test_report_tau_matches_scipy(sweeps):
    _, _, report = sweeps
    correlation = next(item for item in report.correlations if item.metric == "landscape_1d_ce_curvature")
    x = report.table.column("landscape_1d_ce_curvature")
    y = report.table.column("gen_error")

    expected = kendalltau(x, y).statistic
    assert correlation.n == 2
    assert np.isclose(correlation.tau, expected)
    assert abs(correlation.tau) == pytest.approx(1.0)
