"""Landscape probes and flatness measures for a model trained earlier: an MLflow run or a checkpoint file.

For a run id the model is the run's last checkpoint, the data and bias are rebuilt from the
run's params, and results are logged into that run. For a checkpoint file (a Keras 3 ``.keras``
model, or legacy Keras 2 ``.h5`` weights of the named architecture) results go to a new run that
records the source file and its SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import keras

from biaslab import tracking
from biaslab.config import RunConfig, build_config
from biaslab.errors import ConfigError, RunNotFoundError
from biaslab.models import build_model
from biaslab.pipeline import (
    file_sha256,
    measure_run_flatness,
    prepare_data,
    probe_run_landscape,
    run_tags,
)
from biaslab.plugins import Plugins, load_plugins

# params logged by a training run that are not RunConfig fields of the same name
_PARAM_FIELDS = {"landscape.split": "landscape_split", "landscape.samples": "landscape_samples",
                 "landscape.direction": "landscape_direction", "landscape.seed": "landscape_seed",
                 "landscape.n_directions": "landscape_n_directions", "landscape.points": "landscape_points",
                 "landscape.candidates": "landscape_candidates", "landscape.resolution": "landscape_resolution",
                 "landscape.lo": "landscape_lo", "landscape.hi": "landscape_hi"}


def config_from_run(run_id: str, plugins: Plugins, overrides: dict[str, Any]) -> RunConfig:
    """Rebuild a run's configuration from its params, with landscape or flatness ``overrides``."""
    params = tracking.get_run(run_id).data.params
    if "model" not in params or "bias" not in params:
        raise RunNotFoundError(f"run {run_id} has no biaslab params (model, bias); it was not made by biaslab train or run")
    fields = {field.name for field in dataclasses.fields(RunConfig)}
    given: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in params.items():
        if key.startswith("bias."):
            options[key[len("bias."):]] = value
        elif key in _PARAM_FIELDS:
            given[_PARAM_FIELDS[key]] = value
        elif key in fields:
            given[key] = value
    given.pop("landscape", None)
    given.update({key: value for key, value in overrides.items() if value is not None and value != ""})
    return build_config(plugins, bias_options=options, landscape=True, **given)


def load_checkpoint(path: Path, model_name: str, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """Load a ``.keras`` model or legacy ``.h5`` weights and check it is the named architecture."""
    if not path.is_file():
        raise RunNotFoundError(f"checkpoint {str(path)!r} does not exist; give a .keras model or .h5 weights file")
    reference = build_model(model_name, input_shape, num_classes, seed=0)
    if path.suffix == ".keras":
        try:
            model = keras.models.load_model(path)
        except Exception as error:  # noqa: BLE001 - Keras raises many types for unreadable files
            raise ConfigError(f"checkpoint {str(path)!r} cannot be loaded as a Keras 3 model: {error}") from None
        expected = [tuple(v.shape) for v in reference.weights]
        found = [tuple(v.shape) for v in model.weights]
        if expected != found or model.output_shape != reference.output_shape:
            raise ConfigError(
                f"checkpoint {str(path)!r} does not match model {model_name!r} for input {input_shape} with "
                f"{num_classes} classes ({len(found)} weight tensors, expected {len(expected)}); name the model it was "
                f"trained as with --model"
            )
        return model
    if path.suffix == ".h5":
        try:
            reference.load_weights(path)
        except (ValueError, KeyError, OSError) as error:
            raise ConfigError(
                f"weights file {str(path)!r} does not match model {model_name!r} for input {input_shape} with "
                f"{num_classes} classes: {error}"
            ) from None
        return reference
    raise ConfigError(f"checkpoint {str(path)!r} is neither a .keras model nor .h5 weights")


def run_landscape_job(
    *,
    run_id: str | None = None,
    checkpoint: str | None = None,
    settings: dict[str, Any] | None = None,
    bias_options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
    measures: bool = False,
    progress: bool = True,
) -> str:
    """Probe the landscape (or, with ``measures``, compute flatness) of an earlier run or a checkpoint file.

    Returns the id of the run the results were logged to.
    """
    plugins = plugins or load_plugins()
    settings = dict(settings or {})
    run_id = run_id or None
    checkpoint = checkpoint or None
    if (run_id is None) == (checkpoint is None):
        raise ConfigError("give exactly one of a run id (--run-id) or a checkpoint file (--checkpoint)")

    if run_id is not None:
        config = config_from_run(run_id, plugins, settings)
        if measures and not config.flatness:
            config = dataclasses.replace(config, flatness=("default",))
        data = prepare_data(config, plugins)
        with tracking.scratch_folder() as scratch:
            folder = Path(scratch)
            path = tracking.download_artifact(run_id, tracking.CHECKPOINT_ARTIFACT, folder / "checkpoint")
            if path is None:
                raise RunNotFoundError(f"run {run_id} has no checkpoint ({tracking.CHECKPOINT_ARTIFACT}); train it first")
            model = keras.models.load_model(path)
            tracking.start_run("", run_id=run_id)
            print(f"MLflow tracking URI: {tracking.tracking_uri()}\nMLflow run id: {run_id}", file=sys.stderr)
            _probe_and_log(config, plugins, model, data, run_id, file_sha256(path), folder, measures, progress)
        return run_id

    config = build_config(plugins, bias_options=bias_options, landscape=True, **settings)
    if measures and not config.flatness:
        config = dataclasses.replace(config, flatness=("default",))
    source = Path(checkpoint).expanduser()
    data = prepare_data(config, plugins)
    model = load_checkpoint(source, config.model, data.dataset.input_shape, data.dataset.num_classes)
    digest = file_sha256(source)
    tags = run_tags(config, plugins, "flatness" if measures else "landscape")
    tags.update({"biaslab.source_checkpoint": str(source.resolve()), "biaslab.source_sha256": digest})
    with tracking.scratch_folder() as scratch:
        folder = Path(scratch)
        active = tracking.start_run(config.experiment, config.run_name, tags=tags)
        new_run = active.info.run_id
        print(f"MLflow tracking URI: {tracking.tracking_uri()}\nMLflow run id: {new_run}", file=sys.stderr)
        try:
            tracking.log_params(new_run, {**config.params(), "checkpoint_sha256": digest}, folder)
        except BaseException:
            tracking.end_run(failed=True)
            raise
        _probe_and_log(config, plugins, model, data, new_run, digest, folder, measures, progress)
    return new_run


def _probe_and_log(config, plugins, model, data, run_id, digest, folder, measures, progress) -> None:
    try:
        label = ""
        differing = tracking.log_new_params(run_id, config.params())
        if differing:
            # the run keeps its logged params and files; this probe's settings and files get a folder of their own
            used = {key: config.params()[key] for key in sorted(differing)}
            label = "probe-" + hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:8]
            kind = "flatness" if measures else "landscape"
            path = folder / f"{label}.json"
            path.write_text(json.dumps(used, indent=2, sort_keys=True) + "\n")
            tracking.log_files({f"{kind}/{label}": [path]})
            warnings.warn(
                f"run {run_id} keeps its logged params {', '.join(sorted(differing))}; the values used now are in "
                f"{kind}/{label}/{path.name}",
                UserWarning,
                stacklevel=2,
            )
        if measures:
            measure_run_flatness(config, plugins, model, data, folder, progress)
        else:
            probe_run_landscape(config, plugins, model, data, run_id, digest, folder, progress, label=label)
    except BaseException:
        tracking.end_run(failed=True)
        raise
    tracking.end_run()
