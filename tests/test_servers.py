"""Against real processes on 127.0.0.1: a tracking server, and a served model."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mnist_mlp import GridSearchCV, evaluate, make_pipeline
from tests.helpers import BIN, artifact_paths, start_http_server, start_mlflow_server

pytestmark = pytest.mark.slow  # every test starts a server

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
    names = set(artifact_paths(client, pipe.run_id_))
    assert {"learning_curves.png", "weights_violin.png", "confusion_matrix.png", "model"} <= names
    # The model, an MLflow 3 logged model uploaded to the server's artifact store, loads back.
    served = mlflow.pyfunc.load_model(fit_run.data.tags["model_uri"])
    np.testing.assert_array_equal(served.predict(x_test[:20]), pipe.predict(x_test[:20]))
    png = client.download_artifacts(pipe.run_id_, "learning_curves.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    parent = client.get_run(search.run_id_)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == search.run_id_]
    assert len(children) == 5 and parent.data.tags["best_run_id"] in {r.info.run_id for r in children}


def _post(url, payload, content_type="application/json"):
    """POST ``payload`` (JSON-encoded unless bytes); return ``(status, parsed body, body size)``."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw), len(raw)
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw or b"{}"), len(raw)


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits):
    """One logged model served by ``mlflow models serve`` for the module's tests, which only send it
    requests (a server is most of a test's time): ``(pipe, invocations URL, the logged request
    example)``; its log holds no traceback once it stops."""
    folder = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{folder}/mlflow.db"
    x_train, y_train, _, _ = digits
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MNIST_MLP_TRACKING", raising=False)
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.chdir(folder)
        pipe = make_pipeline(**dict(FAST, epochs=4)).fit(x_train, y_train)
        example = json.loads(Path(MlflowClient(uri).download_artifacts(
            pipe.run_id_, "model/serving_input_example.json", str(folder))).read_text())
        server, port = start_http_server(
            lambda port: [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{pipe.run_id_}/model",
                          "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            folder / "serve.log", "/ping", env={"MLFLOW_TRACKING_URI": uri},
        )
        try:
            yield pipe, f"http://127.0.0.1:{port}/invocations", example
        finally:
            server.stop()
    assert "Traceback" not in server.output()


def _bad_payloads(image):
    """Each payload the served model must refuse, with a word its message must contain."""
    scaled = (image / 255.0).tolist()
    fractional = (image + 0.5).tolist()
    return {
        "float image scaled to [0, 1]": ({"inputs": [scaled]}, "scaled"),
        "non-integer pixels": ({"inputs": [fractional]}, "whole numbers"),
        "pixels above 255": ({"inputs": [np.full((28, 28), 300).tolist()]}, "0..255"),
        "negative pixels": ({"inputs": [np.full((28, 28), -1).tolist()]}, "0..255"),
        "inverted image (dark ink on light paper)": ({"inputs": [(255 - image).tolist()]}, "background"),
        "wrong shape (27x27)": ({"inputs": np.zeros((2, 27, 27), dtype=int).tolist()}, "shape"),
        "one image without its batch": ({"inputs": image.tolist()}, "batch of one"),
        "ragged rows": ({"inputs": [[1, 2], [3]]}, "shape"),  # MLflow refuses it while parsing
        "empty batch": ({"inputs": []}, "empty"),
        "text pixels": ({"inputs": [[["x"] * 28] * 28]}, "numbers"),
        "null pixels": ({"inputs": [[[None] * 28] * 28]}, "numbers"),
        "not JSON": (b"not json", "json"),
    }


def test_logged_model_serves_digits_and_refuses_what_it_was_not_trained_for(served, digits):
    _, _, x_test, _ = digits
    pipe, url, example = served
    expected = pipe.predict(x_test[:20])
    for good in (x_test[:20].tolist(), x_test[:20].astype(float).tolist(),
                 x_test[:20].reshape(20, -1).tolist(), x_test[:20, ..., None].tolist()):
        # uint8, integer-valued floats, flattened, with a channel axis
        status, answer, _ = _post(url, {"inputs": good})
        assert status == 200, answer
        np.testing.assert_array_equal(answer["predictions"], expected)
    status, answer, _ = _post(url, example)  # docs/serving.md's request: the logged example, as is
    assert status == 200 and len(answer["predictions"]) == len(example["inputs"])

    report = {}
    for name, (payload, word) in _bad_payloads(x_test[0]).items():
        status, answer, size = _post(url, payload)
        report[name] = (status, size)
        message = answer.get("message", "")
        assert status == 400, (name, status, answer)
        assert size < 500, (name, size, message)
        assert word in message.lower(), (name, message)
        assert "Traceback" not in message and "site-packages" not in message and "stack_trace" not in answer
        assert not message.startswith("Failed to predict data"), (name, message)  # no dump of the input
    print("\n".join(f"{name}: HTTP {status}, {size} bytes" for name, (status, size) in report.items()))

    # The reason, alone, whatever the batch: MLflow's server would prefix a printout of the input.
    sizes = {}
    for n in (1, 5, 64):
        status, answer, sizes[n] = _post(url, {"inputs": (x_test[:n] / 255.0).tolist()})
        assert status == 400 and answer["message"] == (
            "input looks scaled to [0, 1]; this model takes raw uint8 values 0..255, as it was trained: "
            "send round(x * 255)"), answer
    assert len(set(sizes.values())) == 1 and sizes[64] < 300, sizes

    # A CSV's first line is its header: one without it is refused, saying how to send it.
    rows = x_test[:5].reshape(5, -1)
    status, answer, _ = _post(url, pd.DataFrame(rows).to_csv(index=False).encode(), "text/csv")
    assert status == 200 and answer["predictions"] == expected[:5].tolist(), answer
    for name, csv in {"no header": pd.DataFrame(rows).to_csv(index=False, header=False),
                      "an index column": pd.DataFrame(rows).to_csv()}.items():
        status, answer, size = _post(url, csv.encode(), "text/csv")
        assert status == 400 and size < 500, (name, status, answer)
        assert answer["message"].startswith("a table's columns must be the pixel positions 0..783"), answer
        assert "send a CSV with the header 0,1,...,783" in answer["message"], answer


def test_a_served_model_answers_concurrent_requests(served, digits):
    """8 threads x 20 requests to one served model: every answer 200 and right."""
    _, _, x_test, _ = digits
    pipe, url, _ = served
    batches = [x_test[i:i + 5] for i in range(0, 40, 5)]
    expected = [pipe.predict(b).tolist() for b in batches]

    def client(i):
        return [_post(url, {"inputs": batches[(i + k) % 8].tolist()})[:2] + ((i + k) % 8,)
                for k in range(20)]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for chunk in pool.map(client, range(8)) for a in chunk]
    assert len(answers) == 160
    assert [(s, a.get("predictions")) for s, a, _ in answers] == [(200, expected[b]) for _, _, b in answers]
