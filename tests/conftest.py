"""Shared fixtures: small slices of the embedded MNIST subset, so tests train in seconds; and the
fast tier's rule: no server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_mlp.data import load_embedded_mnist
from tests import helpers

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

@pytest.hookimpl(tryfirst=True)  # before the test's fixtures, a module-scoped server's among them
def pytest_runtest_setup(item):
    helpers.servers_allowed = item.get_closest_marker("slow") is not None


@pytest.fixture(scope="session")
def embedded():
    """The full embedded subset: 6,000 train and 1,000 test images."""
    return load_embedded_mnist()


@pytest.fixture(scope="session")
def digits(embedded):
    """2,000 training and 500 test images (uint8, 28x28) with int labels."""
    (x_train, y_train), (x_test, y_test) = embedded
    return x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]


@pytest.fixture(scope="session")
def flat_digits(digits):
    """The same slices flattened and scaled to [0, 1] float32, for the bare estimator."""
    x_train, y_train, x_test, y_test = digits
    scale = lambda x: (x.reshape(len(x), -1) / 255.0).astype(np.float32)  # noqa: E731
    return scale(x_train), y_train, scale(x_test), y_test


@pytest.fixture(scope="session")
def shared_mnist():
    """The full MNIST IDX directory beside the checkout (skipped where absent)."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory):
    """An empty MLflow SQLite store, made once per test run (MLflow's migrations take 1-2 s a store)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracked(monkeypatch, tmp_path, empty_store):
    """Tracking on, into a fresh SQLite store under tmp_path; yields an MlflowClient."""
    from mlflow.tracking import MlflowClient

    uri = helpers.copy_of_store(empty_store, tmp_path)
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(uri)
