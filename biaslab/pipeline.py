"""The main job as library functions: prepare data, train, evaluate, probe, log.

``run_job`` is what ``biaslab run``, ``biaslab train`` and every MLproject entry point call.
Settings and data are checked before an MLflow run starts, so bad input leaves no run behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from biaslab import tracking
from biaslab.biases import BiasInput, BiasResult, class_counts, count_stats, write_manifest
from biaslab.config import RunConfig
from biaslab.data import Dataset, Preprocessor, load_dataset
from biaslab.errors import ConfigError
from biaslab.evaluation import evaluate
from biaslab.models import build_model, parameter_counts
from biaslab.plots import plot_confusion, plot_history
from biaslab.plugins import Plugins, load_plugins
from biaslab.training import compile_model, train


@dataclasses.dataclass
class PreparedData:
    """The clean dataset after preprocessing and the biased training split."""

    dataset: Dataset
    preprocessor: Preprocessor
    x_test: np.ndarray
    bias: BiasResult

    @property
    def y_train_clean(self) -> np.ndarray:
        return self.dataset.y_train[self.bias.indices]


def prepare_data(config: RunConfig, plugins: Plugins) -> PreparedData:
    """Load the clean dataset, preprocess it with training-split statistics and apply the bias."""
    dataset = load_dataset(config.dataset, config.data_dir or None)
    preprocessor = Preprocessor.fit(config.demean, dataset.x_train)
    x_train = preprocessor(dataset.x_train)
    spec = plugins.get("bias", config.bias)
    bias_input = BiasInput(
        x=x_train,
        x_pixels=dataset.x_train,
        y=dataset.y_train,
        preprocess=preprocessor,
        class_names=dataset.class_names,
        cls=config.cls_index,
        pct=config.pct,
        options=config.options,
        seed=config.seed,
    )
    result = spec.apply(bias_input)
    if len(result.y) == 0:
        raise ConfigError(f"bias {config.bias!r} left no training data; lower pct")
    result.stats.update(
        count_stats(class_counts(dataset.y_train, dataset.num_classes), class_counts(result.y, dataset.num_classes),
                    dataset.class_names)
    )
    return PreparedData(dataset, preprocessor, preprocessor(dataset.x_test), result)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_tags(config: RunConfig, plugins: Plugins, kind: str) -> dict[str, str]:
    tags = {"bias": config.bias, "cls": config.cls, "pct": config.params()["pct"], "biaslab.kind": kind}
    if plugins.failed:
        tags[tracking.FAILED_PLUGINS_TAG] = plugins.failed_tag()
    return tags


def run_job(
    config: RunConfig,
    plugins: Plugins | None = None,
    *,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    progress: bool = True,
) -> str:
    """Run the main job (train, evaluate and, when ``config.landscape``, probe) in one MLflow run.

    ``run_id`` resumes an existing run from its last checkpoint. Returns the run id.
    """
    plugins = plugins or load_plugins()
    data = prepare_data(config, plugins)
    params = config.params()
    resumed = run_id or None

    if resumed:
        tracking.check_params(resumed, params)
    with tracking.scratch_folder() as scratch:
        folder = Path(scratch)
        active = tracking.start_run(
            config.experiment, config.run_name, run_id=resumed, parent_run_id=parent_run_id,
            tags=run_tags(config, plugins, "train"),
        )
        run = active.info.run_id
        print(f"MLflow tracking URI: {tracking.tracking_uri()}", file=sys.stderr)
        print(f"MLflow run id: {run}", file=sys.stderr, flush=True)
        try:
            _run_steps(config, plugins, data, params, run, folder, progress)
        except BaseException:
            tracking.end_run(failed=True)
            raise
        tracking.end_run()
    return run


def _run_steps(config: RunConfig, plugins: Plugins, data: PreparedData, params: dict[str, str], run_id: str,
               folder: Path, progress: bool) -> None:
    # params, bias manifest and bias statistics; a resumed run has them already
    state = tracking.training_state(run_id, folder / "state")
    if state is None:
        tracking.check_params(run_id, params)
        tracking.log_params(run_id, params, folder)
        summary = {"bias": config.bias, "cls": config.cls, "pct": config.pct, "seed": config.seed,
                   "options": config.options, "dataset": data.dataset.source}
        tracking.log_files({"bias": write_manifest(data.bias, folder / "bias", summary)})
        tracking.log_metrics(data.bias.stats)

    # build the model, or load the last checkpoint of an interrupted run
    dataset = data.dataset
    checkpoints = folder / "checkpoints"
    checkpoints.mkdir()
    epochs_done = 0
    if state is not None:
        path = tracking.download_artifact(run_id, tracking.CHECKPOINT_ARTIFACT, folder / "resume")
        if path is None:
            raise tracking.RunNotFoundError(f"run {run_id} has a training state but no {tracking.CHECKPOINT_ARTIFACT}")
        model = keras.models.load_model(path)
        epochs_done = int(state["epochs_done"])
        print(f"resuming run {run_id} after epoch {epochs_done} of {config.epochs}", file=sys.stderr)
    else:
        model = build_model(config.model, dataset.input_shape, dataset.num_classes, seed=config.seed)
        compile_model(model, config.learning_rate)
        tracking.log_metrics({f"params_{key}": value for key, value in parameter_counts(model).items()})

    # train up to the configured number of epochs
    logger = tracking.MlflowEpochLogger(checkpoints, config.learning_rate_at)
    if epochs_done < config.epochs:
        train(model, data.bias.x, data.bias.y, (data.x_test, dataset.y_test),
              dataset.num_classes, config.epochs, config.batch_size, config.learning_rate_at,
              initial_epoch=epochs_done, callbacks=[logger], seed=config.seed, progress=progress)
    checkpoint = checkpoints / "model.keras"
    if not checkpoint.exists():
        logger.set_model(model)
        logger.save_checkpoint(config.epochs)

    # evaluate on the biased and the clean training labels and on the test split
    result = evaluate(model, data.bias.x, data.bias.y, data.y_train_clean, data.x_test, dataset.y_test,
                      dataset.class_names)
    tracking.log_metrics(result.metrics)
    reports = folder / "reports"
    reports.mkdir()
    (reports / "classification_report.txt").write_text(result.report)
    plots = folder / "plots"
    plots.mkdir()
    title = f"{config.model} on {config.dataset}, bias {describe_bias(config)}"
    history = {key: [m.value for m in MlflowClient().get_metric_history(run_id, key)]
               for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    tracking.log_files({
        "reports": [reports / "classification_report.txt"],
        "plots": [
            plot_confusion(result.confusion, dataset.class_names, plots / "confusion_matrix.png", f"test split: {title}"),
            plot_history(history, plots / "training_curves.png", title),
        ],
    })
    print(f"train accuracy {result.metrics['train_accuracy']:.4f} (clean labels "
          f"{result.metrics['train_accuracy_clean']:.4f}), test accuracy {result.metrics['test_accuracy']:.4f}, "
          f"generalization error {result.metrics['gen_error']:.4f}", file=sys.stderr)

    if config.landscape:
        probe_run_landscape(config, plugins, model, data, run_id, file_sha256(checkpoint), folder, progress)
    if config.flatness:
        measure_run_flatness(config, plugins, model, data, folder, progress)


def describe_bias(config: RunConfig) -> str:
    if config.bias == "none":
        return "none"
    parts = [config.bias]
    if config.cls:
        parts.append(config.cls)
    parts.append(f"{config.params()['pct']}%")
    return " ".join(parts)


def landscape_split(config: RunConfig, data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """Select the landscape's evaluation samples: the test split or the biased training split, optionally a seeded subset."""
    if config.landscape_split == "train":
        x, y = data.bias.x, data.bias.y
    else:
        x, y = data.x_test, data.dataset.y_test
    if 0 < config.landscape_samples < len(y):
        chosen = np.sort(np.random.default_rng(config.landscape_seed).choice(len(y), config.landscape_samples,
                                                                                replace=False))
        x, y = x[chosen], y[chosen]
    return x, y


