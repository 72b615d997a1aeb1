"""What a report compares: the selected runs, their metrics, landscape arrays and the study table.

Runs are read from MLflow with the layout of ``biaslab.pipeline.run_job``: params ``model``,
``dataset``, ``bias``, ``cls``, ``pct``; final metrics; and the arrays
``landscape/curves_1d.npz`` and ``landscape/surface_2d.npz`` in the format of
``biaslab.landscape.store``. Anything a run lacks is recorded per run, never filled in.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from biaslab import tracking
from biaslab.data import CIFAR10_CLASSES, DIGITS_CLASSES
from biaslab.landscape.store import SurfaceStore

CURVES_ARTIFACT = "landscape/curves_1d.npz"
SURFACE_ARTIFACT = "landscape/surface_2d.npz"
BIAS_ORDER = ("none", "mislabel", "size", "gaussian")
CLASS_NAMES = {"cifar10": CIFAR10_CLASSES, "digits": DIGITS_CLASSES}

# the flatness and sharpness numbers compared with the generalization error: rises and curvatures
# of the landscape summaries, and the outputs of the built-in flatness measures
LANDSCAPE_SHARPNESS = re.compile(r"^landscape_(1d|2d)_(ce|mse|acc)_(rise_[0-9.]+|curvature)$")
BUILTIN_FLATNESS = re.compile(r"^(hessian_eig_\d+|hessian_trace|eps_sharpness|relative_flatness|landscape_curvature)$")
# landscape summaries shown in the main table; the CSV files list every summary
HEADLINE_LANDSCAPE = (
    "landscape_1d_ce_curvature",
    "landscape_1d_ce_rise_0.5",
    "landscape_1d_mse_curvature",
    "landscape_2d_ce_curvature",
    "landscape_2d_ce_rise_0.5",
)
TEXT_COLUMNS = ("run", "run_id", "model", "bias")
BASE_COLUMNS = TEXT_COLUMNS + ("train_accuracy", "test_accuracy", "gen_error")


@dataclasses.dataclass
class RunData:
    """One run as the report reads it: identity, final metrics, landscape arrays and what is missing."""

    run_id: str
    name: str
    model: str
    dataset: str
    bias: str
    cls: str
    pct: str
    status: str
    metrics: dict[str, float]
    curves: SurfaceStore | None = None
    surface: SurfaceStore | None = None
    missing: list[str] = dataclasses.field(default_factory=list)

    @property
    def bias_label(self) -> str:
        """The bias as the study writes it: "none", "mislabel 30%", "size cat 90%"."""
        if self.bias in ("", "none"):
            return "none"
        return " ".join(part for part in (self.bias, self.cls, f"{self.pct}%" if self.pct else "") if part)

    @property
    def label(self) -> str:
        return f"{self.model} {self.bias_label}"

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES.get(self.dataset, ())

    def sort_key(self) -> tuple:
        bias_rank = BIAS_ORDER.index(self.bias) if self.bias in BIAS_ORDER else len(BIAS_ORDER)
        try:
            pct = float(self.pct or 0)
        except ValueError:
            pct = math.inf
        return (self.model, bias_rank, self.bias, self.cls, pct, self.name)


@dataclasses.dataclass
class StudyTable:
    """One row per run; cells are floats (NaN when a run lacks the metric) or strings."""

    columns: list[str]
    rows: list[dict[str, object]]

    def column(self, name: str) -> np.ndarray:
        return np.array([_as_float(row.get(name)) for row in self.rows], dtype=np.float64)


def _as_float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def load_run_data(runs: Iterable[Run], folder: Path, *, load_arrays: bool = True) -> list[RunData]:
    """Read every run's metrics and landscape arrays (downloaded under ``folder``), sorted as the study lists them."""
    loaded = []
    for run in runs:
        params = run.data.params
        data = RunData(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            model=params.get("model", ""),
            dataset=params.get("dataset", ""),
            bias=params.get("bias", ""),
            cls=params.get("cls", ""),
            pct=params.get("pct", ""),
            status=run.info.status,
            metrics=dict(run.data.metrics),
        )
        if load_arrays:
            data.curves = _load_store(data, CURVES_ARTIFACT, folder, "1D curves")
            data.surface = _load_store(data, SURFACE_ARTIFACT, folder, "2D surface")
        if not any(key.startswith("landscape_") for key in data.metrics):
            data.missing.append("no landscape summaries (landscape_* metrics)")
        if not any(BUILTIN_FLATNESS.match(key) for key in data.metrics):
            data.missing.append("no flatness measures (hessian_*, eps_sharpness, relative_flatness)")
        if "gen_error" not in data.metrics:
            data.missing.append("no evaluation metrics (gen_error)")
        loaded.append(data)
    return sorted(loaded, key=RunData.sort_key)


def _load_store(data: RunData, artifact: str, folder: Path, what: str) -> SurfaceStore | None:
    path = tracking.download_artifact(data.run_id, artifact, folder / data.run_id)
    if path is None or not path.is_file():
        data.missing.append(f"no {what} ({artifact})")
        return None
    store = SurfaceStore.load(path)
    if not store.complete:
        data.missing.append(f"{what} incomplete: {int(store.done.sum())} of {store.done.size} points computed")
    return store


