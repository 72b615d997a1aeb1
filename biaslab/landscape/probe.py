"""A full landscape probe: directions, 1D curves, the 2D surface, summaries and plots."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import keras
import numpy as np

from biaslab.errors import ConfigError
from biaslab.landscape import directions as directions_module
from biaslab.landscape import plots
from biaslab.landscape.directions import Direction, DirectionSpec
from biaslab.landscape.engine import LandscapeEvaluator
from biaslab.landscape.grid import METRICS, PointMetrics, make_axis
from biaslab.landscape.result import LandscapeResult
from biaslab.landscape.settings import LandscapeSettings
from biaslab.landscape.store import SurfaceStore
from biaslab.landscape.summary import summarize_curves, summarize_surface
from biaslab.landscape.surface import compute_curves_1d, compute_surface_2d
from biaslab.landscape.variables import classify_variables, collect_variables, weights_digest

# probability rows of a softmax output sum to 1 up to float32 rounding
_SOFTMAX_TOLERANCE = 1e-3


@dataclasses.dataclass
class PreparedProbe:
    """Checked data, the model's variables and the metadata shared by every file of one probe."""

    spec: DirectionSpec
    x: np.ndarray
    y: np.ndarray
    variables: dict[str, keras.Variable]
    kinds: dict[str, str]
    weights: dict[str, np.ndarray]
    metadata: dict
    title_context: str
    landscape_dir: Path
    plots_dir: Path


def run_probe(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    settings: LandscapeSettings,
    out_dir: Path,
    plugins,
    *,
    checkpoint_hash: str = "",
    meta: dict | None = None,
    progress: bool = True,
    do_1d: bool = True,
    do_2d: bool = True,
) -> LandscapeResult:
    """Probe the landscape of ``model`` around its current weights; see ``biaslab.landscape.probe_landscape``."""
    prepared = prepare_probe(model, x, y, settings, out_dir, plugins, checkpoint_hash, meta)
    result = LandscapeResult()
    if not (do_1d or do_2d):
        return result

    # draw every direction before the first point, because the evaluator is built with every variable
    # that some direction perturbs
    curve_directions = []
    if do_1d:
        rng = directions_module.direction_rng(settings.seed, directions_module.STREAM_1D)
        curve_directions = directions_module.draw_directions(
            prepared.spec, prepared.weights, prepared.kinds, rng, settings.n_directions
        )
    surface_pair: list[Direction] = []
    if do_2d:
        surface_pair, pair_metadata = draw_surface_pair(prepared, settings)

    perturbed = _perturbed_paths(curve_directions + surface_pair)
    session = _EvaluationSession(
        model, {path: prepared.variables[path] for path in perturbed}, prepared.x, prepared.y, settings.batch_size
    )
    try:
        if do_1d:
            _probe_curves(session, curve_directions, settings, prepared, progress, result)
        if do_2d:
            d1, d2 = surface_pair
            axis = make_axis(settings.lo, settings.hi, settings.resolution)
            save_surface_directions(prepared, settings, surface_pair, pair_metadata, result)
            store = compute_surface_2d(
                lambda a, b: session.evaluate("2d", d1, d2, a, b),
                axis,
                axis,
                prepared.landscape_dir / "surface_2d.npz",
                surface_metadata(prepared, settings, surface_pair, pair_metadata),
                progress=progress,
            )
            finish_surface(prepared, axis, store, pair_metadata, result)
    finally:
        session.restore()
    return result


