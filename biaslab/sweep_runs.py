"""The MLflow side of a sweep: the parent run, its child runs, and which children are finished.

A sweep is one parent run (tag ``biaslab.kind=sweep``) with one child run per configuration (tag
``mlflow.parentRunId``), all in the parent's experiment. Each child carries a ``biaslab.config_key``
tag, a hash of its params, so a second run of the same sweep finds it again. The parent carries a
``biaslab.sweep_key`` tag, a hash of the set of configurations, so the same sweep started again
without a parent run id continues the latest parent with that key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Param, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from biaslab import tracking
from biaslab.config import RunConfig
from biaslab.errors import ConfigError

KIND_TAG = "biaslab.kind"
SWEEP_KEY_TAG = "biaslab.sweep_key"
SWEEP_SIZE_TAG = "biaslab.sweep_size"
CONFIG_KEY_TAG = "biaslab.config_key"
ERROR_TAG = "biaslab.error"
CONFIGS_ARTIFACT = "sweep/configs.json"
# MLflow caps a tag value at 8,000 characters (mlflow 3.17); an error message is cut well below that
MAX_ERROR_LENGTH = 2000


@dataclasses.dataclass(frozen=True)
class Parent:
    """The parent run of a sweep and whether an earlier sweep created it."""

    run_id: str
    experiment_id: str
    reused: bool


def config_key(config: RunConfig) -> str:
    """Return a hash of the run's params: equal keys mean equal logged configurations."""
    text = json.dumps(config.params(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweep_key(configs: Sequence[RunConfig]) -> str:
    """Return a hash of the set of configurations, independent of their order."""
    text = json.dumps(sorted(config_key(config) for config in configs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def child_name(config: RunConfig) -> str:
    """Return the run name of a child: the entry's run_name, or model and bias as in "resnet20 size 3 30%"."""
    if config.run_name:
        return config.run_name
    from biaslab.pipeline import describe_bias

    name = f"{config.model} {describe_bias(config)}"
    return name if config.seed == 0 else f"{name} seed {config.seed}"


def absolute_tracking_uri() -> str:
    """Return the tracking URI with a relative sqlite or file path made absolute.

    Dask workers may run in another working folder, so they get a URI that does not depend on it.
    """
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file") and not Path(parsed.path).is_absolute():
        return Path(parsed.path).resolve().as_uri()
    return uri


def resolve_parent(experiment: str | None, parent_run_id: str | None, run_name: str, key: str) -> Parent:
    """Find or create the parent run and mark it RUNNING.

    The parent is the first that exists of: an explicit ``parent_run_id``, MLFLOW_RUN_ID (which
    ``mlflow run`` sets to the run of the entry point), the latest parent in the experiment with
    the same sweep key, and a new run. MLFLOW_RUN_ID is removed from the environment, so that no
    child run takes it for its own run id.
    """
    environment_run_id = os.environ.pop("MLFLOW_RUN_ID", None) or None
    client = MlflowClient()
    if parent_run_id and environment_run_id and parent_run_id != environment_run_id:
        print(f"MLFLOW_RUN_ID is {environment_run_id}, but --parent-run-id {parent_run_id} was given; "
              f"the children go under {parent_run_id}", file=sys.stderr)
    chosen = parent_run_id or environment_run_id
    if chosen:
        run = tracking.get_run(chosen)
        _check_can_be_parent(run, experiment)
        reused = run.data.tags.get(KIND_TAG) == "sweep"
        previous_key = run.data.tags.get(SWEEP_KEY_TAG)
        if previous_key and previous_key != key:
            print(f"parent run {chosen} held a sweep with other configurations (sweep key {previous_key}); "
                  f"children that match no configuration of this sweep are left as they are", file=sys.stderr)
        parent = Parent(chosen, run.info.experiment_id, reused)
    else:
        experiment_id = tracking.experiment_id(
            experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or tracking.DEFAULT_EXPERIMENT
        )
        previous = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{SWEEP_KEY_TAG}` = '{key}' and tags.`{KIND_TAG}` = 'sweep'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if previous:
            # NOTE: a parent that another process is still running is taken over as well, and
            # children it is running count as unfinished, so two processes would train them twice.
            parent = Parent(previous[0].info.run_id, experiment_id, True)
        else:
            run = client.create_run(experiment_id, run_name=run_name or "sweep")
            parent = Parent(run.info.run_id, experiment_id, False)

    client.set_tag(parent.run_id, KIND_TAG, "sweep")
    client.set_tag(parent.run_id, SWEEP_KEY_TAG, key)
    client.update_run(parent.run_id, status="RUNNING")
    return parent


def _check_can_be_parent(run: Run, experiment: str | None) -> None:
    kind = run.data.tags.get(KIND_TAG)
    if kind not in (None, "sweep"):
        raise ConfigError(f"run {run.info.run_id} is a {kind} run, not the parent run of a sweep; "
                          f"give the id of a sweep parent run, or none to start a new sweep")
    if experiment:
        name = MlflowClient().get_experiment(run.info.experiment_id).name
        if name != experiment:
            raise ConfigError(f"the parent run {run.info.run_id} is in experiment {name!r}, but experiment "
                              f"{experiment!r} was requested; children always go into the parent's experiment, "
                              f"so drop --experiment or give a parent run of {experiment!r}")


def list_children(parent: Parent) -> list[Run]:
    """Return every child run of the parent, newest first, following MLflow's result pages."""
    client = MlflowClient()
    children: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [parent.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.run_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        children.extend(page)
        token = page.token
        if not token:
            return children


def is_finished(run: Run, config: RunConfig) -> bool:
    """Tell whether a child ran to the end with exactly the params of ``config``."""
    if run.info.status != RunStatus.to_string(RunStatus.FINISHED):
        return False
    logged = run.data.params
    return all(logged.get(key) == tracking.fit_param(value) for key, value in config.params().items())


def match_children(configs: Sequence[RunConfig], children: Iterable[Run]) -> list[Run | None]:
    """Pair each configuration with its existing child: a finished one if any, else the newest."""
    by_key: dict[str, list[Run]] = {}
    for child in children:
        by_key.setdefault(child.data.tags.get(CONFIG_KEY_TAG, ""), []).append(child)
    matches: list[Run | None] = []
    for config in configs:
        candidates = by_key.get(config_key(config), [])
        finished = [run for run in candidates if is_finished(run, config)]
        if finished:
            matches.append(finished[0])
        elif candidates:
            matches.append(candidates[0])
        else:
            matches.append(None)
    return matches


def create_child(parent: Parent, config: RunConfig) -> str:
    """Create a child run with its tags and params, in status SCHEDULED until it starts."""
    client = MlflowClient()
    params = config.params()
    tags = {
        MLFLOW_PARENT_RUN_ID: parent.run_id,
        KIND_TAG: "train",
        CONFIG_KEY_TAG: config_key(config),
        "bias": config.bias,
        "cls": config.cls,
        "pct": params["pct"],
    }
    run = client.create_run(parent.experiment_id, run_name=child_name(config), tags=tags)
    run_id = run.info.run_id
    items = [Param(key, tracking.fit_param(value)) for key, value in params.items()]
    # MLflow caps a log_batch call at 100 params
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])
    client.update_run(run_id, status="SCHEDULED")
    return run_id


def record_failure(run_id: str, error: str) -> None:
    """Mark a child FAILED with the error as tag ``biaslab.error``, which the MLflow UI shows."""
    client = MlflowClient()
    text = error if len(error) <= MAX_ERROR_LENGTH else error[: MAX_ERROR_LENGTH - 3] + "..."
    client.log_batch(run_id, tags=[RunTag(ERROR_TAG, text)])
    if client.get_run(run_id).info.status != "FAILED":
        client.set_terminated(run_id, status="FAILED")


def clear_failure(run_id: str) -> None:
    """Remove the error tag of an earlier failed attempt after the child finished."""
    client = MlflowClient()
    if ERROR_TAG in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, ERROR_TAG)


def log_sweep_configs(parent: Parent, configs: Sequence[RunConfig], child_ids: Sequence[str]) -> None:
    """Log the configurations and child run ids as ``sweep/configs.json`` on the parent run."""
    entries = [{"run_id": run_id, "run_name": child_name(config), "params": config.params()}
               for config, run_id in zip(configs, child_ids)]
    client = MlflowClient()
    client.log_dict(parent.run_id, {"children": entries}, CONFIGS_ARTIFACT)
    client.set_tag(parent.run_id, SWEEP_SIZE_TAG, str(len(configs)))


def end_parent(parent: Parent, status: str) -> None:
    MlflowClient().set_terminated(parent.run_id, status=status)


def use_tracking_uri(uri: str) -> None:
    """Point this process at ``uri``; Dask workers call it before their first MLflow call."""
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
