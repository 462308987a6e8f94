"""The runs of three ``partial_fit`` calls and of a 2 + 2 epoch ``warm_start`` fit, with their steps.

    python benchmarks/interop_continuation.py --label after
    PYTHONPATH=<checkout of fc0cf92> python benchmarks/interop_continuation.py --label before

Fits a 16-unit network on 600 embedded images (flattened, /255) into a
temporary SQLite store, then reads back each run: its ``epochs`` param, the
steps of its ``loss`` series, its ``continued_from`` and ``continued_run_id``
tags, its ``epochs_run`` and ``weight_updates`` metrics, and the estimator's
``n_iter_`` and ``n_weight_updates_`` after the calls. Merged into
benchmarks/results/interop_continuation.json under the label.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _runs(client, since):
    rows = []
    for run in sorted(client.search_runs(["0"]), key=lambda r: r.info.start_time):
        if run.info.run_id in since:
            continue
        rows.append({
            "run": run.info.run_id[:8],
            "epochs_param": run.data.params.get("epochs"),
            "loss_steps": sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")),
            "continued_from": run.data.tags.get("continued_from"),
            "continued_run_id": (run.data.tags.get("continued_run_id") or "")[:8] or None,
            "epochs_run": run.data.metrics.get("epochs_run"),
            "weight_updates": run.data.metrics.get("weight_updates"),
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.chdir(store)
        from mlflow.tracking import MlflowClient

        from mnist_mlp import MLPClassifier, load_embedded_mnist

        (x, y), _ = load_embedded_mnist()
        X, y = (x[:600].reshape(600, -1) / 255.0).astype("float32"), y[:600]
        client = MlflowClient()
        small = dict(hidden_layer_sizes=(16,), random_state=0)
        result = {}
        partial = MLPClassifier(**small)
        for _ in range(3):
            partial.partial_fit(X, y)
        result["partial_fit x3"] = {"runs": _runs(client, set()), "n_iter_": partial.n_iter_,
                                    "n_weight_updates_": partial.n_weight_updates_}
        seen = {r.info.run_id for r in client.search_runs(["0"])}
        warm = MLPClassifier(**small, epochs=2, warm_start=True)
        warm.fit(X, y)
        warm.fit(X, y)
        result["warm_start 2+2 epochs"] = {"runs": _runs(client, seen), "n_iter_": warm.n_iter_,
                                           "n_weight_updates_": warm.n_weight_updates_}
    path = RESULTS / "interop_continuation.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[args.label] = result
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
