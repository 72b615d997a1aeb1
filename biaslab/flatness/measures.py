"""MeasureSpec and the built-in flatness measures.

Each measure is a function of a MeasureContext that returns metrics. The built-ins are
registered in ``biaslab.default_plugins.measures`` through the same hook a third-party plugin
uses. The TensorFlow-based modules are imported inside the functions, so loading the plugins
stays cheap.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

from biaslab.flatness.context import MeasureContext
from biaslab.flatness.options import require_bool, require_int, require_number, require_text
from biaslab.flatness.progress import Progress


@dataclasses.dataclass(frozen=True)
class MeasureSpec:
    """A flatness measure that plugins register.

    ``compute`` returns metric names and values. ``cheap`` puts the measure in the default set
    of ``compute_measures(names=None)``, where ``quick_options`` override ``defaults``.
    ``validate`` receives the merged options and raises ConfigError for a bad value; it runs for
    every selected measure before any measure computes.
    """

    name: str
    description: str
    compute: Callable[[MeasureContext], dict[str, float]]
    cheap: bool = False
    defaults: dict = dataclasses.field(default_factory=dict)
    quick_options: dict = dataclasses.field(default_factory=dict)
    validate: Callable[[dict], None] | None = None


# hessian_eigs

def _validate_eigs(options: dict) -> None:
    require_int("hessian_eigs", options, "k", 1)
    require_number("hessian_eigs", options, "tol", above=0.0, at_most=1.0)
    require_int("hessian_eigs", options, "max_hvps", options["k"] + 1)


def compute_hessian_eigs(context: MeasureContext) -> dict[str, float]:
    """Compute the k largest Hessian eigenvalues of the data loss by Lanczos on HVPs."""
    from biaslab.flatness.eigen import top_eigenvalues

    options = context.options
    operator = context.hessian_operator()
    progress = Progress("hessian_eigs", options["max_hvps"], "HVPs", context.progress, total_is_max=True)
    result = top_eigenvalues(
        operator.hvp, operator.dimension, options["k"],
        tol=options["tol"], max_hvps=options["max_hvps"], seed=context.seed, progress=progress,
    )
    progress.finish(result.hvps)

    metrics = {f"hessian_eig_{index + 1}": value for index, value in enumerate(result.eigenvalues)}
    metrics["hessian_eigs_hvps"] = float(result.hvps)
    context.details["eigenvalues"] = result.eigenvalues
    return metrics


# hessian_trace

def _validate_trace(options: dict) -> None:
    require_int("hessian_trace", options, "samples", 2)
    require_number("hessian_trace", options, "rtol", at_least=0.0)
    require_int("hessian_trace", options, "min_samples", 2)


def compute_hessian_trace(context: MeasureContext) -> dict[str, float]:
    """Estimate the Hessian trace of the data loss (Hutchinson) and read off the L2 penalty's trace."""
    from biaslab.flatness.regularization import l2_hessian_trace, unexplained_regularization
    from biaslab.flatness.trace import TraceBlock, hutchinson_trace

    options = context.options
    operator = context.hessian_operator()
    blocks = [TraceBlock(part.path, part.start, part.stop) for part in operator.layout]
    progress = Progress("hessian_trace", options["samples"], "HVPs", context.progress,
                        total_is_max=options["rtol"] > 0)
    estimate = hutchinson_trace(
        operator.hvp, operator.dimension,
        samples=options["samples"], rtol=options["rtol"], min_samples=options["min_samples"],
        seed=context.seed, blocks=blocks, progress=progress,
    )

    sizes = {part.path: part.size for part in operator.layout}
    context.details["by_variable"] = {
        path: {**values, "size": sizes[path]} for path, values in estimate.by_block.items()
    }
    metrics = {
        "hessian_trace": estimate.mean,
        "hessian_trace_stderr": estimate.stderr,
        "hessian_trace_samples": float(estimate.samples),
    }

    # the penalty's Hessian is exact, so it is reported next to the estimate, never added to it
    penalty_trace, penalty_by_variable, penalty_notes = l2_hessian_trace(operator.variables)
    context.notes.extend(penalty_notes)
    context.details["regularization_by_variable"] = penalty_by_variable
    if penalty_trace is not None:
        metrics["hessian_trace_regularization"] = penalty_trace
    unexplained = unexplained_regularization(context.model, operator.variables)
    if abs(unexplained) > 1e-6:
        context.notes.append(
            f"model.losses contains {unexplained:.6g} beyond the weight regularizers of the measured "
            f"variables; the Hessian of that part is not in hessian_trace_regularization"
        )
    return metrics


# eps_sharpness

def _validate_sharpness(options: dict) -> None:
    require_number("eps_sharpness", options, "epsilon", above=0.0)
    require_int("eps_sharpness", options, "steps", 1)
    require_number("eps_sharpness", options, "step_fraction", above=0.0, at_most=2.0)
    require_bool("eps_sharpness", options, "random_start")


