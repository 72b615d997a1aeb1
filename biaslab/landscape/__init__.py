"""Loss-landscape probes around trained weights: 1D curves, 2D surfaces, summaries and plots.

``probe_landscape`` is the entry point. It writes, under ``out_dir``:

- ``landscape/directions_1d.npz`` and ``landscape/directions_2d.npz``: the directions used, one array
  per variable path stacked over directions (see ``directions.save_directions``);
- ``landscape/curves_1d.npz`` and ``landscape/surface_2d.npz``: the computed arrays in the format
  described in ``biaslab.landscape.store``;
- ``plots/curves_1d.png`` and ``plots/surface_2d_{ce,mse,acc}_contour.png``,
  ``plots/surface_2d_{ce,mse}_contour_log.png`` and ``plots/surface_2d_{ce,mse,acc}_3d.png``.

Summary metric names are listed in ``biaslab.landscape.summary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from biaslab.landscape.directions import DirectionSpec
from biaslab.landscape.result import LandscapeResult
from biaslab.landscape.settings import LandscapeSettings

if TYPE_CHECKING:
    import keras
    import numpy as np

    from biaslab.plugins import Plugins

__all__ = ["DirectionSpec", "LandscapeResult", "LandscapeSettings", "probe_landscape"]


def probe_landscape(
    model: "keras.Model",
    x: "np.ndarray",
    y: "np.ndarray",
    settings: LandscapeSettings,
    out_dir: Path,
    plugins: "Plugins",
    *,
    checkpoint_hash: str = "",
    meta: dict | None = None,
    progress: bool = True,
    do_1d: bool = True,
    do_2d: bool = True,
) -> LandscapeResult:
    """Compute 1D curves and a 2D surface around the model's current weights, with summaries and plots.

    :param model: a Keras 3 model, compiled or not, whose output is a softmax over classes.
    :param x: preprocessed float32 images, NHWC.
    :param y: integer class labels of shape (n,).
    :param settings: what to probe; validated first, so bad settings raise ConfigError before
        any evaluation.
    :param out_dir: folder for the ``landscape/`` and ``plots/`` files. Stored curves and surfaces
        there are resumed or reused when they belong to the same probe.
    :param plugins: the loaded plugins, from ``biaslab.plugins.load_plugins()``.
    :param checkpoint_hash: hash of the checkpoint the weights came from, stored with the arrays.
    :param meta: ``run_id``, ``split`` and ``model`` are stored in the arrays and used in plot
        titles. ``split`` is also part of the identity of a stored surface. Other keys are stored as
        given.
    :param progress: write a progress line with the time left to stderr.
    :return: summary metrics (plus ``landscape_2d_cosine``) and the written files by MLflow artifact folder.

    Every model variable is restored bit for bit before this returns or raises.
    """
    # imported here because it loads TensorFlow, which loading plugins or settings must not
    from biaslab.landscape.probe import run_probe

    return run_probe(
        model,
        x,
        y,
        settings,
        out_dir,
        plugins,
        checkpoint_hash=checkpoint_hash,
        meta=meta,
        progress=progress,
        do_1d=do_1d,
        do_2d=do_2d,
    )
