"""Settings of a landscape probe, their validation, and the measured engine defaults."""

from __future__ import annotations

import dataclasses
import math

from biaslab.errors import ConfigError

# Chosen by measurement on an AMD EPYC with 2 cores that other jobs shared, TensorFlow 2.21:
# "python benchmarks/landscape_speed.py --models --sweep --sweep-batch-sizes 100 250 500 --rounds 10".
# Engine seconds per point, fastest of 10 interleaved points (medians were noisier):
#   ResNet-20, 2,000 CIFAR-10 images:  no XLA 1.58 / 1.64 / 1.79, XLA 1.43 / 1.51 / 1.55 (batch 100 / 250 / 500)
#   ResNet-20, 1,797 8x8 digits:       no XLA 0.115 / 0.107 / 0.101, XLA 0.295 / 0.286 / 0.283
# XLA saved about 10% on CIFAR but made the 8x8 digits model 2.7 times slower, so it is off.
# Without XLA, batch 100 was the fastest on CIFAR. Batch 1000 was slower in two earlier sweeps and
# batch 2000 in one.
# NOTE: measured on a CPU only. A GPU likely prefers larger batches, so set batch_size there.
DEFAULT_BATCH_SIZE = 100
DEFAULT_JIT_COMPILE = False


@dataclasses.dataclass(frozen=True)
class LandscapeSettings:
    """Parameters of a probe: direction plugin and seed, 1D and 2D grids, and the evaluation batch size.

    1D curves use ``n_directions`` directions on ``points_1d`` points of [lo, hi]. The 2D surface
    draws ``n_candidates`` directions, keeps the pair with the smallest absolute cosine and uses a
    ``resolution`` x ``resolution`` grid over [lo, hi] on both axes.
    """

    direction: str = "filter"
    seed: int = 0
    n_directions: int = 20
    points_1d: int = 51
    n_candidates: int = 50
    resolution: int = 51
    lo: float = -1.0
    hi: float = 1.0
    batch_size: int = DEFAULT_BATCH_SIZE

    def validate(self, plugins) -> None:
        """Raise ConfigError for the first invalid setting, naming its value and the fix."""
        plugins.get("direction", self.direction)
        _check_int("seed", self.seed, minimum=0)
        _check_int("n_directions", self.n_directions, minimum=1)
        _check_grid_size("points_1d", self.points_1d)
        _check_int("n_candidates", self.n_candidates, minimum=2)
        _check_grid_size("resolution", self.resolution)
        _check_int("batch_size", self.batch_size, minimum=1)
        for name in ("lo", "hi"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} is not a finite number. Set it to a coefficient such as -1 or 1.")
        if self.lo >= self.hi:
            raise ConfigError(
                f"the range lo={self.lo}, hi={self.hi} is empty or reversed. Set lo below hi, for example lo=-1 hi=1."
            )
        if not self.lo < 0 < self.hi:
            raise ConfigError(
                f"the range lo={self.lo}, hi={self.hi} does not contain 0, the trained weights. "
                f"Set lo below 0 and hi above 0."
            )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} is not an integer. Set it to a whole number of at least {minimum}.")
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small. Set it to at least {minimum}.")


def _check_grid_size(name: str, value: object) -> None:
    _check_int(name, value, minimum=3)
    if value % 2 == 0:
        raise ConfigError(
            f"{name}={value} is even, so the grid would miss the center. Use an odd number such as {value + 1}."
        )
