"""compute_measures: check every setting, then run the selected measures and collect their results."""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Any

import numpy as np

from biaslab.errors import ConfigError, PluginError
from biaslab.flatness.context import FlatnessResult, MeasureContext
from biaslab.flatness.measures import MeasureSpec


def _select(names: list[str] | None, plugins: Any) -> tuple[list[MeasureSpec], bool]:
    """Return the specs to run and whether they are the cheap default set."""
    if names is None:
        specs = [plugins.get("measure", name) for name in plugins.names("measure")]
        return [spec for spec in specs if spec.cheap], True
    if isinstance(names, str):
        raise ConfigError(f"names must be a list of measure names, got the string {names!r}; use [{names!r}]")
    duplicates = sorted({name for name in names if list(names).count(name) > 1})
    if duplicates:
        raise ConfigError(f"measures named more than once: {', '.join(duplicates)}; name each measure once")
    return [plugins.get("measure", name) for name in names], False


def _merge_options(specs: list[MeasureSpec], options: dict[str, dict] | None, quick: bool) -> dict[str, dict]:
    """Merge user options over each measure's defaults and check them, before anything is computed."""
    options = dict(options or {})
    selected = {spec.name for spec in specs}
    stray = sorted(set(options) - selected)
    if stray:
        raise ConfigError(
            f"options given for measures that are not selected: {', '.join(stray)}; "
            f"selected measures: {', '.join(sorted(selected)) or 'none'}"
        )

    merged: dict[str, dict] = {}
    for spec in specs:
        requested = options.get(spec.name) or {}
        if not isinstance(requested, dict):
            raise ConfigError(f"options for measure {spec.name!r} must be a dict of option values, got {requested!r}")
        unknown = sorted(set(requested) - set(spec.defaults))
        if unknown:
            allowed = ", ".join(sorted(spec.defaults)) or "none"
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for measure {spec.name!r}; its options are: {allowed}"
            )
        values = dict(spec.defaults)
        if quick:
            values.update(spec.quick_options)
        values.update(requested)
        if spec.validate is not None:
            spec.validate(values)
        merged[spec.name] = values
    return merged


def _check_data(x: Any, y: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid: it must be an integer >= 1")
    x = np.asarray(x)
    y = np.asarray(y)
    if not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(f"x has dtype {x.dtype}; pass preprocessed float32 features or images")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(
            f"y has shape {y.shape} and dtype {y.dtype}; pass integer class labels of shape (samples,)"
        )
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"x has {x.shape[0]} samples and y has {y.shape[0]} labels; pass the same, non-zero number")
    return x.astype(np.float32, copy=False), y


def _check_metrics(spec: MeasureSpec, metrics: Any, collected: dict[str, float]) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise PluginError(f"measure {spec.name!r} returned {type(metrics).__name__}, expected a dict of metrics")
    checked = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise PluginError(f"measure {spec.name!r} returned metric {key!r}={value!r}; expected a string name and a number")
        if key in collected:
            raise PluginError(f"measure {spec.name!r} returned metric {key!r}, which another measure already returned")
        checked[key] = float(value)
    return checked


def _json_safe(value: Any) -> Any:
    """Convert NumPy scalars and arrays to plain Python and non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def compute_measures(
    model: Any,
    x: Any,
    y: Any,
    names: list[str] | None,
    plugins: Any,
    *,
    seed: int = 0,
    batch_size: int = 256,
    options: dict[str, dict] | None = None,
    progress: bool = True,
    landscape_metrics: dict[str, float] | None = None,
) -> FlatnessResult:
    """Compute flatness measures of ``model`` at its current weights over the evaluation set (x, y).

    ``names=None`` runs the cheap default set (measures registered with ``cheap=True``, with
    their ``quick_options``). ``options`` maps a measure name to settings that override its
    defaults. Unknown measures, unknown options and invalid values raise ConfigError before any
    computation. The built-in measures never change the model's weights.
    """
    specs, quick = _select(names, plugins)
    merged = _merge_options(specs, options, quick)
    x, y = _check_data(x, y, batch_size)

    base = MeasureContext(
        model=model, x=x, y=y, batch_size=int(batch_size), seed=int(seed), options={},
        progress=progress, landscape_metrics=landscape_metrics,
    )
    settings = {
        "flatness.measures": ",".join(spec.name for spec in specs),
        "flatness.seed": str(seed),
        "flatness.batch_size": str(batch_size),
        "flatness.samples": str(x.shape[0]),
    }
    for spec in specs:
        for option, value in merged[spec.name].items():
            settings[f"flatness.{spec.name}.{option}"] = str(value)

    # imported here so that importing biaslab.flatness does not import TensorFlow
    from biaslab.flatness.regularization import regularization_loss

    metrics: dict[str, float] = {"regularization_loss": regularization_loss(model)}
    details: dict[str, Any] = {"measures": {}, "notes": []}

    for spec in specs:
        context = dataclasses.replace(base, options=dict(merged[spec.name]), details={}, notes=[])
        operator = base.shared.get("hessian_operator")
        hvps_before = operator.hvp_count if operator is not None else 0
        gradients_before = operator.gradient_count if operator is not None else 0
        started = time.perf_counter()

        measured = spec.compute(context)

        seconds = time.perf_counter() - started
        metrics.update(_check_metrics(spec, measured, metrics))
        operator = base.shared.get("hessian_operator")
        entry = {
            "seconds": seconds,
            "hvps": (operator.hvp_count - hvps_before) if operator is not None else 0,
            "gradient_evaluations": (operator.gradient_count - gradients_before) if operator is not None else 0,
            "options": merged[spec.name],
            "notes": context.notes,
        }
        entry.update(context.details)
        details["measures"][spec.name] = entry

    operator = base.shared.get("hessian_operator")
    if operator is not None:
        details["parameters"] = operator.describe()
        if operator.unused_paths:
            details["notes"].append(
                f"{len(operator.unused_paths)} trainable variable(s) have no gradient and are excluded from "
                f"the measured parameters: {', '.join(operator.unused_paths)}"
            )
    return FlatnessResult(metrics=metrics, settings=settings, details=_json_safe(details))
