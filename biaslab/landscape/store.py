"""The .npz file format of landscape curves and surfaces, written so that a probe can resume.

Format version 1. Every file contains:

- ``a``: float64 coordinates along direction 1, and for a 2D surface ``b`` along direction 2.
- ``ce``, ``mse``, ``acc``: float64 metric arrays. A 2D surface has shape (len(a), len(b)), and
  ``ce[i, j]`` is the value at theta + a[i]*d1 + b[j]*d2, so a runs along axis 0 and b along axis 1.
  1D curves have shape (n_directions, len(a)), one row per direction.
- ``done``: bool array of the same shape, True where the point has been computed. Points not yet
  computed hold NaN. NaN and inf values of computed points are stored as they are.
- ``metadata``: a JSON string with ``format_version`` and what the probe sets: ``kind``, ``run_id``,
  ``model``, ``checkpoint_hash``, ``weights_digest``, ``data_digest``, ``direction``, ``seed``,
  ``n_directions`` or ``n_candidates``, ``directions_digest``, ``split``, ``sample_count``, ``grid``,
  and for 2D ``cosine`` and ``candidate_indices``. The keys in ``IDENTITY_KEYS`` decide whether a
  stored file can be reused.

1D files also contain ``ce_mean``, ``ce_std``, ``mse_mean``, ... of shape (len(a),): the mean and
population standard deviation (ddof=0) over directions, NaN where some direction is not done.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from biaslab.landscape.grid import METRICS, PointMetrics
from biaslab.landscape.npzfile import write_npz_atomically

FORMAT_VERSION = 1

# a stored file is reused only when all of these metadata values equal those of the new probe
IDENTITY_KEYS = (
    "format_version",
    "kind",
    "checkpoint_hash",
    "weights_digest",
    "data_digest",
    "direction",
    "seed",
    "n_directions",
    "n_candidates",
    "directions_digest",
    "split",
    "sample_count",
    "grid",
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SurfaceStore:
    """The coordinates, metric arrays, done mask and metadata of one curve set or surface."""

    path: Path
    coordinates: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    done: np.ndarray
    metadata: dict

    @classmethod
    def empty(cls, path: Path, shape: tuple[int, ...], coordinates: dict[str, np.ndarray], metadata: dict) -> "SurfaceStore":
        values = {metric: np.full(shape, np.nan) for metric in METRICS}
        metadata = {"format_version": FORMAT_VERSION, **metadata}
        return cls(Path(path), coordinates, values, np.zeros(shape, dtype=bool), metadata)

    @classmethod
    def load(cls, path: Path) -> "SurfaceStore":
        with np.load(path, allow_pickle=False) as stored:
            coordinates = {name: stored[name] for name in ("a", "b") if name in stored.files}
            values = {metric: stored[metric] for metric in METRICS}
            done = stored["done"]
            metadata = json.loads(str(stored["metadata"]))
        return cls(Path(path), coordinates, values, done, metadata)

    @property
    def complete(self) -> bool:
        return bool(np.all(self.done))

    def matches(self, other: "SurfaceStore") -> bool:
        """Return True when this stored file contains points of the same probe as ``other``.

        The shape, the coordinates and the metadata values of ``IDENTITY_KEYS`` must be equal: format
        version, checkpoint hash, weight and data digests, direction spec, seed and count, split,
        sample count and grid. A key missing on both sides counts as equal.
        """
        if self.done.shape != other.done.shape or self.coordinates.keys() != other.coordinates.keys():
            return False
        for name, axis in self.coordinates.items():
            if not np.array_equal(axis, other.coordinates[name]):
                return False
        return all(self.metadata.get(key) == other.metadata.get(key) for key in IDENTITY_KEYS)

    def record(self, index: tuple[int, ...], metrics: PointMetrics) -> None:
        for metric in METRICS:
            self.values[metric][index] = getattr(metrics, metric)
        self.done[index] = True

    def save(self) -> None:
        """Write the file atomically, so an interrupted write keeps the previous version."""
        arrays = dict(self.coordinates)
        arrays.update(self.values)
        arrays["done"] = self.done
        if "b" not in self.coordinates:
            arrays.update(self.curve_statistics())
        arrays["metadata"] = np.array(json.dumps(self.metadata, sort_keys=True))
        write_npz_atomically(self.path, arrays)

    def curve_statistics(self) -> dict[str, np.ndarray]:
        """Return the mean and standard deviation over directions of each 1D metric, NaN where incomplete."""
        statistics = {}
        finished_columns = np.all(self.done, axis=0)
        for metric in METRICS:
            mean = np.full(self.done.shape[1], np.nan)
            std = np.full(self.done.shape[1], np.nan)
            columns = self.values[metric][:, finished_columns]
            mean[finished_columns] = np.mean(columns, axis=0)
            std[finished_columns] = np.std(columns, axis=0)
            statistics[f"{metric}_mean"] = mean
            statistics[f"{metric}_std"] = std
        return statistics


def open_store(fresh: SurfaceStore) -> SurfaceStore:
    """Return the stored file at ``fresh.path`` when it matches ``fresh``, otherwise ``fresh``.

    A matching file keeps its computed points and takes the descriptive metadata of ``fresh``. A
    file that does not match or cannot be read is replaced when ``fresh`` is first saved.
    """
    if not fresh.path.exists():
        return fresh
    try:
        stored = SurfaceStore.load(fresh.path)
    except (OSError, ValueError, KeyError) as error:
        logger.warning("recomputing %s because the stored file cannot be read: %s", fresh.path, error)
        return fresh
    if not stored.matches(fresh):
        logger.info("recomputing %s because it was computed for another model, data, directions or grid", fresh.path)
        return fresh
    stored.metadata = fresh.metadata
    return stored
