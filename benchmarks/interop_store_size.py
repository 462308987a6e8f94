"""How much a tracking store holds after a study section and after a plain scikit-learn search.

    python benchmarks/interop_store_size.py --label after
    PYTHONPATH=<checkout of fc0cf92> python benchmarks/interop_store_size.py --label before

Each scenario runs in a fresh process, in a fresh folder, into a fresh SQLite
store (``mlflow.db``, artifacts under ``mlruns/``):

- ``study 2.4.1``: ``python -m mnist_mlp study 2.4.1 --epochs 3 --n-train 3000``
  (the embedded subset: its first 3,000 training images);
- ``plain GridSearchCV``: scikit-learn's own ``GridSearchCV(cv=3)`` of 2
  candidates (``classifier__alpha``) over ``make_pipeline(epochs=3)`` (the
  default 128-256 network), 3,000 embedded images, inside a user's
  ``mlflow.start_run()``.

Records the bytes of ``mlflow.db`` and of the artifacts, the runs, and the
saved models (``model.pkl`` / ``model.skops`` files). Merged into
benchmarks/results/interop_store_size.json under the label.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

_GRID = textwrap.dedent("""
    import mlflow
    from sklearn.model_selection import GridSearchCV
    from mnist_mlp import load_embedded_mnist, make_pipeline
    (x, y), _ = load_embedded_mnist()
    with mlflow.start_run(run_name="user's run"):
        GridSearchCV(make_pipeline(epochs=3, random_state=0), {"classifier__alpha": [1e-4, 1e-3]},
                     cv=3).fit(x[:3000], y[:3000])
""")

SCENARIOS = {
    "study 2.4.1 --epochs 3 --n-train 3000": ["-m", "mnist_mlp", "study", "2.4.1", "--epochs", "3",
                                              "--n-train", "3000", "--data-dir", ""],
    "plain GridSearchCV(cv=3), 2 candidates": ["-c", _GRID],
}


def _size(folder):
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    args = parser.parse_args(argv)
    table = {}
    for name, command in SCENARIOS.items():
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
            env.pop("MNIST_MLP_TRACKING", None)
            env.pop("MNIST_MLP_DATA_DIR", None)
            done = subprocess.run([sys.executable, *command], cwd=folder, env=env, capture_output=True, text=True,
                                  timeout=3000)
            if done.returncode != 0:
                table[name] = {"error": done.stderr.strip()[-500:]}
                continue
            db = Path(folder, "mlflow.db").stat().st_size
            artifact_bytes, files = _size(Path(folder, "mlruns"))
            from mlflow.tracking import MlflowClient

            client = MlflowClient(env["MLFLOW_TRACKING_URI"])
            experiments = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(experiments, max_results=5000)
            table[name] = {
                "mlflow_db_bytes": db, "artifact_bytes": artifact_bytes, "total_mb": round((db + artifact_bytes) / 2**20, 2),
                "runs": len(runs),
                "saved_models": sum(1 for p in files if p.name in ("model.pkl", "model.skops")),
            }
        print(f"{name:40} {table[name]}", flush=True)
    path = RESULTS / "interop_store_size.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.label] = table
    path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
