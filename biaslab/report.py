"""Study reports: compare the runs of a sweep, an experiment or a list in tables and figures.

``build_report`` writes into an output folder ``report.md``, ``report.html`` (self-contained),
``study_table.csv``, ``summaries.csv`` and PNG figures, and logs them as artifacts under
``report/``: on the parent run, or on a new run named "report" for an experiment or a list of
runs. What a run lacks (landscape arrays, summaries, flatness measures) is listed in the report
and on stderr, per run; the report shows everything the runs have.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from mlflow.tracking import MlflowClient

from biaslab import report_figures, tracking
from biaslab.plugins import Plugins, load_plugins
from biaslab.report_data import (
    Correlation,
    RunData,
    StudyTable,
    display_columns,
    flatness_columns,
    kendall_correlations,
    load_run_data,
    select_runs,
    study_table,
    summary_table,
)
from biaslab.report_pages import Block, Cell, Heading, Image, Items, Paragraph, Table, format_value, render_html, render_markdown

REPORT_ARTIFACT_PATH = "report"
REPORT_RUNS_TAG = "biaslab.report_runs"
COLUMN_TITLES = {"train_accuracy": "train acc.", "test_accuracy": "test acc.", "gen_error": "gen. error"}
# every file the report may write, so that a rerun into the same folder leaves none from before
FIGURE_FILES = ("curves_1d.png", "contours_2d_ce.png", "contours_2d_mse.png", "surfaces_3d_ce.png",
                "flatness_vs_gen_error.png", "per_class.png")
TEXT_FILES = ("report.md", "report.html", "study_table.csv", "summaries.csv")


@dataclasses.dataclass
class Report:
    """A written report: the compared runs, the study table, correlations and the files."""

    folder: Path
    runs: list[RunData]
    table: StudyTable
    correlations: list[Correlation]
    notes: list[str]
    files: list[Path]
    logged_run_id: str | None = None

    @property
    def missing(self) -> dict[str, list[str]]:
        """Map each run id to what it lacks; runs that lack nothing are left out."""
        return {run.run_id: list(run.missing) for run in self.runs if run.missing}


def build_report(
    *,
    parent_run_id: str | None = None,
    experiment: str | None = None,
    run_ids: Sequence[str] = (),
    output: str | Path = "report",
    log: bool = True,
    plugins: Plugins | None = None,
) -> Report:
    """Compare the runs of exactly one of ``parent_run_id``, ``experiment`` or ``run_ids`` and write the report.

    Raises ConfigError for an ambiguous selection and RunNotFoundError for an unknown run or
    experiment (listing the existing experiments). With ``log``, the files are logged under
    ``report/`` of the parent run or of a new run named "report".
    """
    runs, notes = select_runs(parent_run_id, experiment, list(run_ids))
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    for name in FIGURE_FILES + TEXT_FILES:
        (folder / name).unlink(missing_ok=True)

    with tempfile.TemporaryDirectory(prefix="biaslab-report-") as scratch:
        data = load_run_data(runs, Path(scratch))
    measure_names = (plugins or load_plugins()).names("measure")
    flatness = flatness_columns(data, measure_names)
    table = study_table(data, flatness)
    correlations = kendall_correlations(table, flatness)

    figures = _draw_figures(data, table, correlations, folder)
    source = _describe_source(parent_run_id, experiment, run_ids)
    blocks = compose(source, data, table, correlations, figures, notes)
    files = [path for path, _ in figures]
    for name, text in (("report.md", render_markdown(blocks)), ("report.html", render_html(blocks, f"biaslab report: {source}"))):
        (folder / name).write_text(text, encoding="utf-8")
        files.append(folder / name)
    files.append(write_csv(table, folder / "study_table.csv"))
    files.append(write_csv(summary_table(data), folder / "summaries.csv"))

    for run in data:
        if run.missing:
            print(f"report: run {run.name} ({run.run_id}): {'; '.join(run.missing)}", file=sys.stderr)
    for note in notes:
        print(f"report: {note}", file=sys.stderr)

    report = Report(folder, data, table, correlations, notes, files)
    if log:
        report.logged_run_id = log_report(report, parent_run_id, [run.run_id for run in data], runs[0].info.experiment_id)
    return report


def _draw_figures(runs: list[RunData], table: StudyTable, correlations: list[Correlation],
                  folder: Path) -> list[tuple[Path, str]]:
    drawn = [
        (report_figures.plot_flatness_scatter(table, correlations, folder / "flatness_vs_gen_error.png"),
         "Flatness and sharpness numbers against the generalization error, with Kendall's tau across runs"),
        (report_figures.plot_per_class(runs, folder / "per_class.png"),
         "Test precision, recall and F1 per class; the biased class of each run is outlined"),
        (report_figures.plot_curves_1d(runs, folder / "curves_1d.png"),
         "1D cross-entropy and MSE along filter-normalized directions: mean over directions, band +-1 std"),
        (report_figures.plot_contours_2d(runs, "ce", folder / "contours_2d_ce.png", log=True),
         "2D cross-entropy contours, one color scale (logarithmic) for all runs"),
        (report_figures.plot_contours_2d(runs, "mse", folder / "contours_2d_mse.png"),
         "2D MSE contours, one color scale for all runs"),
        (report_figures.plot_surfaces_3d(runs, "ce", folder / "surfaces_3d_ce.png"),
         "2D cross-entropy surfaces in 3D, one z axis for all runs"),
    ]
    return [(path, caption) for path, caption in drawn if path is not None]


def _describe_source(parent_run_id: str | None, experiment: str | None, run_ids: Sequence[str]) -> str:
    if parent_run_id:
        return f"children of sweep run {parent_run_id}"
    if experiment:
        return f"training runs of experiment {experiment}"
    return f"{len(run_ids)} selected runs"


def compose(source: str, runs: list[RunData], table: StudyTable, correlations: list[Correlation],
            figures: list[tuple[Path, str]], notes: list[str]) -> list[Block]:
    """Lay out the report: study table, correlations, per-class scores, landscapes, missing data, runs."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figure_of = {path.name: (path, caption) for path, caption in figures}
    blocks: list[Block] = [
        Heading(f"biaslab report: {source}", 1),
        Paragraph(f"{len(runs)} runs, written {now}. Generalization error is train accuracy on the biased "
                  f"labels minus test accuracy. n/a marks a metric the run does not have."),
        Heading("Study table"),
    ]
    columns = display_columns(table)
    blocks.append(Table([COLUMN_TITLES.get(column, column) for column in columns],
                        [[Cell(format_value(row[column])) for column in columns] for row in table.rows]))

    blocks.append(Heading("Flatness against generalization error"))
    if correlations:
        ordered = sorted(correlations, key=lambda item: -abs(item.tau) if not math.isnan(item.tau) else math.inf)
        blocks.append(Table(["metric", "Kendall tau", "p-value", "runs"],
                            [[Cell(item.metric), Cell(format_value(item.tau)), Cell(format_value(item.p_value)),
                              Cell(str(item.n))] for item in ordered]))
    else:
        blocks.append(Paragraph("No run has landscape summaries or flatness measures, so there is nothing to correlate."))
    _add_figure(blocks, figure_of, "flatness_vs_gen_error.png")

    blocks.append(Heading("Per-class scores on the test split"))
    blocks.append(Paragraph("The biased class of each run is in bold."))
    for score, title in (("precision", "Precision"), ("recall", "Recall"), ("f1", "F1")):
        for dataset in dict.fromkeys(run.dataset for run in runs):
            chosen = [run for run in runs if run.dataset == dataset and run.class_names]
            if not chosen:
                continue
            blocks.append(Heading(f"{title} ({dataset})", 3))
            class_names = chosen[0].class_names
            rows = [[Cell(run.label)] + [Cell(format_value(run.metrics.get(f"test_{score}_{name}", math.nan)),
                                              bold=bool(run.cls) and name == run.cls) for name in class_names]
                    for run in chosen]
            blocks.append(Table(["run"] + list(class_names), rows))
    _add_figure(blocks, figure_of, "per_class.png")

    blocks.append(Heading("Loss landscapes"))
    landscape_figures = ("curves_1d.png", "contours_2d_ce.png", "contours_2d_mse.png", "surfaces_3d_ce.png")
    if not any(name in figure_of for name in landscape_figures):
        blocks.append(Paragraph("No run has landscape arrays (landscape/curves_1d.npz or landscape/surface_2d.npz)."))
    for name in landscape_figures:
        _add_figure(blocks, figure_of, name)

    missing = [f"{run.label} ({run.run_id}): {'; '.join(run.missing)}" for run in runs if run.missing]
    blocks.append(Heading("Missing data"))
    blocks.append(Items(missing + notes) if missing or notes else Paragraph("Every run has every part of the report."))

    blocks.append(Heading("Runs"))
    blocks.append(Table(["run", "run id", "model", "dataset", "bias", "status"],
                        [[Cell(run.name), Cell(run.run_id), Cell(run.model), Cell(run.dataset), Cell(run.bias_label),
                          Cell(run.status)] for run in runs]))
    return blocks


