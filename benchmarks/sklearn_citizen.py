"""Every kind of ``y`` and ``X`` scikit-learn's classifiers accept, fitted with tracking on.

For each kind: fit an ``MLPClassifier`` (tracking on, into a fresh SQLite
store), predict, then read the run back: its status, its model's signature,
and whether the logged model (loaded with ``mlflow.pyfunc``) answers the same
labels as the estimator. Then scikit-learn's own ``GridSearchCV(n_jobs=2)``
inside an active run: the run tree.

Usage: python benchmarks/sklearn_citizen.py [--out benchmarks/results/sklearn_citizen]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _kinds():
    import pandas as pd
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    frame = load_iris(as_frame=True).data
    ys = {
        "int64 ndarray": y,
        "str ndarray (<U10)": names[y],
        "object ndarray of str": names[y].astype(object),
        "bool ndarray (2 classes)": y > 0,
        "ints with gaps and negatives": np.array([-5, 3, 40])[y],
        "list of str": names[y].tolist(),
        "pandas Series, object": pd.Series(names[y].astype(object)),
        "pandas Series, string dtype": pd.Series(names[y], dtype="string"),
        "pandas Series, categorical": pd.Series(pd.Categorical(names[y])),
    }
    xs = {
        "float64 ndarray": X,
        "float32 ndarray": X.astype(np.float32),
        "pandas DataFrame (named columns)": frame,
        "list of lists": X.tolist(),
    }
    return [("y: " + k, X, v) for k, v in ys.items()] + [("X: " + k, v, y) for k, v in xs.items()]


def _one(kind, X, y):
    import mlflow
    from mlflow.tracking import MlflowClient

    from mnist_mlp import MLPClassifier

    row = {"kind": kind}
    try:
        clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, batch_size=32, random_state=0).fit(X, y)
        predicted = clf.predict(X[:10] if not hasattr(X, "iloc") else X.iloc[:10])
        run = MlflowClient().get_run(clf.run_id_)
        served = mlflow.pyfunc.load_model(f"runs:/{clf.run_id_}/model")
        signature = served.metadata.signature
        answer = served.predict(X[:10] if not hasattr(X, "iloc") else X.iloc[:10])
        row.update(
            fit="ok", predict=f"ok ({np.asarray(predicted).dtype}, e.g. {np.asarray(predicted)[0]!r})",
            run_status=run.info.status,
            classes=[str(c) for c in clf.classes_],
            signature_inputs=None if signature.inputs is None else str(signature.inputs),
            signature_outputs=str(signature.outputs),
            logged_model_agrees=bool(np.array_equal(np.asarray(answer).astype(str),
                                                    np.asarray(predicted).astype(str))),
        )
    except Exception as exc:  # noqa: BLE001 - the table reports it
        row.update(fit=f"error: {type(exc).__name__}: {exc}"[:200])
    return row


def _search_tree():
    import mlflow
    from mlflow.tracking import MlflowClient
    from sklearn.model_selection import GridSearchCV

    from mnist_mlp import load_mnist, make_pipeline

    (x, y), _ = load_mnist()
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=2, random_state=0)
    before = {r.info.run_id for r in MlflowClient().search_runs(["0"], max_results=1000)}
    start = time.perf_counter()
    with mlflow.start_run(run_name="user run") as parent:
        GridSearchCV(pipe, {"classifier__learning_rate_init": [1e-3, 1e-2]}, cv=2, n_jobs=2).fit(x[:600], y[:600])
    wall = time.perf_counter() - start
    runs = [r for r in MlflowClient().search_runs(["0"], max_results=1000) if r.info.run_id not in before]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    others = [r for r in runs if r.info.run_id != parent.info.run_id and r not in children]
    return {
        "search": "sklearn.model_selection.GridSearchCV(make_pipeline(...), 2 candidates, cv=2, n_jobs=2) "
                  "inside mlflow.start_run()",
        "children": len(children),
        "children_fitted_in_worker_processes": sum(r.data.tags.get("launched_in") == "worker process"
                                                   for r in children),
        "children_statuses": sorted({r.info.status for r in children}),
        "runs_the_search_made_outside_the_users_run": len(others),
        "wall_time_s": round(wall, 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sklearn_citizen")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()  # before the chdir below
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        os.chdir(tmp)
        rows = [_one(*kind) for kind in _kinds()]
        tree = _search_tree()
    result = {"kinds": rows, "sklearn_search_in_active_run": tree, "python": sys.version.split()[0]}
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| kind | fit | predict | run | model signature (inputs -> outputs) | logged model agrees |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['fit']} | {r.get('predict', '')} | {r.get('run_status', '')} | "
                     f"{r.get('signature_inputs') or 'contract only'} -> {r.get('signature_outputs', '')} | "
                     f"{r.get('logged_model_agrees', '')} |")
    lines += ["", "scikit-learn's own search inside an active run:", "",
              *(f"- {k}: {v}" for k, v in tree.items())]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
