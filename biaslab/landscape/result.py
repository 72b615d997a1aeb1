"""The outcome of a landscape probe: summary metrics and the files to log."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class LandscapeResult:
    """Summary metrics and the written files, grouped by MLflow artifact folder.

    ``files["landscape"]`` lists the .npz arrays (directions, curves, surface) and ``files["plots"]``
    the PNG figures, all under the probe's ``out_dir``.
    """

    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    files: dict[str, list[Path]] = dataclasses.field(default_factory=lambda: {"landscape": [], "plots": []})
