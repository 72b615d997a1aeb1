"""Tests of grid axes, the resumable surface file and the summaries, on analytic functions."""

import json

import numpy as np
import pytest

from biaslab.landscape.grid import PointMetrics, center_index, make_axis
from biaslab.landscape.store import FORMAT_VERSION, SurfaceStore
from biaslab.landscape.summary import summarize_curves, summarize_surface
from biaslab.landscape.surface import compute_curves_1d, compute_surface_2d


class CountingFunction:
    """Analytic loss (a - 0.5)**2 + (b + 1)**2 that counts calls and can raise after a number of them."""

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, a: float, b: float) -> PointMetrics:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted for the test")
        self.calls += 1
        loss = (a - 0.5) ** 2 + (b + 1.0) ** 2
        return PointMetrics(ce=loss, mse=loss / 10, acc=1.0 / (1.0 + loss))


def metadata(**changes) -> dict:
    base = {"kind": "surface_2d", "checkpoint_hash": "abc", "direction": "filter", "seed": 0, "split": "test",
            "sample_count": 100, "grid": {"lo": -1.0, "hi": 1.0}}
    base.update(changes)
    return base


def test_axis_has_center_and_ends():
    axis = make_axis(-1.0, 1.0, 51)

    assert len(axis) == 51
    assert axis[0] == -1.0
    assert axis[-1] == 1.0
    assert axis[25] == 0.0
    assert np.count_nonzero(axis == 0.0) == 1
    assert center_index(axis) == 25
    np.testing.assert_array_equal(axis, -axis[::-1])
    np.testing.assert_allclose(np.diff(axis), 0.04, rtol=1e-12)


def test_asymmetric_axis_keeps_zero():
    axis = make_axis(-0.5, 1.0, 5)

    np.testing.assert_array_equal(axis, [-0.5, -0.25, 0.0, 0.5, 1.0])


@pytest.mark.parametrize("points", [1, 2, 4, 50])
def test_axis_rejects_even_or_short(points):
    with pytest.raises(ValueError, match=str(points)):
        make_axis(-1.0, 1.0, points)


def test_axis_rejects_range_without_zero():
    with pytest.raises(ValueError, match="0.5"):
        make_axis(0.5, 1.0, 5)


def test_surface_minimum_at_right_coordinates(tmp_path):
    a = make_axis(-1.0, 1.0, 5)
    b = make_axis(-1.0, 1.0, 3)
    function = CountingFunction()

    store = compute_surface_2d(function, a, b, tmp_path / "surface.npz", metadata(), progress=False)

    assert store.values["ce"].shape == (5, 3)
    assert np.unravel_index(np.argmin(store.values["ce"]), (5, 3)) == (3, 0)
    assert a[3] == 0.5
    assert b[0] == -1.0
    expected = (a[:, None] - 0.5) ** 2 + (b[None, :] + 1.0) ** 2
    np.testing.assert_array_equal(store.values["ce"], expected)
    assert function.calls == 15


def test_surface_file_layout(tmp_path):
    a = make_axis(-1.0, 1.0, 5)
    b = make_axis(-1.0, 1.0, 3)
    path = tmp_path / "surface.npz"
    compute_surface_2d(CountingFunction(), a, b, path, metadata(run_id="r1"), progress=False)

    with np.load(path, allow_pickle=False) as stored:
        assert sorted(stored.files) == ["a", "acc", "b", "ce", "done", "metadata", "mse"]
        np.testing.assert_array_equal(stored["a"], a)
        np.testing.assert_array_equal(stored["b"], b)
        assert stored["done"].dtype == bool
        assert stored["done"].all()
        assert stored["ce"][4, 2] == pytest.approx(0.25 + 4.0)
        stored_metadata = json.loads(str(stored["metadata"]))
    assert stored_metadata["format_version"] == FORMAT_VERSION
    assert stored_metadata["run_id"] == "r1"
    assert stored_metadata["checkpoint_hash"] == "abc"


def test_interrupted_surface_resumes_missing_points(tmp_path):
    a = make_axis(-1.0, 1.0, 5)
    b = make_axis(-1.0, 1.0, 3)
    path = tmp_path / "surface.npz"

    with pytest.raises(KeyboardInterrupt):
        compute_surface_2d(CountingFunction(fail_after=7), a, b, path, metadata(), progress=False)
    partial = SurfaceStore.load(path)
    assert partial.done.sum() == 7
    assert np.all(np.isnan(partial.values["ce"][~partial.done]))

    resumed_function = CountingFunction()
    resumed = compute_surface_2d(resumed_function, a, b, path, metadata(), progress=False)

    assert resumed_function.calls == 8
    assert resumed.complete
    uninterrupted = compute_surface_2d(CountingFunction(), a, b, tmp_path / "other.npz", metadata(), progress=False)
    for metric in ("ce", "mse", "acc"):
        np.testing.assert_array_equal(resumed.values[metric], uninterrupted.values[metric])