def prepare_probe(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    settings: LandscapeSettings,
    out_dir: Path,
    plugins,
    checkpoint_hash: str,
    meta: dict | None,
) -> PreparedProbe:
    """Validate settings and data, collect the model's variables and create the output folders."""
    settings.validate(plugins)
    spec = plugins.get("direction", settings.direction)
    meta = dict(meta or {})
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"meta {meta!r} cannot be stored as JSON ({error}). Pass strings, numbers and lists.") from error
    x, y = check_evaluation_data(model, x, y)

    variables = collect_variables(model)
    if not variables:
        raise ConfigError(f"model {model.name!r} has no floating-point variables, so there is nothing to perturb")
    metadata = {
        "run_id": str(meta.pop("run_id", "")),
        "model": str(meta.pop("model", "")),
        "split": str(meta.pop("split", "")),
        "checkpoint_hash": checkpoint_hash,
        "weights_digest": weights_digest(variables),
        "data_digest": data_digest(x, y),
        "direction": spec.name,
        "seed": settings.seed,
        "sample_count": int(len(x)),
        "batch_size": settings.batch_size,
        "meta": meta,
    }

    out_dir = Path(out_dir)
    landscape_dir = out_dir / "landscape"
    plots_dir = out_dir / "plots"
    landscape_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    return PreparedProbe(
        spec=spec,
        x=x,
        y=y,
        variables=variables,
        kinds=classify_variables(model, variables),
        weights={path: variable.numpy() for path, variable in variables.items()},
        metadata=metadata,
        title_context=plots.describe(metadata["split"], metadata["model"]),
        landscape_dir=landscape_dir,
        plots_dir=plots_dir,
    )


def check_evaluation_data(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return x as float32 and y as int64 after checking shapes, labels and the model's softmax output."""
    x = np.asarray(x)
    y = np.asarray(y)
    if not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(f"evaluation images have dtype {x.dtype}. Pass preprocessed float32 images.")
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
        raise ConfigError(
            f"evaluation labels have dtype {y.dtype} and shape {y.shape}. Pass integer class indices of shape (n,)."
        )
    if len(x) == 0 or len(x) != len(y):
        raise ConfigError(f"got {len(x)} evaluation images and {len(y)} labels. Pass the same non-zero number of each.")

    x = x.astype(np.float32, copy=False)
    probabilities = np.asarray(model(x[:1], training=False))
    if probabilities.ndim != 2:
        raise ConfigError(f"model output has shape {probabilities.shape}, but the landscape needs (batch, classes)")
    class_count = probabilities.shape[1]
    if abs(float(np.sum(probabilities)) - 1.0) > _SOFTMAX_TOLERANCE or np.any(probabilities < 0):
        raise ConfigError(
            f"model output rows do not sum to 1 (got {float(np.sum(probabilities)):.6g}). "
            f"The landscape needs a model whose last layer is a softmax."
        )
    if y.min() < 0 or y.max() >= class_count:
        raise ConfigError(
            f"evaluation labels range from {y.min()} to {y.max()} but the model has {class_count} classes. "
            f"Pass labels in 0..{class_count - 1}."
        )
    return x, y.astype(np.int64, copy=False)


def data_digest(x: np.ndarray, y: np.ndarray) -> str:
    """Return a SHA-256 hex digest of the evaluation images and labels."""
    digest = hashlib.sha256()
    for array in (x, y):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}|{array.dtype}\n".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def draw_surface_pair(prepared: PreparedProbe, settings: LandscapeSettings) -> tuple[list[Direction], dict]:
    """Draw the 2D candidates and return the least-aligned pair with its cosine and candidate indices."""
    rng = directions_module.direction_rng(settings.seed, directions_module.STREAM_2D)
    candidates = directions_module.draw_directions(
        prepared.spec, prepared.weights, prepared.kinds, rng, settings.n_candidates
    )
    first, second, cosine = directions_module.least_aligned_pair(candidates)
    return [candidates[first], candidates[second]], {"cosine": cosine, "candidate_indices": [first, second]}


def save_surface_directions(
    prepared: PreparedProbe, settings: LandscapeSettings, pair: list[Direction], pair_metadata: dict, result: LandscapeResult
) -> Path:
    """Write ``landscape/directions_2d.npz`` and list it in ``result``."""
    path = prepared.landscape_dir / "directions_2d.npz"
    directions_module.save_directions(
        path,
        pair,
        {"kind": "directions_2d", "direction": prepared.spec.name, "seed": settings.seed,
         "stream": directions_module.STREAM_2D, "n_candidates": settings.n_candidates, **pair_metadata},
    )
    result.files["landscape"].append(path)
    return path


