"""Sweeps: many configurations as child runs of one MLflow parent run.

``run_sweep`` runs the children one after another in this process, or in parallel on Dask
workers (a LocalCluster on 127.0.0.1, or an existing scheduler). Each child is a plain
``run_job`` with the id of a child run created beforehand, so a child that fails before its
training starts is still recorded, with its params and the error. Running the same sweep again
skips the children that finished with the same params and resumes the others from their last
checkpoint. A failed child never stops the others.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from typing import Callable, Sequence

from biaslab import sweep_runs
from biaslab.config import RunConfig
from biaslab.errors import ConfigError
from biaslab.plugins import Plugins, load_plugins
from biaslab.progress import format_duration
from biaslab.sweep_runs import Parent


@dataclasses.dataclass
class SweepResult:
    """The parent run, one child run id per configuration (in order), and what happened to each."""

    parent_run_id: str
    experiment_id: str
    child_run_ids: list[str]
    skipped: list[str]
    # run id of each failed child -> the error, with its traceback
    failed: dict[str, str]

    @property
    def succeeded(self) -> bool:
        return not self.failed


@dataclasses.dataclass(frozen=True)
class PendingChild:
    """A child run to start or resume, with its configuration."""

    run_id: str
    name: str
    config: RunConfig


def run_sweep(
    configs: Sequence[RunConfig],
    plugins: Plugins | None = None,
    *,
    experiment: str | None = None,
    parent_run_id: str | None = None,
    run_name: str = "",
    parallel: bool = False,
    dask_address: str | None = None,
    n_workers: int = 2,
    progress: bool = True,
) -> SweepResult:
    """Run every configuration as a child run of one parent run and return the run ids.

    The parent is ``parent_run_id``, else the run of ``mlflow run`` (MLFLOW_RUN_ID), else the latest
    parent in ``experiment`` with the same set of configurations, else a new run named ``run_name``.
    Children run in this process unless ``parallel`` or ``dask_address`` is given: then on a new
    LocalCluster of ``n_workers`` single-threaded processes, or on the scheduler at ``dask_address``.
    Dask workers load the installed plugins themselves, so a plugin passed only in ``plugins`` is
    unknown there. The parent ends FINISHED, or FAILED when a child failed.
    """
    if not configs:
        raise ConfigError("the sweep has no configurations; give a grid or a sweep file with at least one entry")
    if n_workers < 1:
        raise ConfigError(f"n_workers={n_workers} is invalid; give at least 1 Dask worker")
    plugins = plugins or load_plugins()
    key = sweep_runs.sweep_key(configs)
    parent = sweep_runs.resolve_parent(experiment, parent_run_id, run_name, key)

    # pair each configuration with its child, creating the missing ones up front so that the
    # whole sweep is visible in the MLflow UI from the start
    matches = sweep_runs.match_children(configs, sweep_runs.list_children(parent))
    child_ids: list[str] = []
    skipped: list[str] = []
    pending: list[PendingChild] = []
    for config, match in zip(configs, matches):
        if match is not None and sweep_runs.is_finished(match, config):
            child_ids.append(match.info.run_id)
            skipped.append(match.info.run_id)
            continue
        run_id = match.info.run_id if match is not None else sweep_runs.create_child(parent, config)
        child_ids.append(run_id)
        pending.append(PendingChild(run_id, sweep_runs.child_name(config), config))
    sweep_runs.log_sweep_configs(parent, configs, child_ids)

    status = SweepStatus(len(configs), len(skipped), enabled=progress)
    status.start(parent)
    failed: dict[str, str] = {}

    def on_done(child: PendingChild, error: str | None) -> None:
        if error is not None:
            failed[child.run_id] = error
            print(f"child run {child.run_id} ({child.name}) failed:\n{error}", file=sys.stderr, flush=True)
        status.child_done(child, error is None)

    try:
        if parallel or dask_address:
            run_on_dask(pending, sweep_runs.absolute_tracking_uri(), on_done, dask_address, n_workers)
        else:
            for child in pending:
                on_done(child, run_child(child.config, child.run_id, None, progress, plugins))
    except BaseException:
        sweep_runs.end_parent(parent, "KILLED")
        raise
    sweep_runs.end_parent(parent, "FAILED" if failed else "FINISHED")
    status.close()
    return SweepResult(parent.run_id, parent.experiment_id, child_ids, skipped, failed)


def run_child(config: RunConfig, run_id: str, tracking_uri: str | None, progress: bool = False,
              plugins: Plugins | None = None) -> str | None:
    """Run one child run to the end; return None on success or the error with its traceback.

    The child is marked FAILED on any exception. A Dask worker calls it in a fresh process (see
    ``biaslab.sweep_worker``), so it takes the tracking URI explicitly; None keeps the URI of this
    process.
    """
    import keras

    from biaslab.pipeline import run_job

    if tracking_uri is not None:
        sweep_runs.use_tracking_uri(tracking_uri)
    # run_job would take MLFLOW_RUN_ID for its own run id when a worker inherited it
    os.environ.pop("MLFLOW_RUN_ID", None)
    # a fresh Keras session per child frees the graphs of the previous one
    keras.backend.clear_session()
    try:
        run_job(config, plugins or load_plugins(), run_id=run_id, progress=progress)
    except Exception as error:  # noqa: BLE001 - one failed child must not stop the sweep
        text = "".join(traceback.format_exception(error)).rstrip()
        sweep_runs.record_failure(run_id, f"{type(error).__name__}: {error}")
        return text
    sweep_runs.clear_failure(run_id)
    return None


def run_on_dask(pending: Sequence[PendingChild], tracking_uri: str,
                on_done: Callable[[PendingChild, str | None], None],
                address: str | None, n_workers: int) -> None:
    """Run the pending children on Dask workers, each in a fresh process, and call ``on_done`` as each one ends."""
    from dask.distributed import Client, LocalCluster, as_completed

    from biaslab.sweep_worker import run_child_in_process

    if not pending:
        return
    cluster = None
    if address:
        # NOTE: workers on other machines reach the store only through the same tracking URI, so a
        # sqlite or file URI works there only on a shared file system; an MLflow server works anywhere.
        try:
            client = Client(address, timeout=60)
        except (OSError, TimeoutError) as error:
            raise ConfigError(f"could not connect to the Dask scheduler at {address!r}: {error}. "
                              f"Check the address, or drop --dask-address to use a local cluster") from None
    else:
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {}
        for child in pending:
            future = client.submit(run_child_in_process, child.config, child.run_id, tracking_uri,
                                   pure=False, key=f"biaslab-child-{child.run_id}")
            futures[future] = child
        for future in as_completed(futures):
            child = futures[future]
            try:
                error = future.result()
            except Exception as failure:  # noqa: BLE001 - e.g. KilledWorker when a worker process died
                error = f"the Dask task failed: {type(failure).__name__}: {failure}"
                sweep_runs.record_failure(child.run_id, error)
            on_done(child, error)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class SweepStatus:
    """Progress lines on stderr: children done out of total, time elapsed and an estimate of time left."""

    def __init__(self, total: int, skipped: int, enabled: bool = True) -> None:
        self.total = total
        self.skipped = skipped
        self.finished = 0
        self.failed = 0
        self.enabled = enabled
        self._start = time.monotonic()

    def start(self, parent: Parent) -> None:
        if not self.enabled:
            return
        action = "continuing" if parent.reused else "started"
        print(f"sweep: {action} parent run {parent.run_id} (experiment id {parent.experiment_id}); "
              f"{self.total} children, {self.skipped} finished before, {self.total - self.skipped} to run",
              file=sys.stderr, flush=True)

    def child_done(self, child: PendingChild, succeeded: bool) -> None:
        if succeeded:
            self.finished += 1
        else:
            self.failed += 1
        if not self.enabled:
            return
        outcome = "finished" if succeeded else "FAILED"
        print(f"sweep: child {child.name} ({child.run_id}) {outcome}; {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        ran = self.finished + self.failed
        done = self.skipped + ran
        elapsed = time.monotonic() - self._start
        # the estimate assumes the remaining children take as long as those run so far
        if done >= self.total:
            left = format_duration(0)
        elif ran:
            left = format_duration(elapsed / ran * (self.total - done))
        else:
            left = "unknown"
        return (f"{done}/{self.total} children done ({self.failed} failed, {self.skipped} skipped), "
                f"elapsed {format_duration(elapsed)}, about {left} left")

    def close(self) -> None:
        if self.enabled:
            print(f"sweep: ended; {self.line()}", file=sys.stderr, flush=True)
