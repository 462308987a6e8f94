"""What a fit logs when it continues a network, and which fits log a model."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
from joblib import parallel_backend
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, cross_validate

from mnist_mlp import MLPClassifier, make_pipeline

FAST = dict(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)


def _steps(client, run_id, key="loss"):
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def _n_models(client, run_id):
    return len(client.search_logged_models(["0"], filter_string=f"source_run_id='{run_id}'"))


def test_warm_start_fits_continue_the_record(tracked, flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST, warm_start=True).fit(X[:400], y[:400])
    first = clf.run_id_
    clf.fit(X[:400], y[:400])
    assert clf.n_iter_ == 4 and len(clf.history_["loss"]) == 4
    assert clf.n_weight_updates_ == int(clf.model_.optimizer.iterations.numpy()) == 4 * 5  # 320 rows / 64
    second = tracked.get_run(clf.run_id_)
    assert second.data.tags["continued_from"] == "2" and second.data.tags["continued_run_id"] == first
    assert _steps(tracked, first) == [0, 1] and _steps(tracked, clf.run_id_) == [2, 3]
    assert second.data.metrics["epochs_run"] == 4 and second.data.metrics["weight_updates"] == 20
    assert "continued_from" not in tracked.get_run(first).data.tags


def test_each_partial_fit_is_a_run_continuing_the_last(tracked, flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST)
    run_ids = [clf.partial_fit(X[:400], y[:400]).run_id_ for _ in range(3)]
    assert clf.n_iter_ == 3 and clf.n_weight_updates_ == 15
    assert [_steps(tracked, r) for r in run_ids] == [[0], [1], [2]]
    runs = [tracked.get_run(r) for r in run_ids]
    assert [r.data.tags.get("continued_run_id") for r in runs] == [None, *run_ids[:2]]
    assert [r.data.params["epochs"] for r in runs] == ["1"] * 3  # what each call trained
    assert [r.data.metrics["epochs_run"] for r in runs] == [1, 2, 3]


def test_partial_fit_takes_classes_missing_from_the_first_batch(tracked, flat_digits):
    X, y, X_test, _ = flat_digits
    clf = MLPClassifier(**FAST, tracking=False)
    first = np.isin(y, [0, 1])
    clf.partial_fit(X[first][:200], y[first][:200], classes=np.arange(10))
    clf.partial_fit(X[:400], y[:400])
    assert list(clf.classes_) == list(range(10)) and clf.predict_proba(X_test).shape[1] == 10


@pytest.fixture
def user_run(tracked):
    with mlflow.start_run() as run:
        yield run


@pytest.mark.slow
def test_a_plain_grid_search_logs_metrics_for_folds_and_a_model_for_the_refit(tracked, user_run, digits):
    x, y, _, _ = digits
    search = GridSearchCV(make_pipeline(**FAST), {"classifier__alpha": [1e-4, 1e-2]}, cv=2).fit(x[:400], y[:400])
    children = tracked.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{user_run.info.run_id}'")
    folds = [r for r in children if r.data.tags.get("role") == "fold"]
    (refit,) = [r for r in children if r.data.tags.get("role") == "refit"]
    assert len(folds) == 4 and refit.data.tags["refit"] == "true"
    assert refit.info.run_id == search.best_estimator_.run_id_ and _n_models(tracked, refit.info.run_id) == 1
    assert sorted((r.data.tags["candidate"], r.data.tags["fold"], r.data.tags["candidate_params"]) for r in folds) == [
        ("0", "0", '{"classifier__alpha": 0.0001}'), ("0", "1", '{"classifier__alpha": 0.0001}'),
        ("1", "0", '{"classifier__alpha": 0.01}'), ("1", "1", '{"classifier__alpha": 0.01}')]
    assert all(_n_models(tracked, r.info.run_id) == 0 for r in folds)
    assert all("loss" in r.data.metrics for r in folds)  # metrics are still there


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_a_plain_halving_search_tags_each_fold_with_its_cv_results_row_and_round(tracked, user_run, flat_digits,
                                                                                 backend):
    # Rounds 0 and 1 each number their candidates from 0: the tag must add the earlier rounds'.
    # In a thread of its own, a fit reads the rounds from the search scikit-learn hands it.
    X, y, _, _ = flat_digits
    with parallel_backend(backend, n_jobs=1 if backend == "sequential" else 2):
        search = HalvingGridSearchCV(MLPClassifier(**FAST, penalty="l2"), {"alpha": [1e-4, 1e-3, 1e-2]},
                                     factor=2, cv=2, min_resources=150, random_state=0).fit(X[:400], y[:400])
    children = tracked.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{user_run.info.run_id}'")
    folds = [r.data.tags for r in children if r.data.tags.get("role") == "fold"]
    rows = search.cv_results_
    assert len(folds) == 2 * len(rows["params"]) == 10 and list(rows["iter"]) == [0, 0, 0, 1, 1]
    assert sorted((int(t["candidate"]), int(t["fold"])) for t in folds) == [(i, f) for i in range(5) for f in (0, 1)]
    for tags in folds:
        row = int(tags["candidate"])
        assert tags["candidate_params"] == json.dumps(rows["params"][row], sort_keys=True)
        assert tags["iteration"] == str(rows["iter"][row])


@pytest.mark.slow
def test_weighted_fits_say_so_in_their_params_tags_and_names(tracked, flat_digits, digits):
    X, y, _, _ = flat_digits
    plain = tracked.get_run(MLPClassifier(**FAST).fit(X[:300], y[:300]).run_id_)
    balanced = tracked.get_run(MLPClassifier(**FAST, class_weight="balanced").fit(X[:300], y[:300]).run_id_)
    per_class = tracked.get_run(MLPClassifier(**FAST, class_weight={0: 5.0}).fit(X[:300], y[:300]).run_id_)
    weights = np.where(y[:300] == 0, 5.0, 1.0)
    weighted = tracked.get_run(MLPClassifier(**FAST).fit(X[:300], y[:300], sample_weight=weights).run_id_)
    x, labels, _, _ = digits
    piped = tracked.get_run(make_pipeline(**FAST).fit(x[:300], labels[:300], classifier__sample_weight=weights).run_id_)
    assert [r.data.params["class_weight"] for r in (plain, balanced, per_class)] == ["null", "balanced", '{"0": 5.0}']
    names = [r.info.run_name for r in (plain, balanced, per_class, weighted, piped)]
    assert names[0] == "MLP 16 adam lr=0.001 batch=64 epochs=2 seed=0"
    assert names[1:] == [names[0].replace(" batch", f" {mark} batch") for mark in (
        "class_weight=balanced", "class_weight=dict", "sample_weighted", "sample_weighted")]
    summary = weighted.data.tags["sample_weight"]
    assert summary.startswith(f"n=300 min=1 max=5 mean={weights.mean():.4g} digest=")
    assert piped.data.tags["sample_weight"] == summary and "sample_weight" not in plain.data.tags
    assert "sample_weighted" in piped.data.tags["mlflow.note.content"]


def test_log_models_true_logs_every_fold_and_false_none(tracked, user_run, flat_digits):
    X, y, _, _ = flat_digits
    cross_validate(MLPClassifier(**FAST, log_models=True), X[:300], y[:300], cv=2)
    MLPClassifier(**FAST, log_models=False).fit(X[:300], y[:300])
    runs = tracked.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{user_run.info.run_id}'")
    folds = [r for r in runs if r.data.tags.get("role") == "fold"]
    (standalone,) = [r for r in runs if "role" not in r.data.tags]
    assert len(folds) == 2 and all(_n_models(tracked, r.info.run_id) == 1 for r in folds)
    assert _n_models(tracked, standalone.info.run_id) == 0


def test_log_models_is_validated_by_name(flat_digits):
    X, y, _, _ = flat_digits
    with pytest.raises(ValueError, match="log_models"):
        MLPClassifier(**FAST, log_models="refit", tracking=False).fit(X[:100], y[:100])