def _add_figure(blocks: list[Block], figure_of: dict[str, tuple[Path, str]], name: str) -> None:
    if name in figure_of:
        path, caption = figure_of[name]
        blocks.append(Image(path, caption))


def write_csv(table: StudyTable, path: Path) -> Path:
    """Write a table as CSV; a metric a run lacks is an empty cell."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.columns)
        for row in table.rows:
            values = [row.get(column) for column in table.columns]
            writer.writerow(["" if isinstance(value, float) and math.isnan(value) else value for value in values])
    return path


def log_report(report: Report, parent_run_id: str | None, run_ids: list[str], experiment_id: str) -> str:
    """Log the report files under ``report/`` and return the id of the run that contains them.

    That is the parent run when one was given. Otherwise it is the run of ``mlflow run``
    (MLFLOW_RUN_ID) or a new run named "report" in ``experiment_id``.
    """
    client = MlflowClient()
    if parent_run_id:
        target = parent_run_id
    else:
        target = os.environ.get("MLFLOW_RUN_ID") or client.create_run(experiment_id, run_name="report").info.run_id
        client.set_tag(target, "mlflow.runName", "report")
        client.set_tag(target, "biaslab.kind", "report")
        client.set_tag(target, REPORT_RUNS_TAG, tracking.fit_param(",".join(run_ids)))
    for path in report.files:
        client.log_artifact(target, str(path), REPORT_ARTIFACT_PATH)
    if not parent_run_id and not os.environ.get("MLFLOW_RUN_ID"):
        client.set_terminated(target, "FINISHED")
    return target
