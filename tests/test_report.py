"""Reports over runs with known metrics and landscape arrays, logged to a real SQLite MLflow store.

The runs are written directly with MlflowClient in the layout of a training run, so every table
value and every Kendall tau is known in advance.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re

import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy.stats import kendalltau
from typer.testing import CliRunner

from biaslab.cli import app
from biaslab.errors import ConfigError, RunNotFoundError
from biaslab.landscape.grid import make_axis
from biaslab.landscape.store import SurfaceStore
from biaslab.report import build_report

DIGITS = [str(digit) for digit in range(10)]


@dataclasses.dataclass
class FakeRun:
    name: str
    bias: str
    cls: str
    pct: str
    gen_error: float
    hessian_trace: float
    curvature: float | None  # None: the run has no landscape at all
    status: str = "FINISHED"


FAKE_RUNS = [
    FakeRun("baseline", "none", "", "0", 0.05, 10.0, 1.0),
    FakeRun("noisy labels", "mislabel", "", "30", 0.30, 30.0, 2.0),
    FakeRun("fewer threes", "size", "3", "60", 0.10, 20.0, None),
    FakeRun("noisy threes", "gaussian", "3", "60", 0.20, 40.0, 3.0),
    FakeRun("crashed", "size", "3", "90", 0.50, 50.0, None, status="FAILED"),
]


def write_landscape(folder, curvature: float) -> list:
    """Write 1D curves and a 2D surface shaped as base + curvature / 2 * radius**2."""
    a = make_axis(-1.0, 1.0, 5)
    curves = SurfaceStore.empty(folder / "curves_1d.npz", (2, len(a)), {"a": a}, {"identity": {}})
    surface = SurfaceStore.empty(folder / "surface_2d.npz", (len(a), len(a)), {"a": a, "b": a}, {"identity": {}})
    for direction in range(2):
        curves.values["ce"][direction] = 0.1 + curvature / 2 * a**2 * (1 + 0.1 * direction)
        curves.values["mse"][direction] = 0.01 + curvature / 20 * a**2
        curves.values["acc"][direction] = 0.9 - curvature / 10 * a**2
    radius = a[:, None] ** 2 + a[None, :] ** 2
    surface.values["ce"][:] = 0.1 + curvature / 2 * radius
    surface.values["mse"][:] = 0.01 + curvature / 20 * radius
    surface.values["acc"][:] = 0.9 - curvature / 10 * radius
    for store in (curves, surface):
        store.done[:] = True
        store.save()
    return [curves.path, surface.path]


def log_fake_run(client: MlflowClient, experiment_id: str, parent_id: str, fake: FakeRun, folder) -> str:
    run = client.create_run(experiment_id, run_name=fake.name,
                            tags={"mlflow.parentRunId": parent_id, "biaslab.kind": "train", "bias": fake.bias})
    run_id = run.info.run_id
    params = {"model": "resnet20", "dataset": "digits", "bias": fake.bias, "cls": fake.cls, "pct": fake.pct}
    metrics = {"train_accuracy": 0.9, "test_accuracy": 0.9 - fake.gen_error, "gen_error": fake.gen_error,
               "hessian_trace": fake.hessian_trace}
    for score in ("precision", "recall", "f1"):
        for digit in DIGITS:
            metrics[f"test_{score}_{digit}"] = 0.123 if digit == fake.cls else 0.8
    if fake.curvature is not None:
        metrics["landscape_1d_ce_curvature"] = fake.curvature
        metrics["landscape_2d_ce_curvature"] = 2 * fake.curvature
        run_folder = folder / run_id
        run_folder.mkdir()
        for path in write_landscape(run_folder, fake.curvature):
            client.log_artifact(run_id, str(path), "landscape")
    client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()],
                     metrics=[Metric(key, value, 0, 0) for key, value in metrics.items()])
    client.set_terminated(run_id, fake.status)
    return run_id


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report-store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            patch.delenv(name, raising=False)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        experiment_id = client.create_experiment("study")
        parent_id = client.create_run(experiment_id, run_name="sweep", tags={"biaslab.kind": "sweep"}).info.run_id
        ids = {fake.name: log_fake_run(client, experiment_id, parent_id, fake, folder) for fake in FAKE_RUNS}
        client.set_terminated(parent_id, "FINISHED")
        lonely_id = client.create_run(experiment_id, run_name="lonely").info.run_id
        yield {"parent": parent_id, "ids": ids, "experiment_id": experiment_id, "lonely": lonely_id}
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def parent_report(study, tmp_path_factory):
    return build_report(parent_run_id=study["parent"], output=tmp_path_factory.mktemp("parent-report"))


def test_table_rows_in_study_order(parent_report, study):
    rows = parent_report.table.rows

    assert [row["run"] for row in rows] == ["baseline", "noisy labels", "fewer threes", "noisy threes"]
    assert [row["bias"] for row in rows] == ["none", "mislabel 30%", "size 3 60%", "gaussian 3 60%"]
    assert [row["run_id"] for row in rows] == [study["ids"][row["run"]] for row in rows]
    assert list(parent_report.table.column("gen_error")) == pytest.approx([0.05, 0.30, 0.10, 0.20])
    assert list(parent_report.table.column("test_accuracy")) == pytest.approx([0.85, 0.60, 0.80, 0.70])


def test_flatness_columns_found(parent_report):
    columns = parent_report.table.columns

    assert "hessian_trace" in columns
    assert "landscape_1d_ce_curvature" in columns
    assert "landscape_2d_ce_curvature" in columns
    assert "test_precision_3" not in columns


def test_kendall_tau_known_values(parent_report):
    taus = {item.metric: item for item in parent_report.correlations}

    # hessian_trace 10, 30, 20, 40 against 0.05, 0.30, 0.10, 0.20: five concordant pairs, one discordant
    assert taus["hessian_trace"].tau == pytest.approx(4 / 6)
    assert taus["hessian_trace"].n == 4
    # the run without a landscape drops out: 1, 2, 3 against 0.05, 0.30, 0.20
    assert taus["landscape_1d_ce_curvature"].tau == pytest.approx(1 / 3)
    assert taus["landscape_1d_ce_curvature"].n == 3


def test_kendall_tau_matches_scipy(parent_report):
    table = parent_report.table
    gen_error = table.column("gen_error")
    for correlation in parent_report.correlations:
        values = table.column(correlation.metric)
        both = np.isfinite(values) & np.isfinite(gen_error)
        expected = kendalltau(values[both], gen_error[both])

        assert correlation.tau == pytest.approx(expected.statistic), correlation.metric
        assert correlation.p_value == pytest.approx(expected.pvalue), correlation.metric


def test_markdown_bolds_biased_class(parent_report):
    markdown = (parent_report.folder / "report.md").read_text()
    precision = markdown.split("### Precision (digits)")[1].split("###")[0]
    lines = {line.split(" | ")[0].lstrip("| "): line for line in precision.splitlines() if line.startswith("| resnet20")}

    assert "**0.123**" in lines["resnet20 size 3 60%"]
    assert "**0.123**" in lines["resnet20 gaussian 3 60%"]
    assert "**" not in lines["resnet20 none"]
    # mislabel has no class, so nothing is bold even where the score is low
    assert "**" not in lines["resnet20 mislabel 30%"]


def test_html_is_self_contained(parent_report):
    page = (parent_report.folder / "report.html").read_text()
    figures = sorted(path.name for path in parent_report.folder.glob("*.png"))

    assert figures == ["contours_2d_ce.png", "contours_2d_mse.png", "curves_1d.png", "flatness_vs_gen_error.png",
                       "per_class.png", "surfaces_3d_ce.png"]
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert re.findall(r'src="(?!data:)', page) == []
    assert "<td><b>0.123</b></td>" in page


def test_missing_landscape_listed_per_run(parent_report, study):
    missing = parent_report.missing
    lacking = study["ids"]["fewer threes"]

    assert set(missing) >= {lacking}
    assert any(item.startswith("no 1D curves") for item in missing[lacking])
    assert any(item.startswith("no 2D surface") for item in missing[lacking])
    assert any(item.startswith("no landscape summaries") for item in missing[lacking])
    markdown = (parent_report.folder / "report.md").read_text()
    section = markdown.split("## Missing data")[1].split("## Runs")[0]
    assert f"resnet20 size 3 60% ({lacking}): no 1D curves" in section
    assert f"({study['ids']['crashed']}) left out: status FAILED" in section


def test_missing_landscape_on_stderr(study, tmp_path, capsys):
    build_report(parent_run_id=study["parent"], output=tmp_path, log=False)
    stderr = capsys.readouterr().err

    assert f"report: run fewer threes ({study['ids']['fewer threes']}): no 1D curves" in stderr
    assert f"report: run baseline ({study['ids']['baseline']}): no flatness measures" not in stderr
    assert "left out: status FAILED" in stderr


def test_csv_leaves_missing_cells_empty(parent_report):
    with (parent_report.folder / "study_table.csv").open() as handle:
        rows = list(csv.DictReader(handle))

    by_run = {row["run"]: row for row in rows}
    assert by_run["fewer threes"]["landscape_1d_ce_curvature"] == ""
    assert float(by_run["noisy threes"]["landscape_1d_ce_curvature"]) == 3.0


def test_report_logged_on_parent(parent_report, study):
    paths = {item.path for item in MlflowClient().list_artifacts(study["parent"], "report")}

    assert parent_report.logged_run_id == study["parent"]
    assert {"report/report.md", "report/report.html", "report/curves_1d.png", "report/study_table.csv"} <= paths


def test_experiment_report_new_run(study, tmp_path):
    report = build_report(experiment="study", output=tmp_path)
    run = MlflowClient().get_run(report.logged_run_id)

    assert len(report.table.rows) == 4
    assert run.info.run_name == "report"
    assert run.data.tags["biaslab.kind"] == "report"
    assert run.info.experiment_id == study["experiment_id"]
    assert "report/report.html" in {item.path for item in MlflowClient().list_artifacts(run.info.run_id, "report")}


def test_run_list_report(study, tmp_path):
    chosen = [study["ids"]["noisy threes"], study["ids"]["baseline"]]
    report = build_report(run_ids=chosen, output=tmp_path, log=False)

    assert [row["run"] for row in report.table.rows] == ["baseline", "noisy threes"]
    assert report.logged_run_id is None
    assert math.isnan(next(item.tau for item in report.correlations if item.metric == "hessian_trace")) is False


def test_unknown_experiment_lists_existing(study, tmp_path):
    with pytest.raises(RunNotFoundError, match=r"experiment 'stduy' was not found .*existing experiments: .*study"):
        build_report(experiment="stduy", output=tmp_path)


def test_selection_must_be_single(study, tmp_path):
    with pytest.raises(ConfigError, match="give exactly one of"):
        build_report(output=tmp_path)
    with pytest.raises(ConfigError, match="got a parent run, an experiment"):
        build_report(parent_run_id=study["parent"], experiment="study", output=tmp_path)


def test_parent_without_children_rejected(study, tmp_path):
    with pytest.raises(RunNotFoundError, match=f"run {study['lonely']} has no child runs"):
        build_report(parent_run_id=study["lonely"], output=tmp_path)


def test_cli_report_writes_folder(study, tmp_path):
    output = tmp_path / "cli-report"
    result = CliRunner().invoke(app, ["report", "--runs", study["ids"]["baseline"], "--output", str(output),
                                      "--log", "false"])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(output)
    assert (output / "report.html").is_file()


def test_cli_unknown_experiment_exits_2(study, tmp_path):
    result = CliRunner().invoke(app, ["report", "--experiment", "nope", "--output", str(tmp_path)])

    assert result.exit_code == 2
    assert "experiment 'nope' was not found" in result.output
