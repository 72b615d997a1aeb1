"""Tests that every landscape figure is written as a PNG, also for NaN, negative and constant values."""

import numpy as np
import pytest
from matplotlib.image import imread

from biaslab.landscape import plots

AXIS = np.linspace(-1.0, 1.0, 7)
BOWL = AXIS[:, None] ** 2 + 2.0 * AXIS[None, :] ** 2 + 0.01


def with_holes(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values[5:, 5:] = np.nan
    values[0, 0] = -1.0
    values[3, 3] = 0.0
    values[6, 0] = np.inf
    return values


def assert_png(path):
    assert path.exists()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[0] > 100
    assert image.shape[1] > 100


@pytest.mark.parametrize("values", [BOWL, with_holes(BOWL), np.ones((7, 7)), np.full((7, 7), np.nan)])
@pytest.mark.parametrize("log", [False, True])
def test_contour_writes_png(tmp_path, values, log):
    path = plots.plot_contour_2d(tmp_path / "contour.png", AXIS, AXIS, values, "ce", ", test split", log=log)

    assert_png(path)


@pytest.mark.parametrize("values", [BOWL, with_holes(BOWL), np.full((7, 7), np.nan)])
def test_surface_3d_writes_png(tmp_path, values):
    assert_png(plots.plot_surface_3d(tmp_path / "surface.png", AXIS, AXIS, values, "mse"))


def test_curves_write_png(tmp_path):
    curves = {metric: np.stack([AXIS**2, 2.0 * AXIS**2, np.full(7, np.nan)]) for metric in ("ce", "mse", "acc")}

    assert_png(plots.plot_curves_1d(tmp_path / "curves.png", AXIS, curves, plots.describe("test", "resnet20")))


def test_title_context():
    assert plots.describe() == ""
    assert plots.describe("test") == ", test split"
    assert plots.describe("test", "resnet20") == ", test split, resnet20"
