"""Tests of the progress line printed while a landscape is computed."""

import io

from biaslab.landscape.grid import PointMetrics, make_axis
from biaslab.landscape.surface import compute_surface_2d
from biaslab.progress import Progress, format_duration


def test_duration_format():
    assert format_duration(0) == "0:00:00"
    assert format_duration(61.4) == "0:01:01"
    assert format_duration(3 * 3600 + 25 * 60 + 7) == "3:25:07"


def test_line_counts_points_and_estimates():
    stream = io.StringIO()
    progress = Progress("2D surface", total=10, done=4, stream=stream, interval=0.0)
    assert "ETA unknown" in progress.line()

    progress.advance()
    progress.advance()

    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("2D surface: 6/10 points, elapsed ")
    assert "ETA 0:00:0" in lines[-1]


def test_finished_line_has_zero_left():
    stream = io.StringIO()
    progress = Progress("1D curves", total=2, stream=stream, interval=0.0)
    progress.advance(2)
    progress.close()

    assert stream.getvalue().splitlines()[-1].endswith("2/2 points, elapsed 0:00:00, ETA 0:00:00")


def test_disabled_progress_writes_nothing():
    stream = io.StringIO()
    progress = Progress("quiet", total=3, enabled=False, stream=stream)
    progress.advance(3)
    progress.close()

    assert stream.getvalue() == ""


def test_surface_reports_to_stderr(tmp_path, capsys):
    axis = make_axis(-1.0, 1.0, 3)

    def flat(a: float, b: float) -> PointMetrics:
        return PointMetrics(ce=1.0, mse=0.0, acc=1.0)

    compute_surface_2d(flat, axis, axis, tmp_path / "loud.npz", {"kind": "test"}, progress=True)
    compute_surface_2d(flat, axis, axis, tmp_path / "quiet.npz", {"kind": "test"}, progress=False)

    captured = capsys.readouterr()
    assert captured.err.count("2D surface: 9/9 points") == 1
    assert captured.out == ""
