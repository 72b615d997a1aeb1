"""Direction generators for loss-landscape probes and the file that stores drawn directions.

A direction is a dict that maps each variable path to an array of the same shape and dtype as
the variable. ``DirectionSpec.generate(weights, kinds, rng)`` returns one direction; the kinds
are those of ``biaslab.landscape.variables``. Built-in generators draw from ``rng`` once per
perturbed variable in sorted path order, so one seed always gives the same directions.

Both built-ins give a zero direction to biases, to every BatchNormalization variable (moving
statistics included) and to one-dimensional ``other`` variables. Kernels and ``other``
variables with two or more axes are perturbed. This follows Li et al., "Visualizing the Loss
Landscape of Neural Nets" (NeurIPS 2018), which leaves out biases and BN parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from biaslab.errors import PluginError
from biaslab.landscape.npzfile import write_npz_atomically

Direction = dict[str, np.ndarray]
DirectionGenerator = Callable[[dict[str, np.ndarray], dict[str, str], np.random.Generator], Direction]

# Key of the JSON metadata in a directions file. Only a layer named "__metadata__" could clash with it.
METADATA_KEY = "__metadata__"

# Independent random streams of one seed, so that 1D and 2D directions do not depend on each other.
STREAM_1D = 1
STREAM_2D = 2


@dataclasses.dataclass(frozen=True)
class DirectionSpec:
    """A named direction generator that plugins register through ``biaslab_register_directions``."""

    name: str
    description: str
    generate: DirectionGenerator


def is_perturbed(kind: str, weight: np.ndarray) -> bool:
    """Return True when the built-in generators give this variable a non-zero direction."""
    if kind in ("conv_kernel", "dense_kernel"):
        return True
    return kind == "other" and weight.ndim >= 2


def random_direction(weights: dict[str, np.ndarray], kinds: dict[str, str], rng: np.random.Generator) -> Direction:
    """Draw a standard Gaussian direction with no normalization."""
    direction = {}
    for path in sorted(weights):
        weight = weights[path]
        if is_perturbed(kinds[path], weight):
            direction[path] = rng.standard_normal(weight.shape).astype(weight.dtype)
        else:
            direction[path] = np.zeros_like(weight)
    return direction


def filter_normalized_direction(
    weights: dict[str, np.ndarray], kinds: dict[str, str], rng: np.random.Generator
) -> Direction:
    """Draw a Gaussian direction and rescale each filter to the norm of the same filter of the weights.

    A filter is one index of the last axis: an output channel of a conv kernel (kh, kw, in, out)
    or an output unit of a dense kernel (in, out). ``other`` variables with two or more axes are
    split along their last axis too. A filter whose weights are all zero gets a zero direction.
    """
    # NOTE: transposed convolution kernels are laid out (kh, kw, out, in), so their "filters" here
    # are input-channel slices, not the output filters that Li et al. normalize.
    direction = {}
    for path in sorted(weights):
        weight = weights[path]
        if not is_perturbed(kinds[path], weight):
            direction[path] = np.zeros_like(weight)
            continue
        gaussian = rng.standard_normal(weight.shape)
        direction[path] = _rescale_filters(gaussian, weight.astype(np.float64)).astype(weight.dtype)
    return direction


def _rescale_filters(gaussian: np.ndarray, weight: np.ndarray) -> np.ndarray:
    reduce_axes = tuple(range(weight.ndim - 1))
    weight_norms = np.sqrt(np.sum(weight**2, axis=reduce_axes))
    gaussian_norms = np.sqrt(np.sum(gaussian**2, axis=reduce_axes))

    # 0 / 0 must give 0, never NaN, so divide only where both norms are positive
    scale = np.zeros_like(weight_norms)
    usable = (weight_norms > 0) & (gaussian_norms > 0)
    np.divide(weight_norms, gaussian_norms, out=scale, where=usable)
    return gaussian * scale


def direction_rng(seed: int, stream: int) -> np.random.Generator:
    """Return the generator for one stream (``STREAM_1D`` or ``STREAM_2D``) of a seed."""
    return np.random.default_rng([stream, seed])


def draw_directions(
    spec: DirectionSpec,
    weights: dict[str, np.ndarray],
    kinds: dict[str, str],
    rng: np.random.Generator,
    count: int,
) -> list[Direction]:
    """Call ``spec.generate`` ``count`` times and check each direction it returns."""
    directions = []
    for _ in range(count):
        direction = spec.generate(weights, kinds, rng)
        check_direction(spec.name, weights, direction)
        directions.append(direction)
    return directions


def check_direction(spec_name: str, weights: dict[str, np.ndarray], direction: object) -> None:
    """Raise PluginError unless ``direction`` has one finite array per variable with its shape and dtype.

    A direction that is zero for every variable raises as well.
    """
    if not isinstance(direction, dict):
        raise PluginError(f"direction generator {spec_name!r} returned {type(direction).__name__}, but a dict is expected")
    missing = sorted(set(weights) - set(direction))
    extra = sorted(set(direction) - set(weights))
    if missing or extra:
        raise PluginError(
            f"direction generator {spec_name!r} returned the wrong variable paths: "
            f"missing {missing[:5]}, unexpected {extra[:5]}. Return exactly one array per path it was given."
        )
    for path, weight in weights.items():
        array = direction[path]
        if not isinstance(array, np.ndarray) or array.shape != weight.shape or array.dtype != weight.dtype:
            described = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
            raise PluginError(
                f"direction generator {spec_name!r} returned {described} for {path!r}, "
                f"but a numpy array of {weight.dtype} {weight.shape} is expected"
            )
        if not np.all(np.isfinite(array)):
            raise PluginError(f"direction generator {spec_name!r} returned NaN or inf values for {path!r}")
    if not any(np.any(direction[path]) for path in weights):
        raise PluginError(
            f"direction generator {spec_name!r} returned a direction that is zero for every variable, "
            f"so the landscape along it would be flat. Check which variable kinds it perturbs."
        )


def flatten_direction(direction: Direction) -> np.ndarray:
    """Concatenate the arrays of a direction, in sorted path order, into one float64 vector."""
    return np.concatenate([np.ravel(direction[path]).astype(np.float64) for path in sorted(direction)])


def least_aligned_pair(candidates: list[Direction]) -> tuple[int, int, float]:
    """Return the indices (i < j) of the two candidates with the smallest absolute cosine, and that cosine.

    The cosine is taken over the flattened concatenation of all variables. A zero candidate has no
    cosine and raises PluginError.
    """
    if len(candidates) < 2:
        raise ValueError(f"least_aligned_pair needs at least 2 candidates, got {len(candidates)}")

    # NOTE: this stores every candidate as one float32 row, which is 50 x 274k values (55 MB) for
    # ResNet-20 but grows to gigabytes for models with tens of millions of parameters.
    matrix = np.stack([flatten_direction(candidate).astype(np.float32) for candidate in candidates])
    norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
    if np.any(norms == 0):
        raise PluginError(f"direction candidate {int(np.argmin(norms))} is zero everywhere, so it has no cosine")
    gram = (matrix @ matrix.T).astype(np.float64)
    cosines = gram / np.outer(norms, norms)

    # argmin takes the first of equal minima, so ties resolve to the lowest indices
    rows, columns = np.triu_indices(len(candidates), k=1)
    best = int(np.argmin(np.abs(cosines[rows, columns])))
    i, j = int(rows[best]), int(columns[best])
    return i, j, float(cosines[i, j])


def directions_digest(directions: list[Direction]) -> str:
    """Return a SHA-256 hex digest of a list of directions (paths, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for index, direction in enumerate(directions):
        for path in sorted(direction):
            array = np.ascontiguousarray(direction[path])
            digest.update(f"{index}|{path}|{array.shape}|{array.dtype}\n".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def save_directions(path: Path, directions: list[Direction], metadata: dict) -> None:
    """Write directions to ``path`` as .npz: one array per variable path stacked over directions.

    The array of each path has shape (len(directions), *variable shape). The key ``__metadata__``
    contains a JSON string with at least the spec name and seed. The file is replaced atomically.
    """
    arrays = {name: np.stack([direction[name] for direction in directions]) for name in sorted(directions[0])}
    arrays[METADATA_KEY] = np.array(json.dumps(metadata, sort_keys=True))
    write_npz_atomically(Path(path), arrays)


def load_directions(path: Path) -> tuple[list[Direction], dict]:
    """Read a file written by ``save_directions`` and return the directions and the metadata."""
    with np.load(path, allow_pickle=False) as stored:
        metadata = json.loads(str(stored[METADATA_KEY]))
        stacked = {name: stored[name] for name in stored.files if name != METADATA_KEY}
    count = len(next(iter(stacked.values()))) if stacked else 0
    directions = [{name: array[index] for name, array in stacked.items()} for index in range(count)]
    return directions, metadata

