"""Test-session defaults for tests/ and the package's doctests.

Fits are untracked unless a test turns tracking on, and any MLflow store a
test touches lives in a temporary directory, never in the checkout.
"""

import os
import tempfile

_STORE = tempfile.mkdtemp(prefix="mnist_mlp_tests_")


def pytest_configure(config):
    os.environ["MNIST_MLP_TRACKING"] = "0"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE}/mlflow.db"
    os.environ.pop("MNIST_MLP_DATA_DIR", None)
