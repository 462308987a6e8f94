"""What the estimator and the served model do with input they were not trained for.

Each case of issue 22's "never silently wrong" half, tried as a user would,
with tracking on (a fresh SQLite store): what happened (an error and its
first line, or the accuracy of a silent answer) and the runs each case left,
by status. Then a pipeline is served with ``mlflow models serve``: a
headerless CSV, a CSV with a header, and 1, 5 and 64 images scaled to [0, 1]
(HTTP status, body size in bytes, the body's first 90 characters).

Usage: python benchmarks/input_contract_cases.py [--out results.json]
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMALL = dict(hidden_layer_sizes=(32,), epochs=5, batch_size=64, random_state=0)


def _outcome(action):
    """``action()``'s accuracy, or the exception it raised (type and first line)."""
    try:
        value = action()
    except Exception as exc:  # noqa: BLE001 - the point is to report it
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:110]}"
    return value if isinstance(value, str) else f"answered, accuracy {value:.2f}"


def _runs(client):
    runs = client.search_runs(["0"], max_results=1000)
    return collections.Counter(r.info.status for r in runs)


def _new_runs(client, before):
    after = _runs(client)
    return dict(after - before) or "none"


def in_process_cases(x_train, y_train, x_test, y_test, client):
    import numpy as np
    import pandas as pd

    from mnist_mlp import MLPClassifier, make_pipeline

    cases = {}

    def case(name, action):
        before = _runs(client)
        cases[name] = {"outcome": _outcome(action), "new runs": _new_runs(client, before)}
        print(f"{name}: {cases[name]}", flush=True)

    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    names = [f"px{i}" for i in range(784)]
    frame_train = pd.DataFrame(flat(x_train) / 255.0, columns=names)
    frame_test = pd.DataFrame(flat(x_test) / 255.0, columns=names)
    clf = MLPClassifier(**SMALL).fit(frame_train, y_train)
    cases["bare MLP on a DataFrame: feature_names_in_ set"] = {"outcome": str(hasattr(clf, "feature_names_in_"))}
    case("bare MLP, same columns", lambda: clf.score(frame_test, y_test))
    case("bare MLP, reversed columns", lambda: clf.score(frame_test[names[::-1]], y_test))
    case("bare MLP, renamed columns",
         lambda: clf.score(frame_test.set_axis([f"q{i}" for i in range(784)], axis=1), y_test))
    case("bare MLP, one column missing", lambda: clf.score(frame_test[names[:-1]], y_test))

    uint8_frame = pd.DataFrame(flat(x_train), columns=names)
    pipe = make_pipeline(**SMALL).fit(uint8_frame, y_train)
    test_frame = pd.DataFrame(flat(x_test), columns=names)
    cases["pipeline on a DataFrame: feature_names_in_ set"] = {"outcome": str(hasattr(pipe, "feature_names_in_"))}
    case("pipeline, reversed columns", lambda: pipe.score(test_frame[names[::-1]], y_test))
    case("pipeline, renamed columns",
         lambda: pipe.score(test_frame.set_axis([f"q{i}" for i in range(784)], axis=1), y_test))

    pipe = make_pipeline(**SMALL).fit(x_train, y_train)
    scaled = (x_test / 255.0).astype(np.float32)
    case("uint8 pipeline, uint8 images", lambda: pipe.score(x_test, y_test))
    case("uint8 pipeline, images scaled to [0, 1]: predict",
         lambda: float((pipe.predict(scaled) == y_test).mean()))
    case("uint8 pipeline, images scaled to [0, 1]: predict_proba",
         lambda: float((pipe.classes_[pipe.predict_proba(scaled).argmax(1)] == y_test).mean()))
    case("uint8 pipeline, images scaled to [0, 1]: score", lambda: pipe.score(scaled, y_test))
    case("uint8 pipeline, whole-number float images", lambda: pipe.score(x_test.astype(float), y_test))
    ints = make_pipeline(**SMALL).fit(x_train.astype(np.int64), y_train)
    case("int64 pipeline, images scaled to [0, 1]", lambda: ints.score(scaled, y_test))
    floats = make_pipeline(**SMALL).fit(x_train.astype(np.float32), y_train)
    case("float pipeline (0..255), images as floats", lambda: floats.score(x_test.astype(np.float32), y_test))
    bare = MLPClassifier(**SMALL).fit(flat(x_train) / 255.0, y_train)
    case("bare MLP on [0, 1] floats, [0, 1] floats", lambda: bare.score(flat(x_test) / 255.0, y_test))

    case("bare MLP fit, X and y of different lengths",
         lambda: MLPClassifier(**SMALL).fit(flat(x_train) / 255.0, y_train[:-10]))
    case("pipeline fit, X and y of different lengths", lambda: make_pipeline(**SMALL).fit(x_train, y_train[:-10]))
    case("bare MLP fit, empty X", lambda: MLPClassifier(**SMALL).fit(np.zeros((0, 784)), np.zeros(0)))
    case("pipeline fit, empty X", lambda: make_pipeline(**SMALL).fit(x_train[:0], y_train[:0]))
    case("bare MLP predict, 100 features for 784", lambda: bare.predict(np.zeros((2, 100))))
    case("pipeline predict, 27x27 images", lambda: pipe.predict(np.zeros((2, 27, 27), np.uint8)))
    return cases, pipe


def _post(url, body, content_type):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    text = raw.decode(errors="replace")
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {}
    return {"status": status, "bytes": len(raw), "lines in body": text.count("\\n") + text.count("\n") + 1,
            "predictions": len(answer["predictions"]) if "predictions" in answer else None,
            "body starts": text[:90]}


def served_cases(pipe, x_test, uri, tmp):
    from tests.helpers import BIN, start_http_server

    import pandas as pd

    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{pipe.run_id_}/model",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        Path(tmp) / "serve.log", "/ping", env={"MLFLOW_TRACKING_URI": uri},
    )
    cases = {}
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        rows = x_test[:5].reshape(5, -1)
        buffer = io.StringIO()
        pd.DataFrame(rows).to_csv(buffer, header=False, index=False)
        cases["CSV, 5 rows, no header"] = _post(url, buffer.getvalue().encode(), "text/csv")
        cases["CSV, 5 rows, header 0..783 (to_csv(index=False))"] = _post(
            url, pd.DataFrame(rows).to_csv(index=False).encode(), "text/csv")
        cases["CSV, 5 rows, to_csv() with its index column"] = _post(
            url, pd.DataFrame(rows).to_csv().encode(), "text/csv")
        for n in (1, 5, 64):
            payload = json.dumps({"inputs": (x_test[:n] / 255.0).tolist()}).encode()
            cases[f"JSON, {n} images scaled to [0, 1]"] = _post(url, payload, "application/json")
        for name, result in cases.items():
            print(f"{name}: {result}", flush=True)
    finally:
        server.stop()
    cases["server log has a traceback"] = "Traceback" in server.output()
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)

    from mlflow.tracking import MlflowClient

    from mnist_mlp.data import load_embedded_mnist

    (x_train, y_train), (x_test, y_test) = load_embedded_mnist()
    x_train, y_train, x_test, y_test = x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.chdir(tmp)
        client = MlflowClient(uri)
        cases, pipe = in_process_cases(x_train, y_train, x_test, y_test, client)
        cases["served"] = served_cases(pipe, x_test, uri, tmp)
    if args.out:
        Path(args.out).write_text(json.dumps(cases, indent=2) + "\n")


if __name__ == "__main__":
    main()