def probe_run_landscape(config, plugins, model, data, run_id, checkpoint_hash, folder, progress,
                        label: str = "") -> dict[str, float]:
    """Probe and log the landscape; stored arrays of an interrupted probe of this run are resumed.

    A ``label`` puts the arrays and plots under ``landscape/<label>/`` and ``plots/<label>/``, so a
    second probe of a run with other settings keeps the first one's files.
    """
    from biaslab.landscape import probe_landscape

    x, y = landscape_split(config, data)
    out_dir = folder / "probe"
    landscape_folder = f"landscape/{label}" if label else "landscape"
    # earlier arrays of this run: the probe reuses or continues those that match its settings
    downloaded = tracking.download_artifact(run_id, landscape_folder, folder / "earlier")
    if downloaded is not None and downloaded.is_dir():
        (out_dir / "landscape").mkdir(parents=True, exist_ok=True)
        for path in downloaded.glob("*.npz"):
            path.replace(out_dir / "landscape" / path.name)
    meta = {"run_id": run_id, "model": config.model, "dataset": config.dataset, "split": config.landscape_split,
            "bias": describe_bias(config)}
    try:
        result = probe_landscape(model, x, y, config.landscape_settings(), out_dir, plugins,
                                 checkpoint_hash=checkpoint_hash, meta=meta, progress=progress)
    except BaseException:
        # keep the finished points, so that running again continues where this stopped
        tracking.log_files({landscape_folder: sorted((out_dir / "landscape").glob("*.npz"))})
        raise
    tracking.log_metrics(result.metrics)
    tracking.log_files({f"{folder_name}/{label}" if label else folder_name: paths
                        for folder_name, paths in result.files.items()})
    return result.metrics


def measure_run_flatness(config, plugins, model, data, folder, progress) -> dict[str, float]:
    """Compute and log flatness measures on the landscape's evaluation split."""
    from biaslab.flatness import compute_measures

    x, y = landscape_split(config, data)
    names = None if config.flatness == ("default",) else list(config.flatness)
    landscape = {key: value for key, value in mlflow.get_run(mlflow.active_run().info.run_id).data.metrics.items()
                 if key.startswith("landscape_")}
    result = compute_measures(model, x, y, names, plugins, seed=config.landscape_seed, progress=progress,
                              landscape_metrics=landscape or None)
    tracking.log_metrics(result.metrics)
    run_id = mlflow.active_run().info.run_id
    differing = tracking.log_new_params(run_id, result.settings)
    (folder / "flatness").mkdir(exist_ok=True)
    details = folder / "flatness" / "details.json"
    details.write_text(json.dumps({"details": result.details, "settings": result.settings,
                                   "settings_not_logged_as_params": differing}, indent=2, default=str) + "\n")
    tracking.log_files({"flatness": [details]})
    return result.metrics
