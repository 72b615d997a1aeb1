"""The ``biaslab sweep`` and ``biaslab report`` commands; ``register(app)`` adds them to the CLI.

Every option is a string where None or "" means "not given", so the MLproject entry points can
pass empty parameters through unchanged.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from biaslab.errors import ConfigError

GRID_HELP = ("Built-in grid of configurations: study (unbiased; mislabel 30, 60, 80; size cat 30, 60, 90; size ship 60; "
             "gaussian cat 60). On digits, cat and ship become the digits of the same class index, 3 and 8. "
             "Default: study, unless --config is given.")
CONFIG_HELP = ("YAML or TOML sweep file: shared settings at the top level and one mapping of settings per child "
               "run under 'runs'. Precedence: preset < shared settings < entry < command-line options.")
MODELS_HELP = "Comma-separated models; every configuration runs once per model (resnet20,sharesnet20 doubles the sweep). Default: each entry's model, else resnet20."
LANDSCAPE_HELP = "Probe the loss landscape of each child: true or false. Default: true."
WORKERS_HELP = ("Run the children in parallel on a local Dask cluster (127.0.0.1) of this many single-threaded "
                "worker processes; 0 runs them one after another in this process. Default: 0.")
DASK_HELP = "Address of an existing Dask scheduler, such as tcp://10.0.0.5:8786, to run the children on. Default: none."
PARENT_HELP = ("Id of the parent run to add the children to or to continue. Default: the run of 'mlflow run' "
               "(MLFLOW_RUN_ID), else the latest parent of the same sweep in the experiment, else a new run.")
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")

# command-line option -> RunConfig field, for the settings a sweep applies to every child
SWEEP_FIELDS = {
    "dataset": "dataset", "data_dir": "data_dir", "seed": "seed", "preset": "preset", "demean": "demean",
    "epochs": "epochs", "batch_size": "batch_size", "learning_rate": "learning_rate",
    "lr_boundaries": "lr_boundaries", "lr_factors": "lr_factors", "landscape": "landscape",
    "direction": "landscape_direction", "landscape_split": "landscape_split",
    "landscape_samples": "landscape_samples", "n_directions": "landscape_n_directions",
    "points": "landscape_points", "n_candidates": "landscape_candidates", "resolution": "landscape_resolution",
    "lo": "landscape_lo", "hi": "landscape_hi", "flatness": "flatness",
}


def _parse_bool(name: str, value: Optional[str], default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    if value.strip().lower() in TRUE_WORDS:
        return True
    if value.strip().lower() in FALSE_WORDS:
        return False
    raise ConfigError(f"--{name} {value!r} is not true or false")


def _parse_count(name: str, value: Optional[str], default: int) -> int:
    if value is None or value.strip() == "":
        return default
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"--{name} {value!r} is not a whole number; give 0 or more") from None
    if count < 0:
        raise ConfigError(f"--{name} {value!r} is negative; give 0 or more")
    return count


def _split_list(value: Optional[str]) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def sweep_command(grid: Optional[str], config: Optional[str], models: Optional[str], experiment: Optional[str],
                  run_name: Optional[str], parent_run_id: Optional[str], workers: Optional[str],
                  dask_address: Optional[str], quiet: bool, settings: dict[str, Any]):
    """Validate the whole sweep, then run it; return the SweepResult."""
    from biaslab.plugins import load_plugins
    from biaslab.sweep import run_sweep
    from biaslab.sweep_entries import build_sweep_configs, grid_spec, read_sweep_file

    if grid and config:
        raise ConfigError(f"give either --grid or --config, not both (got --grid {grid} and --config {config})")
    plugins = load_plugins()
    spec = read_sweep_file(config) if config else grid_spec(grid or "study")
    overrides = {SWEEP_FIELDS[name]: value for name, value in settings.items()}
    if overrides.get("landscape") not in (None, ""):
        overrides["landscape"] = _parse_bool("landscape", overrides["landscape"], True)
    configs = build_sweep_configs(plugins, spec, overrides, _split_list(models))
    shared_experiment = spec.shared.get("experiment")
    worker_count = _parse_count("workers", workers, 0)
    return run_sweep(
        configs,
        plugins,
        experiment=experiment or (str(shared_experiment.value) if shared_experiment else None),
        parent_run_id=parent_run_id or None,
        run_name=run_name or f"sweep {spec.name}",
        parallel=worker_count > 0,
        dask_address=dask_address or None,
        n_workers=max(worker_count, 1),
        progress=not quiet,
    )


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` and ``report`` commands to the biaslab typer app."""
    from biaslab import cli

    @app.command()
    def sweep(
        grid: Optional[str] = typer.Option(None, help=GRID_HELP),
        config: Optional[str] = typer.Option(None, help=CONFIG_HELP),
        models: Optional[str] = typer.Option(None, help=MODELS_HELP),
        dataset: Optional[str] = cli.Dataset, data_dir: Optional[str] = cli.DataDir, seed: Optional[str] = cli.Seed,
        preset: Optional[str] = cli.Preset, demean: Optional[str] = cli.Demean, epochs: Optional[str] = cli.Epochs,
        batch_size: Optional[str] = cli.BatchSize, learning_rate: Optional[str] = cli.LearningRate,
        lr_boundaries: Optional[str] = cli.LrBoundaries, lr_factors: Optional[str] = cli.LrFactors,
        landscape: Optional[str] = typer.Option(None, help=LANDSCAPE_HELP),
        direction: Optional[str] = cli.Direction, landscape_split: Optional[str] = cli.LandscapeSplit,
        landscape_samples: Optional[str] = cli.LandscapeSamples, n_directions: Optional[str] = cli.NDirections,
        points: Optional[str] = cli.Points, n_candidates: Optional[str] = cli.Candidates,
        resolution: Optional[str] = cli.Resolution, lo: Optional[str] = cli.Lo, hi: Optional[str] = cli.Hi,
        flatness: Optional[str] = cli.Flatness,
        experiment: Optional[str] = cli.Experiment,
        run_name: Optional[str] = typer.Option(None, "--run-name", "--run_name", help="Name of a new parent run. Default: 'sweep GRID' or 'sweep FILE-STEM'."),
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", "--parent_run_id", help=PARENT_HELP),
        workers: Optional[str] = typer.Option(None, help=WORKERS_HELP),
        dask_address: Optional[str] = typer.Option(None, "--dask-address", "--dask_address", help=DASK_HELP),
        quiet: bool = cli.Quiet,
    ) -> None:
        """Run many configurations as child runs of one MLflow parent run.

        Every configuration is validated before the first child starts. Running the same sweep
        again skips children that finished with the same params and reruns failed or missing ones.
        Prints the parent run id; exits with code 1 when a child failed, after listing the failures.
        """
        settings = {name: value for name, value in locals().items() if name in SWEEP_FIELDS}
        result = cli.call(lambda: sweep_command(grid, config, models, experiment, run_name, parent_run_id, workers,
                                                dask_address, quiet, settings))
        typer.echo(result.parent_run_id)
        if result.failed:
            typer.echo(f"error: {len(result.failed)} of {len(result.child_run_ids)} child runs failed: "
                       f"{', '.join(result.failed)}. Run the same command again to rerun them.", err=True)
            raise typer.Exit(code=1)

    @app.command()
    def report(
        parent_run_id: Optional[str] = typer.Option(None, "--parent-run-id", "--parent_run_id", help="Compare the finished child runs of this sweep parent run."),
        experiment: Optional[str] = typer.Option(None, help="Compare the finished training runs of this MLflow experiment."),
        runs: Optional[str] = typer.Option(None, help="Compare these runs: comma-separated MLflow run ids."),
        output: Optional[str] = typer.Option(None, help="Folder for report.md, report.html, CSV tables and PNG figures. Default: report."),
        log: Optional[str] = typer.Option(None, help="Log the files under report/ of the parent run, or of a new run named report: true or false. Default: true."),
    ) -> None:
        """Compare runs: study table, per-class scores, landscapes, and flatness against generalization error.

        Give exactly one of --parent-run-id, --experiment or --runs. Prints the output folder.
        What a run lacks (landscapes, flatness measures) is listed in the report and on stderr.
        """
        from biaslab.report import build_report

        def job():
            return build_report(parent_run_id=parent_run_id or None, experiment=experiment or None,
                                run_ids=_split_list(runs), output=output or "report",
                                log=_parse_bool("log", log, True))

        result = cli.call(job)
        if result.logged_run_id:
            print(f"report logged under report/ of run {result.logged_run_id}", file=sys.stderr)
        typer.echo(str(result.folder))
