"""Shared fixtures: a private MLflow store per test, loaded plugins, and the CIFAR-10 sample."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "cifar10-sample"


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """Point MLflow at a SQLite store under tmp_path, for this process and for subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def plugins():
    from biaslab.plugins import load_plugins

    return load_plugins()


@pytest.fixture(scope="session")
def cifar_sample() -> Path:
    if not (CIFAR_SAMPLE / "cifar-10-batches-py" / "data_batch_1").is_file():
        pytest.skip(f"the CIFAR-10 sample is not at {CIFAR_SAMPLE}")
    return CIFAR_SAMPLE


@pytest.fixture(scope="session")
def cifar_dataset(cifar_sample):
    from biaslab.data import load_cifar10

    return load_cifar10(cifar_sample)