def surface_metadata(prepared: PreparedProbe, settings: LandscapeSettings, pair: list[Direction], pair_metadata: dict) -> dict:
    """Return the metadata of ``landscape/surface_2d.npz``, whose identity keys decide reuse."""
    return dict(
        prepared.metadata,
        kind="surface_2d",
        n_candidates=settings.n_candidates,
        directions_digest=directions_module.directions_digest(pair),
        grid={"lo": settings.lo, "hi": settings.hi, "resolution": settings.resolution},
        **pair_metadata,
    )


def finish_surface(
    prepared: PreparedProbe, axis: np.ndarray, store: SurfaceStore, pair_metadata: dict, result: LandscapeResult
) -> None:
    """Add the 2D summaries, the cosine, the surface file and its plots to ``result``."""
    result.metrics.update(summarize_surface(axis, axis, store.values))
    result.metrics["landscape_2d_cosine"] = pair_metadata["cosine"]
    result.files["landscape"].append(store.path)
    result.files["plots"] += _plot_surface(prepared.plots_dir, axis, store.values, prepared.title_context)


class _EvaluationSession:
    """Builds the evaluator at the first point and loads directions only when they change."""

    def __init__(self, model, variables, x, y, batch_size) -> None:
        self._arguments = (model, variables, x, y, batch_size)
        self.evaluator: LandscapeEvaluator | None = None
        self._loaded_key: object = None

    def evaluate(self, key: object, d1: dict, d2: dict | None, a: float, b: float) -> PointMetrics:
        if self.evaluator is None:
            model, variables, x, y, batch_size = self._arguments
            self.evaluator = LandscapeEvaluator(model, variables, x, y, batch_size=batch_size)
        if key != self._loaded_key:
            self.evaluator.set_directions(d1, d2)
            self._loaded_key = key
        return self.evaluator.evaluate(a, b)

    def restore(self) -> None:
        if self.evaluator is not None:
            self.evaluator.restore()


def _perturbed_paths(directions: list[Direction]) -> list[str]:
    """Return the sorted paths that are non-zero in at least one direction."""
    paths = set()
    for direction in directions:
        paths.update(path for path, array in direction.items() if np.any(array))
    return sorted(paths)


def _probe_curves(session, curve_directions, settings, prepared, progress, result):
    directions_path = prepared.landscape_dir / "directions_1d.npz"
    directions_module.save_directions(
        directions_path,
        curve_directions,
        {"kind": "directions_1d", "direction": prepared.spec.name, "seed": settings.seed,
         "stream": directions_module.STREAM_1D, "n_directions": settings.n_directions},
    )

    a = make_axis(settings.lo, settings.hi, settings.points_1d)
    curve_metadata = dict(
        prepared.metadata,
        kind="curves_1d",
        n_directions=settings.n_directions,
        directions_digest=directions_module.directions_digest(curve_directions),
        grid={"lo": settings.lo, "hi": settings.hi, "points": settings.points_1d},
    )

    def evaluate(direction_index: int, coefficient: float) -> PointMetrics:
        return session.evaluate(("1d", direction_index), curve_directions[direction_index], None, coefficient, 0.0)

    store = compute_curves_1d(
        evaluate, settings.n_directions, a, prepared.landscape_dir / "curves_1d.npz", curve_metadata, progress=progress
    )
    result.metrics.update(summarize_curves(a, store.values))
    result.files["landscape"] += [directions_path, store.path]
    result.files["plots"].append(
        plots.plot_curves_1d(prepared.plots_dir / "curves_1d.png", a, store.values, prepared.title_context)
    )


def _plot_surface(plots_dir: Path, axis: np.ndarray, values: dict[str, np.ndarray], context: str) -> list[Path]:
    written = []
    for metric in METRICS:
        path = plots_dir / f"surface_2d_{metric}_contour.png"
        written.append(plots.plot_contour_2d(path, axis, axis, values[metric], metric, context))
    for metric in ("ce", "mse"):
        path = plots_dir / f"surface_2d_{metric}_contour_log.png"
        written.append(plots.plot_contour_2d(path, axis, axis, values[metric], metric, context, log=True))
    for metric in METRICS:
        path = plots_dir / f"surface_2d_{metric}_3d.png"
        written.append(plots.plot_surface_3d(path, axis, axis, values[metric], metric, context))
    return written