def compute_eps_sharpness(context: MeasureContext) -> dict[str, float]:
    """Compute Keskar et al.'s epsilon-sharpness of the data loss by projected gradient ascent."""
    import numpy as np

    from biaslab.flatness.sharpness import box_half_widths, projected_gradient_ascent, relative_increase

    options = context.options
    operator = context.hessian_operator()
    half_widths = box_half_widths(operator.flat_weights(), options["epsilon"])
    start = None
    if options["random_start"]:
        start = np.random.default_rng(context.seed).uniform(-1.0, 1.0, size=half_widths.shape) * half_widths
    progress = Progress("eps_sharpness", options["steps"], "ascent steps", context.progress)
    result = projected_gradient_ascent(
        operator.loss_and_gradient, operator.loss, half_widths,
        steps=options["steps"], step_fraction=options["step_fraction"], start=start, progress=progress,
    )
    progress.finish(options["steps"])

    context.details["base_loss"] = result.base_loss
    context.details["max_loss"] = result.max_loss
    context.details["gradient_evaluations"] = result.gradient_evaluations
    context.details["loss_evaluations"] = result.loss_evaluations
    return {"eps_sharpness": relative_increase(result.base_loss, result.max_loss)}


# relative_flatness

def compute_relative_flatness(context: MeasureContext) -> dict[str, float]:
    """Compute Petzka et al.'s relative flatness of the final Dense layer."""
    from biaslab.flatness.relative import relative_flatness

    samples = len(context.y)
    progress = Progress("relative_flatness", samples, "samples", context.progress)
    result = relative_flatness(context.model, context.x, context.y, context.batch_size, progress)
    progress.finish(samples)
    context.details["layer"] = result.layer
    context.details["features"] = result.features
    context.details["outputs"] = result.outputs
    return {"relative_flatness": result.value}


# landscape_curvature

def _validate_curvature(options: dict) -> None:
    require_text("landscape_curvature", options, "key")


def compute_landscape_curvature(context: MeasureContext) -> dict[str, float]:
    """Copy the 1D landscape curvature from the landscape summaries, without recomputing it.

    The curvature is along the landscape's directions, which are filter-normalized unless the
    landscape used another direction plugin.

    Returns no metric, with a note, when no landscape was computed. When summaries are given but
    lack the key, it also warns, because the key option probably names the wrong summary.
    """
    key = context.options["key"]
    summaries = context.landscape_metrics
    if summaries is None:
        context.notes.append("no landscape was computed for this model, so landscape_curvature has no value")
        return {}
    if key not in summaries:
        available = ", ".join(sorted(name for name in summaries if "curvature" in name)) or "none"
        message = (
            f"landscape summary {key!r} not found, so landscape_curvature has no value; curvature summaries "
            f"available: {available}. Set the landscape_curvature option key to one of them"
        )
        context.notes.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
        return {}
    context.details["source"] = key
    return {"landscape_curvature": float(summaries[key])}


# Every built-in is in the default set: with the quick options (k=1, 20 trace samples) the set
# costs about 41 HVPs and 10 gradients over the evaluation set (BENCHMARKS.md has timings).
BUILTIN_MEASURES = (
    MeasureSpec(
        name="hessian_eigs",
        description="Largest Hessian eigenvalues of the data loss (Lanczos on Hessian-vector products)",
        compute=compute_hessian_eigs,
        cheap=True,
        defaults={"k": 3, "tol": 1e-3, "max_hvps": 300},
        quick_options={"k": 1},
        validate=_validate_eigs,
    ),
    MeasureSpec(
        name="hessian_trace",
        description="Hessian trace of the data loss (Hutchinson, Rademacher probes), split by variable",
        compute=compute_hessian_trace,
        cheap=True,
        defaults={"samples": 100, "rtol": 0.01, "min_samples": 10},
        quick_options={"samples": 20},
        validate=_validate_trace,
    ),
    MeasureSpec(
        name="eps_sharpness",
        description="Keskar et al. epsilon-sharpness: max relative loss increase (%) in a box around the weights",
        compute=compute_eps_sharpness,
        cheap=True,
        defaults={"epsilon": 1e-3, "steps": 10, "step_fraction": 0.25, "random_start": False},
        validate=_validate_sharpness,
    ),
    MeasureSpec(
        name="relative_flatness",
        description="Petzka et al. relative flatness of the final Dense layer (invariant to layer rescaling)",
        compute=compute_relative_flatness,
        cheap=True,
    ),
    MeasureSpec(
        name="landscape_curvature",
        description="Curvature f''(0) of the mean 1D landscape curve, read from the landscape summaries",
        compute=compute_landscape_curvature,
        cheap=True,
        defaults={"key": "landscape_1d_ce_curvature"},
        validate=_validate_curvature,
    ),
)
