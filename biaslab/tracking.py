"""All MLflow calls of biaslab: runs, params, per-epoch metrics, artifacts and resume state.

The tracking URI is MLflow's own default (``sqlite:///mlflow.db`` in the working folder for
MLflow 3.x) unless MLFLOW_TRACKING_URI is set. Logging is explicit: mlflow.tensorflow.autolog
needs tensorboard, which TensorFlow 2.21 no longer installs.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import keras
import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from biaslab.errors import ConfigError, RunNotFoundError

try:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
except ImportError:  # pragma: no cover - the constant moved in some MLflow versions
    MAX_PARAM_VAL_LENGTH = 6000

DEFAULT_EXPERIMENT = "biaslab"
TRUNCATION_MARK = "...[truncated; full value in config.json]"
STATE_ARTIFACT = "checkpoints/state.json"
CHECKPOINT_ARTIFACT = "checkpoints/model.keras"
FAILED_PLUGINS_TAG = "biaslab.plugins_failed"


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def fit_param(value: str) -> str:
    """Shorten a param value that MLflow would reject as too long, marking the cut."""
    if len(value) <= MAX_PARAM_VAL_LENGTH:
        return value
    return value[: MAX_PARAM_VAL_LENGTH - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def get_run(run_id: str) -> mlflow.entities.Run:
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException as error:
        raise RunNotFoundError(
            f"MLflow run {run_id!r} was not found at tracking URI {tracking_uri()}: {error.message}. "
            f"Check the run id, or set MLFLOW_TRACKING_URI to the store that holds it."
        ) from None


def experiment_id(name: str) -> str:
    """Return the id of experiment ``name``, creating it when missing."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name)


def start_run(
    experiment: str,
    run_name: str = "",
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> mlflow.ActiveRun:
    """Start (or resume) the run of a training.

    Inside ``mlflow run`` MLflow sets MLFLOW_RUN_ID, and that run is used. A parent run id makes
    the run a child of it (tag ``mlflow.parentRunId``), in the parent's experiment.
    """
    run_id = run_id or os.environ.get("MLFLOW_RUN_ID") or None
    all_tags = dict(tags or {})
    if run_id is not None:
        get_run(run_id)
        active = mlflow.start_run(run_id=run_id)
    else:
        if parent_run_id:
            experiment_ids = get_run(parent_run_id).info.experiment_id
            all_tags["mlflow.parentRunId"] = parent_run_id
        else:
            experiment_ids = experiment_id(experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
        active = mlflow.start_run(experiment_id=experiment_ids, run_name=run_name or None)
    if all_tags:
        mlflow.set_tags(all_tags)
    return active


def _equivalent(key: str, logged: str, value: str) -> bool:
    """Tell whether a raw value that ``mlflow run`` logged means the same as biaslab's canonical value.

    ``mlflow run`` logs the -P values as typed (``pct=9e1``, ``cls=CAT``) before biaslab starts,
    and a param cannot change once logged, so equal numbers and case-insensitive names match.
    """
    if logged.lower() == value.lower() or (logged == "''" and value == ""):
        return True
    try:
        return float(logged) == float(value)
    except ValueError:
        return False


def check_params(run_id: str, params: Mapping[str, str]) -> None:
    """Raise ConfigError when the run already has a param with another value, naming the keys."""
    run = get_run(run_id)
    logged = run.data.params
    clashes = [key for key, value in params.items()
               if key in logged and logged[key] != fit_param(value) and not _equivalent(key, logged[key], value)]
    # a class given by index (cls=3) logged by `mlflow run` names the same class as cls=cat
    if "cls" in clashes and run.data.tags.get("mlflow.project.entryPoint") and logged["cls"].isdigit():
        clashes.remove("cls")
    if clashes:
        details = ", ".join(f"{key}: logged {logged[key]!r}, now {params[key]!r}" for key in clashes)
        raise ConfigError(
            f"run {run_id} was started with other settings ({details}). Resume it with the same settings, "
            f"or start a new run."
        )


def log_params(run_id: str, params: Mapping[str, str], folder: Path) -> None:
    """Log params flat (each cut to MLflow's limit) and the exact values as ``config.json``.

    Keys the run has already (``mlflow run`` logs its -P values first) are left as they are;
    ``check_params`` has made sure they mean the same.
    """
    path = folder / "config.json"
    path.write_text(json.dumps(dict(params), indent=2, sort_keys=True) + "\n")
    mlflow.log_artifact(str(path))
    log_new_params(run_id, params)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    if metrics:
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()}, step=step)


def log_files(files: Mapping[str, Iterable[Path]]) -> None:
    """Log files under MLflow artifact folders: ``{"plots": [path, ...], ...}``."""
    for folder, paths in files.items():
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=folder or None)


def end_run(failed: bool = False) -> None:
    status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
    mlflow.end_run(status=status)


def download_artifact(run_id: str, path: str, folder: Path) -> Path | None:
    """Download one artifact of a run, or return None when it does not exist."""
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(folder)))
    except (MlflowException, OSError):
        return None


def training_state(run_id: str, folder: Path) -> dict[str, Any] | None:
    """Return the run's saved training state (epochs done) or None when it has no checkpoint."""
    path = download_artifact(run_id, STATE_ARTIFACT, folder)
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log the epoch's metrics and learning rate (step = epochs done) and the last checkpoint."""

    def __init__(self, folder: Path, learning_rate_at, checkpoint_every: int = 1):
        super().__init__()
        self.folder = folder
        self.learning_rate_at = learning_rate_at
        self.checkpoint_every = checkpoint_every

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        metrics = {key: float(value) for key, value in (logs or {}).items() if key != "learning_rate"}
        metrics["learning_rate"] = self.learning_rate_at(epoch)
        log_metrics(metrics, step=epoch + 1)
        if (epoch + 1) % self.checkpoint_every == 0:
            self.save_checkpoint(epoch + 1)

    def save_checkpoint(self, epochs_done: int) -> None:
        model_path = self.folder / "model.keras"
        self.model.save(model_path)
        state_path = self.folder / "state.json"
        state_path.write_text(json.dumps({"epochs_done": epochs_done}) + "\n")
        mlflow.log_artifact(str(model_path), artifact_path="checkpoints")
        mlflow.log_artifact(str(state_path), artifact_path="checkpoints")


def scratch_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="biaslab-")


def log_new_params(run_id: str, params: Mapping[str, str]) -> list[str]:
    """Log the params the run does not have yet; return the keys it has with another value.

    MLflow params cannot change once logged, and earlier values must not be lost, so a key with
    a different value is left as it is and reported to the caller.
    """
    logged = get_run(run_id).data.params
    fresh = {key: fit_param(str(value)) for key, value in params.items() if key not in logged}
    differing = [key for key, value in params.items() if key in logged and logged[key] != fit_param(str(value))]
    items = list(fresh.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))
    return differing