def flatness_columns(runs: Sequence[RunData], measure_names: Iterable[str] = ()) -> list[str]:
    """Return every flatness or sharpness metric any run has: flatness measures, then landscape summaries.

    A metric counts when it is a landscape rise or curvature, an output of a built-in measure, or
    named exactly like a registered measure (the convention of a single-number plugin measure).
    """
    measures = set(measure_names)
    keys = {key for run in runs for key in run.metrics}
    landscape = [key for key in keys if LANDSCAPE_SHARPNESS.match(key)]
    flatness = sorted(key for key in keys if (BUILTIN_FLATNESS.match(key) or key in measures) and key not in landscape)
    return flatness + sorted(landscape, key=_landscape_order)


def _landscape_order(key: str) -> tuple:
    """Sort landscape summaries by dimension, then cross-entropy, MSE, accuracy, then curvature and rises."""
    dimension, metric, kind = LANDSCAPE_SHARPNESS.match(key).groups()
    return (dimension, ("ce", "mse", "acc").index(metric), kind != "curvature", kind)


def study_table(runs: Sequence[RunData], flatness: Sequence[str]) -> StudyTable:
    """Build the study's table: bias, model, accuracies, generalization error and every flatness number."""
    columns = list(BASE_COLUMNS) + list(flatness)
    rows = []
    for run in runs:
        row: dict[str, object] = {"run": run.name, "run_id": run.run_id, "model": run.model, "bias": run.bias_label}
        for key in columns[len(TEXT_COLUMNS):]:
            row[key] = run.metrics.get(key, math.nan)
        rows.append(row)
    return StudyTable(columns, rows)


def display_columns(table: StudyTable) -> list[str]:
    """Return the columns of the main table: the base columns, headline landscape summaries and flatness measures."""
    base = ["bias", "model", "train_accuracy", "test_accuracy", "gen_error"]
    return base + [column for column in table.columns if column not in BASE_COLUMNS
                   and (column in HEADLINE_LANDSCAPE or not column.startswith("landscape_"))]


@dataclasses.dataclass(frozen=True)
class Correlation:
    """Kendall's tau between one flatness number and the generalization error across runs."""

    metric: str
    tau: float
    p_value: float
    n: int


def kendall_correlations(table: StudyTable, metrics: Sequence[str], target: str = "gen_error") -> list[Correlation]:
    """Compute ``scipy.stats.kendalltau`` of each metric against ``target`` over the runs that have both.

    Tau is NaN with fewer than two such runs, or when either column is constant over them.
    """
    from scipy.stats import kendalltau

    target_values = table.column(target)
    correlations = []
    for metric in metrics:
        values = table.column(metric)
        both = np.isfinite(values) & np.isfinite(target_values)
        count = int(both.sum())
        tau = p_value = math.nan
        if count >= 2 and np.ptp(values[both]) > 0 and np.ptp(target_values[both]) > 0:
            result = kendalltau(values[both], target_values[both])
            tau, p_value = float(result.statistic), float(result.pvalue)
        correlations.append(Correlation(metric, tau, p_value, count))
    return correlations


def summary_table(runs: Sequence[RunData]) -> StudyTable:
    """Build a table of every landscape and flatness summary, for the CSV file and the full listing."""
    keys = sorted({key for run in runs for key in run.metrics
                   if key.startswith("landscape_") or BUILTIN_FLATNESS.match(key)})
    columns = list(BASE_COLUMNS) + keys
    rows = []
    for run in runs:
        row: dict[str, object] = {"run": run.name, "run_id": run.run_id, "model": run.model, "bias": run.bias_label}
        for key in columns[len(TEXT_COLUMNS):]:
            row[key] = run.metrics.get(key, math.nan)
        rows.append(row)
    return StudyTable(columns, rows)


def select_runs(parent_run_id: str | None = None, experiment: str | None = None,
                run_ids: Sequence[str] = ()) -> tuple[list[Run], list[str]]:
    """Return the runs to compare and a note per run left out, for exactly one kind of selection.

    A parent run selects its FINISHED child runs, an experiment its FINISHED training runs (tag
    ``biaslab.kind=train``), and a list of run ids exactly those runs, whatever their status.
    """
    from biaslab.errors import ConfigError, RunNotFoundError
    from biaslab.sweep_runs import KIND_TAG

    given = [name for name, value in (("a parent run", parent_run_id), ("an experiment", experiment),
                                      ("run ids", run_ids)) if value]
    if len(given) != 1:
        raise ConfigError("give exactly one of a parent run id (--parent-run-id), an experiment name (--experiment) "
                          f"or a list of run ids (--runs); got {', '.join(given) or 'none'}")
    if run_ids:
        return [tracking.get_run(run_id) for run_id in run_ids], []

    client = MlflowClient()
    if parent_run_id:
        parent = tracking.get_run(parent_run_id)
        experiment_ids = [parent.info.experiment_id]
        filter_string = f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
        empty = (f"run {parent_run_id} has no child runs; give the parent run of a sweep, "
                 f"or list the runs to compare with --runs")
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = sorted(item.name for item in client.search_experiments())
            raise RunNotFoundError(f"experiment {experiment!r} was not found at tracking URI {tracking.tracking_uri()}; "
                                   f"existing experiments: {', '.join(names) or 'none'}")
        experiment_ids = [found.experiment_id]
        filter_string = f"tags.`{KIND_TAG}` = 'train'"
        empty = f"experiment {experiment!r} has no training runs (tag {KIND_TAG}=train)"

    runs, notes = [], []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=1000, page_token=token)
        for run in page:
            if run.info.status == "FINISHED":
                runs.append(run)
            else:
                notes.append(f"run {run.info.run_name} ({run.info.run_id}) left out: status {run.info.status}")
        token = page.token
        if not token:
            break
    if not runs:
        raise RunNotFoundError(empty + (f"; {'; '.join(notes)}" if notes else ""))
    return runs, notes
