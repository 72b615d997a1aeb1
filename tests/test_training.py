"""Training runs on digits: checkpoints, resume after an interruption, failure status, tags."""

import json

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from biaslab import tracking as biaslab_tracking
from biaslab.config import build_config
from biaslab.data import load_digits
from biaslab.errors import ConfigError
from biaslab.models import build_model
from biaslab.pipeline import run_job
from biaslab.training import compile_model, train


def tiny_config(plugins, **settings):
    base = dict(preset="quick", epochs=2, landscape=False, experiment="tests")
    base.update(settings)
    return build_config(plugins, **base)


def test_checkpoint_roundtrip_same_predictions(tmp_path):
    data = load_digits()
    model = build_model("sharesnet20", data.input_shape, 10, seed=1)
    compile_model(model, 1e-3)
    train(model, data.x_train[:256], data.y_train[:256], (data.x_test[:64], data.y_test[:64]), 10, epochs=1,
          batch_size=64, learning_rate_at=lambda epoch: 1e-3, progress=False)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model.predict(data.x_test, verbose=0), loaded.predict(data.x_test, verbose=0))
    for before, after in zip(model.variables, loaded.variables):
        np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_run_logs_layout(plugins, tracking):
    run_id = run_job(tiny_config(plugins, bias="mislabel", pct=20), plugins, progress=False)
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["bias"] == "mislabel"
    assert run.data.params["pct"] == "20"
    assert run.data.tags["bias"] == "mislabel"
    for key in ("train_accuracy", "train_accuracy_clean", "test_accuracy", "gen_error", "bias_realized_pct",
                "test_precision_3", "test_recall_3", "test_f1_3"):
        assert key in run.data.metrics, key
    metrics = run.data.metrics
    assert metrics["gen_error"] == pytest.approx(metrics["train_accuracy"] - metrics["test_accuracy"])
    assert metrics["bias_realized_pct"] == pytest.approx(20.0, abs=0.1)
    history = MlflowClient().get_metric_history(run_id, "learning_rate")
    assert [point.step for point in history] == [1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(MlflowClient().get_metric_history(run_id, key)) == 2
    artifacts = {item.path for folder in ("bias", "checkpoints", "plots", "reports")
                 for item in MlflowClient().list_artifacts(run_id, folder)}
    assert {"bias/manifest.csv", "checkpoints/model.keras", "plots/confusion_matrix.png",
            "reports/classification_report.txt"} <= artifacts


def test_interrupted_training_resumes(plugins, tracking, monkeypatch, tmp_path):
    config = tiny_config(plugins, epochs=4)
    original = biaslab_tracking.MlflowEpochLogger.on_epoch_end

    def interrupt_after_second(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(biaslab_tracking.MlflowEpochLogger, "on_epoch_end", interrupt_after_second)
    with pytest.raises(KeyboardInterrupt):
        run_job(config, plugins, progress=False)
    run = MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])[0]
    assert run.info.status == "FAILED"
    run_id = run.info.run_id

    monkeypatch.setattr(biaslab_tracking.MlflowEpochLogger, "on_epoch_end", original)
    assert run_job(config, plugins, run_id=run_id, progress=False) == run_id
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [point.step for point in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4]
    state = json.loads((biaslab_tracking.download_artifact(run_id, biaslab_tracking.STATE_ARTIFACT, tmp_path / "state")).read_text())
    assert state == {"epochs_done": 4}


def test_resume_with_other_settings_rejected(plugins, tracking):
    run_id = run_job(tiny_config(plugins, epochs=1), plugins, progress=False)
    with pytest.raises(ConfigError, match="epochs: logged '1', now '3'"):
        run_job(tiny_config(plugins, epochs=3), plugins, run_id=run_id, progress=False)
    assert MlflowClient().get_run(run_id).data.params["epochs"] == "1"


def test_failed_run_marked_failed_and_tagged(plugins, tracking, monkeypatch):
    from biaslab.plugins import FailedPlugin

    plugins_with_failure = type(plugins)(plugins.manager, plugins.registries,
                                         [FailedPlugin("broken", "fake-broken", "ImportError: x")])

    def explode(*args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr("biaslab.pipeline.evaluate", explode)
    with pytest.raises(RuntimeError, match="evaluation exploded"):
        run_job(tiny_config(plugins, epochs=1), plugins_with_failure, progress=False)
    run = MlflowClient().search_runs([mlflow.get_experiment_by_name("tests").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert run.data.tags[biaslab_tracking.FAILED_PLUGINS_TAG] == "broken (fake-broken): ImportError: x"
    # what was logged before the failure stays
    assert len(MlflowClient().get_metric_history(run.info.run_id, "loss")) == 1
