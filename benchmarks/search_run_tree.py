"""The MLflow run tree of a 2-candidate x 2-fold GridSearchCV with n_jobs=2, or of a Hyperband search.

    python benchmarks/search_run_tree.py
    python benchmarks/search_run_tree.py --hyperband   # 4 candidates, all 3 brackets of R = 9 epochs

Runs the search on 1,200 embedded images into a temporary SQLite store and
writes the tree (names, statuses, tags, metrics and artifacts of each run)
to benchmarks/results/search_run_tree.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def describe(client, run):
    tags = {k: v for k, v in run.data.tags.items()
            if k in ("role", "candidate", "fold", "best_candidate", "diverged", "bracket", "rung", "n_resources",
                     "continued_from")}
    if "epochs" in run.data.params:
        tags["epochs param"] = run.data.params["epochs"]
    metrics = sorted(run.data.metrics)
    artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    return (f"{run.info.run_name} [{run.info.status}] tags={tags} "
            f"params={len(run.data.params)} metrics={metrics} artifacts={artifacts}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hyperband", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as store:
        uri = f"sqlite:///{store}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        from mlflow.tracking import MlflowClient

        from mnist_mlp import GridSearchCV, HyperbandSearchCV, load_embedded_mnist, make_pipeline
        from mnist_mlp.model_selection import TrainValidationSplit

        (x_train, y_train), _ = load_embedded_mnist()
        start = time.perf_counter()
        if args.hyperband:
            title = "HyperbandSearchCV(4 candidates, max_resources=9, factor=3, brackets 2, 1, 0)"
            search = HyperbandSearchCV(
                make_pipeline(random_state=0),
                {"classifier__learning_rate_init": [1e-3, 1e-2], "classifier__hidden_layer_sizes": [(32,), (64,)]},
                max_resources=9, cv=TrainValidationSplit(0.2),
            ).fit(x_train[:1200], y_train[:1200])
        else:
            title = "GridSearchCV(2 candidates x 2 folds, n_jobs=2)"
            search = GridSearchCV(
                make_pipeline(epochs=3, random_state=0),
                {"classifier__learning_rate_init": [1e-3, 1e-2]}, cv=2, n_jobs=2,
            ).fit(x_train[:1200], y_train[:1200])
        wall = time.perf_counter() - start
        client = MlflowClient(uri)
        parent = client.get_run(search.run_id_)
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
            order_by=["attributes.start_time"],
        )
        lines = [f"# Run tree of {title}, {wall:.1f} s", "",
                 "```", describe(client, parent)]
        lines += [f"  └─ {describe(client, child)}" for child in children]
        lines += ["```", "", f"best_run_id tag -> {parent.data.tags['best_run_id']}",
                  f"refit run id     -> {[c.info.run_id for c in children if c.data.tags.get('role') == 'refit']}"]
        if args.hyperband:
            lines += [f"epochs trained   -> {search.n_epochs_trained_}"]
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("search_run_tree_hyperband.md" if args.hyperband else "search_run_tree.md")).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
