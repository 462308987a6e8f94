"""Against real processes on 127.0.0.1: a tracking server, and a served model."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mnist_mlp import GridSearchCV, evaluate, make_pipeline
from tests.helpers import BIN, start_http_server, start_mlflow_server

FAST = dict(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)


@pytest.fixture
def tracking_server(tmp_path, monkeypatch):
    """``mlflow server`` with a SQLite backend and local artifacts; tracking pointed at it."""
    server, uri = start_mlflow_server(tmp_path)
    try:
        monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)
        yield uri
    finally:
        server.stop()


def test_fit_and_search_log_to_a_tracking_server(tracking_server, digits, tmp_path):
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(**FAST).fit(x_train[:500], y_train[:500])
    scores = evaluate(pipe, x_test[:200], y_test[:200])
    search = GridSearchCV(
        make_pipeline(**FAST), {"classifier__learning_rate_init": [1e-3, 1e-2]}, cv=2, n_jobs=2,
    ).fit(x_train[:400], y_train[:400])

    client = MlflowClient(tracking_server)
    runs = client.search_runs(["0"], max_results=100)
    assert len(runs) == 1 + 1 + 4 + 1  # the fit, the search parent, 4 folds, the refit
    assert {r.info.status for r in runs} == {"FINISHED"}
    fit_run = client.get_run(pipe.run_id_)
    assert fit_run.data.metrics["test_accuracy"] == pytest.approx(scores["test_accuracy"])
    assert scores["test_accuracy"] > 0.15  # above chance after 2 short epochs
    assert len(client.get_metric_history(pipe.run_id_, "loss")) == 2
    names = {a.path for a in client.list_artifacts(pipe.run_id_)}
    assert {"learning_curves.png", "weights_violin.png", "confusion_matrix.png", "model"} <= names
    png = client.download_artifacts(pipe.run_id_, "learning_curves.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    parent = client.get_run(search.run_id_)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == search.run_id_]
    assert len(children) == 5 and parent.data.tags["best_run_id"] in {r.info.run_id for r in children}


def _post(url, payload):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_logged_model_serves_digits_over_http(tmp_path, monkeypatch, digits):
    x_train, y_train, x_test, _ = digits
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    pipe = make_pipeline(**dict(FAST, epochs=4)).fit(x_train, y_train)

    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{pipe.run_id_}/model",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        tmp_path / "serve.log", "/ping", env={"MLFLOW_TRACKING_URI": uri},
    )
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        status, answer = _post(url, {"inputs": x_test[:20].tolist()})
        assert status == 200
        np.testing.assert_array_equal(answer["predictions"], pipe.predict(x_test[:20]))
        for bad in (
            {"inputs": np.zeros((2, 27, 27), dtype=int).tolist()},   # wrong shape
            {"inputs": [[["x"] * 28] * 28]},                          # wrong type
            {"inputs": np.full((1, 28, 28), 300).tolist()},           # out of uint8 range
            b"not json",
        ):
            status, answer = _post(url, bad)
            assert status == 400, (status, answer)
            assert answer.get("message") and "Traceback" not in answer["message"]
    finally:
        server.stop()
    assert "Traceback" not in server.output() or sys.platform == "win32"
