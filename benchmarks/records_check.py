"""Whether a fit's MLflow records tell it apart from other fits (issue 29, item 5).

    python benchmarks/records_check.py

Into a temporary SQLite store, on 400 embedded images with 2-epoch fits:

- scikit-learn's own ``HalvingRandomSearchCV`` (6 candidates, 2 folds) and this
  package's ``HalvingGridSearchCV`` and ``HyperbandSearchCV``: how many fold runs'
  ``candidate`` tag points at a ``cv_results_`` row with other parameters than
  the fit's, and whether a tag names the round;
- a fit with ``class_weight`` and one with ``sample_weight`` beside an
  unweighted one: whether the weights show in params, tags and run names;
- the MLflow context tags (``mlflow.user``, ``mlflow.source.*``) on a run;
- ``mlflow.last_active_run()`` after a fit.

Prints one line per finding.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import numpy as np


def _fold_runs(client, experiment_ids, parent_id=None):
    runs = client.search_runs(experiment_ids, max_results=5000)
    if parent_id is not None:
        runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    return [r for r in runs if r.data.tags.get("role") == "fold"]


def _logged_settings(run, params):
    """The search's parameters as the fit's run logged them (alpha and learning rate)."""
    logged = {}
    for key, value in params.items():
        name = {"learning_rate_init": "learning_rate"}.get(key.rsplit("__", 1)[-1], key.rsplit("__", 1)[-1])
        if name in run.data.params:
            logged[key] = float(run.data.params[name])
    return logged


def _mismatches(search, folds, label):
    rows = search.cv_results_["params"]
    wrong = 0
    for run in folds:
        candidate = run.data.tags.get("candidate")
        if candidate is None or int(candidate) >= len(rows):
            wrong += 1
            continue
        row = rows[int(candidate)]
        # The settings that vary between candidates (a rung's epochs is its budget, not the candidate).
        compared = {k: float(v) for k, v in row.items() if k in ("alpha", "learning_rate_init")}
        if compared != _logged_settings(run, compared):
            wrong += 1
    # The round: a halving search's iteration, a Hyperband search's bracket and rung.
    rounds = sorted({run.data.tags.get("iteration") or "/".join(run.data.tags[k] for k in ("bracket", "rung")
                                                                 if k in run.data.tags) or "-" for run in folds})
    print(f"{label}: {wrong} of {len(folds)} fold runs' candidate tag points at a cv_results_ row "
          f"with other parameters; round tag values: {rounds}")


def main():
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.environ.pop("MNIST_MLP_TRACKING", None)
        import mlflow
        from mlflow.tracking import MlflowClient
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingRandomSearchCV

        from mnist_mlp import HalvingGridSearchCV, HyperbandSearchCV, MLPClassifier, load_embedded_mnist
        from mnist_mlp.model_selection import TrainValidationSplit

        client = MlflowClient(uri)
        (x, y), _ = load_embedded_mnist()
        X = (x[:400].reshape(400, -1) / 255.0).astype(np.float32)
        y = y[:400]
        fast = dict(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)
        space = {"alpha": [1e-4, 1e-3, 1e-2], "learning_rate_init": [1e-3, 1e-2], "penalty": ["l2"]}
        warnings.simplefilter("ignore")  # scikit-learn's halving warns about few samples per class

        with mlflow.start_run() as user:
            sk = HalvingRandomSearchCV(MLPClassifier(**fast), space, n_candidates=6, factor=2, cv=2,
                                       min_resources=100, random_state=0).fit(X, y)
        _mismatches(sk, _fold_runs(client, ["0"], user.info.run_id), "sklearn HalvingRandomSearchCV")

        ours = HalvingGridSearchCV(MLPClassifier(**fast), space, factor=2, cv=2, min_resources=100,
                                   experiment_name="halving").fit(X, y)
        exp = client.get_experiment_by_name("halving").experiment_id
        _mismatches(ours, _fold_runs(client, [exp], ours.run_id_), "mnist_mlp HalvingGridSearchCV")

        band = HyperbandSearchCV(MLPClassifier(**{**fast, "epochs": 1}), {k: v for k, v in space.items()},
                                 resource="epochs", max_resources=4, factor=2, cv=TrainValidationSplit(0.25),
                                 experiment_name="hyperband").fit(X, y)
        exp = client.get_experiment_by_name("hyperband").experiment_id
        _mismatches(band, _fold_runs(client, [exp], band.run_id_), "mnist_mlp HyperbandSearchCV")

        mlflow.set_experiment("weights")
        plain = MLPClassifier(**fast).fit(X, y)
        balanced = MLPClassifier(**fast, class_weight="balanced").fit(X, y)
        weights = np.where(y == 0, 5.0, 1.0)
        weighted = MLPClassifier(**fast).fit(X, y, sample_weight=weights)
        after_fit = mlflow.last_active_run()
        for label, clf in (("unweighted", plain), ("class_weight='balanced'", balanced),
                           ("sample_weight", weighted)):
            run = client.get_run(clf.run_id_)
            shown = {k: v for k, v in {**run.data.params, **run.data.tags}.items() if "weight" in k}
            print(f"{label}: name={run.info.run_name!r}; weight params/tags={json.dumps(shown, sort_keys=True)}")
        def record(clf):  # what tells a fit apart: its params, weight tags and name
            run = client.get_run(clf.run_id_)
            return run.data.params, {k: v for k, v in run.data.tags.items() if "weight" in k}, run.info.run_name

        print(f"unweighted and sample-weighted fits log identical params, weight tags and names: "
              f"{record(plain) == record(weighted)}")
        tags = client.get_run(weighted.run_id_).data.tags
        context = {k: tags[k] for k in ("mlflow.user", "mlflow.source.name", "mlflow.source.type",
                                        "mlflow.source.git.commit") if k in tags}
        print(f"MLflow context tags on a fit's run: {json.dumps(context) if context else 'none'}")
        print(f"mlflow.last_active_run() after a fit: "
              f"{after_fit.info.run_id if after_fit else None} (the fit's run: {weighted.run_id_})")
        _time_context_tags(uri, weighted.run_id_)


def _time_context_tags(uri, run_id):
    """What the context tags and last_active_run cost a fit: once per process, then each fit."""
    import time

    from mnist_mlp.tracking import store

    resolve = getattr(store, "mlflow_context_tags", None)
    if resolve is None:  # before the change
        return
    resolve.cache_clear()
    start = time.perf_counter()
    resolve()
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(100):
        resolve()
        store.remember_last_active_run(run_id, uri)
    print(f"context tags: {first * 1000:.1f} ms once per process, then {(time.perf_counter() - start) * 10:.3f} ms "
          "per fit with last_active_run")


if __name__ == "__main__":
    main()