def test_finished_surface_is_reused(tmp_path):
    a = make_axis(-1.0, 1.0, 5)
    b = make_axis(-1.0, 1.0, 3)
    path = tmp_path / "surface.npz"
    compute_surface_2d(CountingFunction(), a, b, path, metadata(run_id="first"), progress=False)

    again = CountingFunction()
    store = compute_surface_2d(again, a, b, path, metadata(run_id="second"), progress=False)

    assert again.calls == 0
    assert store.complete
    assert SurfaceStore.load(path).metadata["run_id"] == "second"


@pytest.mark.parametrize(
    "changes",
    [
        {"checkpoint_hash": "retrained"},
        {"seed": 1},
        {"direction": "random"},
        {"split": "train"},
        {"sample_count": 99},
        {"grid": {"lo": -2.0, "hi": 2.0}},
    ],
)
def test_changed_identity_recomputes(tmp_path, changes):
    a = make_axis(-1.0, 1.0, 5)
    b = make_axis(-1.0, 1.0, 3)
    path = tmp_path / "surface.npz"
    compute_surface_2d(CountingFunction(), a, b, path, metadata(), progress=False)

    again = CountingFunction()
    compute_surface_2d(again, a, b, path, metadata(**changes), progress=False)

    assert again.calls == 15


def test_changed_coordinates_recompute(tmp_path):
    path = tmp_path / "surface.npz"
    compute_surface_2d(CountingFunction(), make_axis(-1, 1, 5), make_axis(-1, 1, 3), path, metadata(), progress=False)

    again = CountingFunction()
    compute_surface_2d(again, make_axis(-1, 1, 5), make_axis(-1, 1, 5), path, metadata(), progress=False)

    assert again.calls == 25


def test_unreadable_file_is_recomputed(tmp_path):
    path = tmp_path / "surface.npz"
    path.write_bytes(b"not an npz file")

    again = CountingFunction()
    store = compute_surface_2d(again, make_axis(-1, 1, 3), make_axis(-1, 1, 3), path, metadata(), progress=False)

    assert again.calls == 9
    assert SurfaceStore.load(path).complete
    assert store.complete


def test_nan_and_inf_are_stored_as_is(tmp_path):
    def explosive(a: float, b: float) -> PointMetrics:
        if a > 0.75:
            return PointMetrics(ce=float("inf"), mse=float("nan"), acc=0.0)
        return PointMetrics(ce=a + b, mse=0.0, acc=1.0)

    path = tmp_path / "surface.npz"
    compute_surface_2d(explosive, make_axis(-1, 1, 5), make_axis(-1, 1, 3), path, metadata(), progress=False)
    stored = SurfaceStore.load(path)

    assert stored.done.all()
    assert np.all(np.isinf(stored.values["ce"][4]))
    assert np.all(np.isnan(stored.values["mse"][4]))
    assert np.all(np.isfinite(stored.values["ce"][:4]))


def test_curves_resume_and_statistics(tmp_path):
    a = make_axis(-1.0, 1.0, 5)
    calls = []

    def curve(direction_index: int, coefficient: float) -> PointMetrics:
        if len(calls) == 6 and not resumed:
            raise KeyboardInterrupt("interrupted for the test")
        calls.append((direction_index, coefficient))
        return PointMetrics(ce=(direction_index + 1) * coefficient**2, mse=0.0, acc=1.0)

    path = tmp_path / "curves.npz"
    resumed = False
    with pytest.raises(KeyboardInterrupt):
        compute_curves_1d(curve, 3, a, path, metadata(kind="curves_1d"), progress=False)
    resumed = True
    store = compute_curves_1d(curve, 3, a, path, metadata(kind="curves_1d"), progress=False)

    assert len(calls) == 15
    assert calls[5] == (1, -1.0)
    assert calls[6] == (1, -0.5)
    with np.load(path) as stored:
        np.testing.assert_allclose(stored["ce_mean"], 2.0 * a**2)
        np.testing.assert_allclose(stored["ce_std"], np.std([1.0, 2.0, 3.0]) * a**2)
    assert store.values["ce"].shape == (3, 5)


