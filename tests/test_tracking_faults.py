"""The tracking server unreachable at the start, or lost in the middle of a fit."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from mnist_mlp import evaluate, make_pipeline
from mnist_mlp._tensorflow import keras
from mnist_mlp.tracking import TrackingLostWarning, TrackingUnavailableError
from tests.helpers import refused_port, start_mlflow_server

FAST = dict(hidden_layer_sizes=(16,), epochs=4, batch_size=64, random_state=0)


@pytest.fixture
def quick_http(monkeypatch, tmp_path):
    """Tracking on, MLflow's HTTP retries short, the fallback folder under tmp_path."""
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    monkeypatch.setenv("MNIST_MLP_FALLBACK_DIR", str(tmp_path / "unlogged"))
    monkeypatch.chdir(tmp_path)


def test_unreachable_server_fails_fast_before_training(quick_http, monkeypatch, digits):
    x_train, y_train, _, _ = digits
    pipe = make_pipeline(**FAST)
    with refused_port() as port:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        with pytest.raises(TrackingUnavailableError, match="unreachable.*MNIST_MLP_TRACKING=0"):
            pipe.fit(x_train[:200], y_train[:200])
    assert not hasattr(pipe["classifier"], "model_")  # nothing was trained: it failed before training


class _KillServer(keras.callbacks.Callback):
    def __init__(self, server):
        super().__init__()
        self.server = server

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.server.stop()


@pytest.mark.slow
def test_server_lost_mid_fit_training_finishes_and_nothing_is_lost(quick_http, monkeypatch, tmp_path, digits):
    server, uri = start_mlflow_server(tmp_path)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        x_train, y_train, x_test, y_test = digits
        pipe = make_pipeline(**FAST, callbacks=[_KillServer(server)])
        with pytest.warns(TrackingLostWarning, match="saved in"):
            pipe.fit(x_train[:600], y_train[:600])
        scores = evaluate(pipe, x_test, y_test)
    finally:
        server.stop()

    assert pipe["classifier"].n_iter_ == 4  # training finished
    (folder,) = (tmp_path / "unlogged").iterdir()
    assert folder.name == pipe.run_id_
    info = json.loads((folder / "info.json").read_text())
    assert info["status"] == "FINISHED" and info["tracking_uri"].startswith("http://127.0.0.1")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    unlogged = sorted(m["step"] for m in metrics if m["key"] == "loss")
    from mlflow.tracking import MlflowClient  # what reached the server before it went

    logged = [m.step for m in MlflowClient(f"sqlite:///{tmp_path}/server.db").get_metric_history(
        pipe.run_id_, "loss")]
    assert sorted(logged + unlogged) == [0, 1, 2, 3], (logged, unlogged)  # every epoch, once
    assert unlogged and unlogged[-1] == 3
    names = {m["key"] for m in metrics}
    assert {"fit_time_s", "weight_updates", "test_accuracy"} <= names
    artifacts = folder / "artifacts"
    assert (artifacts / "learning_curves.png").is_file() and (artifacts / "confusion_matrix.png").is_file()
    model = mlflow.pyfunc.load_model(str(artifacts / "model"))
    np.testing.assert_array_equal(model.predict(x_test[:20]), pipe.predict(x_test[:20]))
    recorded = [m["value"] for m in metrics if m["key"] == "test_accuracy"]
    assert recorded == [pytest.approx(scores["test_accuracy"])] and scores["test_accuracy"] > 0.2
