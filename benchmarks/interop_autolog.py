"""Runs and models that MLflow's autologging and the package make together, per kind of fit.

    python benchmarks/interop_autolog.py --label after
    PYTHONPATH=<checkout of fc0cf92> python benchmarks/interop_autolog.py --label before

For ``mlflow.sklearn.autolog()`` and ``mlflow.autolog()``, each of four fits
runs in a fresh process (autologging is process-wide) into a fresh SQLite
store, on 600 embedded images, 2 epochs:

- ``pipeline fit``: ``make_pipeline(...).fit`` (tracked; the compiled loop);
- ``compiled-loop fit``: a bare ``MLPClassifier(...).fit``;
- ``fallback fit``: the same with ``sample_weight`` (``keras.Model.fit``);
- ``GridSearchCV``: scikit-learn's own, 2 candidates x cv=2, over the pipeline.

Counted: runs, logged models, junk runs (a run of scikeras's internal
label-encoder pipeline: params ``onehotencoder...``), and the error if the
fit crashed. Whether TensorBoard is installed is recorded; run it once with
and once without (``pip install tensorboard`` / ``pip uninstall tensorboard``).
Results are merged into benchmarks/results/interop_autolog.json under
``<label>, tensorboard <installed|absent>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

_FIT = textwrap.dedent("""
    import json, os, sys
    import numpy as np, mlflow
    mode, scenario = sys.argv[1:3]
    (mlflow.autolog if mode == "mlflow.autolog()" else mlflow.sklearn.autolog)(silent=True)
    from mlflow.tracking import MlflowClient
    from sklearn.model_selection import GridSearchCV
    from mnist_mlp import MLPClassifier, load_embedded_mnist, make_pipeline
    (x, y), _ = load_embedded_mnist()
    x, y = x[:600], y[:600]
    flat = (x.reshape(600, -1) / 255.0).astype("float32")
    small = dict(hidden_layer_sizes=(16,), epochs=2, random_state=0)
    error = None
    try:
        if scenario == "pipeline fit":
            make_pipeline(**small).fit(x, y)
        elif scenario == "compiled-loop fit":
            MLPClassifier(**small).fit(flat, y)
        elif scenario == "fallback fit":
            MLPClassifier(**small).fit(flat, y, sample_weight=np.ones(600))
        else:
            GridSearchCV(make_pipeline(**small), {"classifier__alpha": [1e-4, 1e-3]}, cv=2).fit(x, y)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    client = MlflowClient()
    runs = client.search_runs(["0"])
    junk = [r for r in runs if any(k.startswith("onehotencoder") for k in r.data.params)]
    models = client.search_logged_models(["0"], max_results=1000)
    print(json.dumps({"runs": len(runs), "junk_runs": len(junk), "logged_models": len(models), "error": error}))
""")

MODES = ["mlflow.sklearn.autolog()", "mlflow.autolog()"]
SCENARIOS = ["pipeline fit", "compiled-loop fit", "fallback fit", "GridSearchCV"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="before or after")
    args = parser.parse_args(argv)
    tensorboard = "installed" if importlib.util.find_spec("tensorboard") else "absent"
    table = {}
    for mode in MODES:
        for scenario in SCENARIOS:
            with tempfile.TemporaryDirectory() as store:
                env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
                env.pop("MNIST_MLP_TRACKING", None)
                done = subprocess.run([sys.executable, "-c", _FIT, mode, scenario], cwd=store, env=env,
                                      capture_output=True, text=True, timeout=900)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"error": done.stderr.strip()[-300:]}
            table.setdefault(mode, {})[scenario] = row
            print(f"{mode:26} {scenario:18} {row}", flush=True)
    path = RESULTS / "interop_autolog.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[f"{args.label}, tensorboard {tensorboard}"] = table
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