def test_summary_of_quadratic_curves():
    a = make_axis(-1.0, 1.0, 51)
    curves = {
        "ce": np.stack([1.0 + 3.0 * a**2, 1.0 + 5.0 * a**2]),
        "mse": np.stack([2.0 * a**2, 2.0 * a**2]),
        "acc": np.stack([1.0 - a**2, 1.0 - a**2]),
    }

    summary = summarize_curves(a, curves)

    assert summary["landscape_1d_ce_center"] == pytest.approx(1.0)
    # 0.25 and 0.5 are not on the 0.04-step grid: a**2 interpolated between 0.24 and 0.28 at 0.25
    # is 0.0576 + (0.0784 - 0.0576) / 4 = 0.0628, and between 0.48 and 0.52 at 0.5 is 0.2504
    assert summary["landscape_1d_ce_rise_0.25"] == pytest.approx(4.0 * 0.0628)
    assert summary["landscape_1d_ce_rise_0.25_std"] == pytest.approx(1.0 * 0.0628)
    assert summary["landscape_1d_ce_rise_0.5"] == pytest.approx(4.0 * 0.2504)
    assert summary["landscape_1d_ce_rise_1"] == pytest.approx(4.0)
    assert summary["landscape_1d_ce_curvature"] == pytest.approx(8.0)
    assert summary["landscape_1d_mse_curvature"] == pytest.approx(4.0)
    assert summary["landscape_1d_acc_rise_1"] == pytest.approx(-1.0)
    assert summary["landscape_1d_acc_curvature"] == pytest.approx(-2.0)


def test_summary_radius_beyond_range_is_nan():
    a = make_axis(-0.5, 0.5, 11)
    curves = {metric: np.stack([a**2]) for metric in ("ce", "mse", "acc")}

    summary = summarize_curves(a, curves)

    assert np.isnan(summary["landscape_1d_ce_rise_1"])
    assert summary["landscape_1d_ce_rise_0.5"] == pytest.approx(0.25)


def test_summary_of_quadratic_surface():
    axis = make_axis(-1.0, 1.0, 5)
    surface = axis[:, None] ** 2 + 2.0 * axis[None, :] ** 2
    surfaces = {"ce": surface, "mse": surface / 2, "acc": -surface}

    summary = summarize_surface(axis, axis, surfaces)

    assert summary["landscape_2d_ce_center"] == 0.0
    # the ring max(|a|, |b|) = 1 has 16 cells whose a**2 and b**2 each sum to 11
    assert summary["landscape_2d_ce_rise_1"] == pytest.approx(33.0 / 16.0)
    # the ring at 0.5 has 8 cells whose a**2 and b**2 each sum to 1.5
    assert summary["landscape_2d_ce_rise_0.5"] == pytest.approx(4.5 / 8.0)
    # the fit uses the 3 x 3 block, where the quadratic is exact: (2 + 4) / 2
    assert summary["landscape_2d_ce_curvature"] == pytest.approx(3.0)
    assert summary["landscape_2d_mse_curvature"] == pytest.approx(1.5)
    assert summary["landscape_2d_acc_curvature"] == pytest.approx(-3.0)


def test_surface_rise_between_rings():
    axis = make_axis(-1.0, 1.0, 5)
    surface = np.maximum(np.abs(axis)[:, None], np.abs(axis)[None, :]) * 4.0
    surfaces = {"ce": surface, "mse": surface, "acc": surface}

    summary = summarize_surface(axis, axis, surfaces)

    # the rings around 0.25 are the center (radius 0) and 0.5, and the surface is 4 * radius,
    # so 0.25 interpolates between 0 and 2
    assert summary["landscape_2d_ce_rise_0.25"] == pytest.approx(1.0)
    assert summary["landscape_2d_ce_rise_0.5"] == pytest.approx(2.0)
    assert summary["landscape_2d_ce_rise_1"] == pytest.approx(4.0)


def test_summary_with_nan_point_is_nan():
    axis = make_axis(-1.0, 1.0, 5)
    surface = axis[:, None] ** 2 + axis[None, :] ** 2
    surface[2, 3] = np.nan
    surfaces = {"ce": surface, "mse": surface, "acc": surface}

    summary = summarize_surface(axis, axis, surfaces)

    assert np.isnan(summary["landscape_2d_ce_curvature"])
    assert np.isnan(summary["landscape_2d_ce_rise_0.5"])
    assert summary["landscape_2d_ce_rise_1"] == pytest.approx(22.0 / 16.0)
