"""Whole jobs as users run them: the CLI on digits, `mlflow run` on the CIFAR-10 sample, a plugin bias."""

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from biaslab.cli import app

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_LANDSCAPE = ["--n-directions", "2", "--points", "5", "--n-candidates", "3", "--resolution", "5",
                  "--landscape-samples", "100"]


def artifact_paths(run_id: str) -> set[str]:
    client = MlflowClient()
    found = set()
    pending = [None]
    while pending:
        for item in client.list_artifacts(run_id, pending.pop()):
            if item.is_dir:
                pending.append(item.path)
            else:
                found.add(item.path)
    return found


def test_cli_run_digits_then_landscape_again(tracking):
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--preset", "quick", "--epochs", "2", "--bias", "mislabel", "--pct", "30",
                                 "--quiet", *TINY_LANDSCAPE])
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "landscape_1d_ce_center" in run.data.metrics
    assert "landscape_2d_ce_center" in run.data.metrics
    paths = artifact_paths(run_id)
    for expected in ("landscape/curves_1d.npz", "landscape/surface_2d.npz", "plots/curves_1d.png",
                     "plots/surface_2d_ce_contour.png", "plots/surface_2d_ce_3d.png", "checkpoints/model.keras"):
        assert expected in paths, expected

    # the same probe again reuses the stored arrays; another resolution goes to a folder of its own
    again = runner.invoke(app, ["landscape", "--run-id", run_id, "--quiet", "--resolution", "3"])
    assert again.exit_code == 0, again.output
    labelled = [path for path in artifact_paths(run_id) if path.startswith("landscape/probe-")]
    assert any(path.endswith("surface_2d.npz") for path in labelled)
    assert "landscape/surface_2d.npz" in artifact_paths(run_id)


def test_cli_bad_input_exits_before_work(tracking):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--preset", "quick", "--bias", "size", "--pct", "50"])
    assert result.exit_code == 2
    assert "bias 'size' needs a class" in result.output
    result = runner.invoke(app, ["train", "--preset", "quick", "--bias", "size", "--cls", "3", "--pct", "50",
                                 "--varr", "1"])
    assert result.exit_code == 2
    assert "does not take option(s) varr" in result.output
    result = runner.invoke(app, ["landscape", "--run-id", "0123456789abcdef"])
    assert result.exit_code == 2
    assert "0123456789abcdef" in result.output
    assert mlflow.search_runs(search_all_experiments=True).empty


def test_landscape_of_legacy_h5_weights(tracking, tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from biaslab.models import build_model

    weights = tmp_path / "keras2.h5"
    with h5py.File(weights, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, build_model("resnet20", (8, 8, 1), 10, seed=5))
    runner = CliRunner()
    result = runner.invoke(app, ["landscape", "--checkpoint", str(weights), "--preset", "quick", "--quiet",
                                 *TINY_LANDSCAPE])
    assert result.exit_code == 0, result.output
    run = MlflowClient().get_run(result.stdout.strip().splitlines()[-1])
    assert run.data.tags["biaslab.source_checkpoint"] == str(weights.resolve())
    assert "landscape_2d_ce_center" in run.data.metrics

    mismatch = runner.invoke(app, ["landscape", "--checkpoint", str(weights), "--model", "sharesnet20",
                                   "--preset", "quick", "--quiet"])
    assert mismatch.exit_code == 2
    assert "does not match model 'sharesnet20'" in mismatch.output


def mlflow_run(tracking_uri: str, *parameters: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLFLOW_RUN_ID", None)
    command = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "--env-manager", "local",
               "--experiment-name", "end-to-end"]
    for parameter in parameters:
        command += ["-P", parameter]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def only_run():
    experiment = mlflow.get_experiment_by_name("end-to-end")
    runs = MlflowClient().search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return runs[0]


@pytest.mark.slow
def test_mlflow_run_cifar_sample(tracking, cifar_sample):
    completed = mlflow_run(tracking, "dataset=cifar10", f"data_dir={cifar_sample}", "bias=size", "cls=cat",
                           "pct=90", "preset=quick", "epochs=1", "n_directions=1", "points=3", "n_candidates=2",
                           "resolution=3", "landscape_samples=100")
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["cls"] == "cat"
    assert run.data.metrics["bias_count_after_cat"] == 30
    assert run.data.metrics["bias_count_after_dog"] == 300
    paths = artifact_paths(run.info.run_id)
    for expected in ("bias/manifest.csv", "checkpoints/model.keras", "reports/classification_report.txt",
                     "plots/confusion_matrix.png", "landscape/surface_2d.npz", "plots/curves_1d.png"):
        assert expected in paths, expected


@pytest.mark.slow
def test_mlflow_run_plugin_bias(tracking):
    completed = mlflow_run(tracking, "preset=quick", "bias=flip", "cls=3", "pct=40", "to=5", "epochs=1",
                           "n_directions=1", "points=3", "n_candidates=2", "resolution=3", "landscape_samples=50")
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = only_run()
    assert run.data.params["bias"] == "flip"
    assert run.data.params["bias.to"] == "5"
    # 40% of the 145 training threes (round half up gives 58) now carry the label 5
    assert run.data.metrics["bias_count_after_3"] == run.data.metrics["bias_count_before_3"] - 58
    assert run.data.metrics["bias_count_after_5"] == run.data.metrics["bias_count_before_5"] + 58
