"""Tracked searches: one parent run, a child per fit, the best child named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV as SklearnGridSearchCV

from mnist_mlp import GridSearchCV, HalvingGridSearchCV, make_pipeline
from tests.helpers import all_runs, artifact_paths

FAST = dict(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)


def _tree(client):
    runs = all_runs(client)
    (parent,) = [r for r in runs if r.data.tags.get("role") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children, runs


def test_grid_search_n_jobs_2_is_one_parent_with_a_child_per_fit(tracked, digits):
    x_train, y_train, _, _ = digits
    search = GridSearchCV(
        make_pipeline(**FAST), {"classifier__learning_rate_init": [1e-3, 1e-2]}, cv=2, n_jobs=2,
    ).fit(x_train[:600], y_train[:600])
    parent, children, runs = _tree(tracked)
    assert len(runs) == 1 + 4 + 1  # parent, 2 candidates x 2 folds, refit
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert search.run_id_ == parent.info.run_id
    folds = sorted((int(r.data.tags["candidate"]), int(r.data.tags["fold"]))
                   for r in children if r.data.tags["role"] == "fold")
    assert folds == [(0, 0), (0, 1), (1, 0), (1, 1)]
    (refit,) = [r for r in children if r.data.tags["role"] == "refit"]
    assert parent.data.tags["best_run_id"] == refit.info.run_id
    assert parent.data.tags["best_candidate"] == str(search.best_index_)
    assert parent.data.metrics["best_score"] == pytest.approx(search.best_score_)
    assert float(parent.data.params["best.classifier__learning_rate_init"]) == \
        search.best_params_["classifier__learning_rate_init"]
    assert "model" in artifact_paths(tracked, refit.info.run_id)
    for child in children:
        if child.data.tags["role"] == "fold":
            assert "model" not in artifact_paths(tracked, child.info.run_id)
            assert "learning_curves.png" in artifact_paths(tracked, child.info.run_id)
            assert float(child.data.params["learning_rate"]) in (1e-3, 1e-2)
    cv_csv = tracked.download_artifacts(parent.info.run_id, "cv_results.csv")
    table = pd.read_csv(cv_csv)
    assert len(table) == 2
    np.testing.assert_allclose(table["mean_test_score"], search.cv_results_["mean_test_score"])


def test_halving_children_carry_iteration_and_resources(tracked, digits):
    x_train, y_train, _, _ = digits
    search = HalvingGridSearchCV(
        make_pipeline(**FAST), {"classifier__learning_rate_init": [1e-3, 1e-2, 1e-1]},
        cv=2, factor=3, min_resources=300, random_state=0,
    ).fit(x_train[:900], y_train[:900])
    parent, children, _ = _tree(tracked)
    folds = [r for r in children if r.data.tags["role"] == "fold"]
    assert len(folds) == 2 * (3 + 1)
    by_candidate = {int(r.data.tags["candidate"]): r.data.tags for r in folds}
    assert sorted(by_candidate) == [0, 1, 2, 3]  # rows of cv_results_
    assert [by_candidate[i]["iteration"] for i in range(4)] == ["0", "0", "0", "1"]
    assert [by_candidate[i]["n_resources"] for i in range(4)] == ["300", "300", "300", "900"]
    np.testing.assert_array_equal(search.cv_results_["n_resources"], [300, 300, 300, 900])
    assert parent.data.params["factor"] == "3"


def test_untracked_search_matches_scikit_learn(digits, monkeypatch):
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    x_train, y_train, _, _ = digits
    grid = {"classifier__learning_rate_init": [1e-3, 1e-2]}
    ours = GridSearchCV(make_pipeline(**FAST), grid, cv=2).fit(x_train[:400], y_train[:400])
    theirs = SklearnGridSearchCV(make_pipeline(**FAST), grid, cv=2).fit(x_train[:400], y_train[:400])
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"])
    assert not hasattr(ours, "run_id_")


def test_a_failing_candidate_is_a_failed_child_and_the_search_goes_on(tracked, digits):
    x_train, y_train, _, _ = digits
    search = GridSearchCV(
        make_pipeline(**FAST), {"classifier__optimizer": ["adam", "no-such-optimizer"]}, cv=2,
        error_score=np.nan,
    )
    with pytest.warns(FitFailedWarning, match="2 fits failed"):
        search.fit(x_train[:300], y_train[:300])
    parent, children, _ = _tree(tracked)
    # The bad candidate fails its parameter check before any run is opened.
    statuses = sorted((r.data.tags.get("candidate", "refit"), r.info.status) for r in children)
    assert statuses == [("0", "FINISHED"), ("0", "FINISHED"), ("refit", "FINISHED")]
    assert parent.info.status == "FINISHED"
    assert np.isnan(search.cv_results_["mean_test_score"][1])


def test_a_fit_crashing_mid_training_is_a_failed_child(tracked, digits):
    from mnist_mlp._tensorflow import keras

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("crash in training")

    x_train, y_train, _, _ = digits
    search = GridSearchCV(
        make_pipeline(**FAST), {"classifier__callbacks": [None, [Crash()]]}, cv=2,
    )
    with pytest.warns(FitFailedWarning):
        search.fit(x_train[:300], y_train[:300])
    _, children, _ = _tree(tracked)
    failed = [r for r in children if r.info.status == "FAILED"]
    assert sorted(r.data.tags["candidate"] for r in failed) == ["1", "1"]
    assert all("crash in training" in r.data.tags["error"] for r in failed)
