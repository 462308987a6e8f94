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


@pytest.mark.slow
def test_grid_search_n_jobs_2_is_one_parent_with_a_child_per_fit(tracked, digits):
    from mnist_mlp.tracking import dataset

    x_train, y_train, _, _ = digits
    with dataset("fashion-mnist"):  # named here, read in the worker processes
        search = GridSearchCV(
            make_pipeline(**FAST), {"classifier__learning_rate_init": [1e-3, 1e-2]}, cv=2, n_jobs=2,
        ).fit(x_train[:600], y_train[:600])
    parent, children, runs = _tree(tracked)
    assert {r.data.params.get("dataset") for r in children} == {"fashion-mnist"}
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


@pytest.mark.slow
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


def test_the_sklearn_hook_still_applies_and_fails_loudly_when_it_does_not(monkeypatch):
    """Tracked searches swap scikit-learn's per-fit function: a release that
    renames it or stops calling it by name must fail with a clear error."""
    from sklearn.model_selection import _search

    from mnist_mlp import sklearn_internals

    sklearn_internals.check()  # this scikit-learn: the hook applies
    monkeypatch.delattr(_search, "_fit_and_score")
    with pytest.raises(sklearn_internals.SklearnChangedError, match=r"scikit-learn \d.*_fit_and_score is gone"):
        sklearn_internals.check()
    with pytest.raises(sklearn_internals.SklearnChangedError):
        with sklearn_internals.fit_and_score_replaced(lambda *a, **k: None):
            pass


def test_tracking_settings_are_parameters_a_clone_keeps():
    from sklearn.base import clone

    from mnist_mlp import HalvingGridSearchCV as Halving

    for cls in (GridSearchCV, Halving):
        search = cls(make_pipeline(epochs=1), {"classifier__alpha": [1e-4]}, experiment_name="exp",
                     run_name="name", run_tags={"k": "v"}, tracking_uri="sqlite:///x.db", resume=False)
        params = clone(search).get_params(deep=False)
        assert {k: params[k] for k in ("experiment_name", "run_name", "run_tags", "tracking_uri", "resume")} == {
            "experiment_name": "exp", "run_name": "name", "run_tags": {"k": "v"},
            "tracking_uri": "sqlite:///x.db", "resume": False}
        assert "param_grid" in params and "cv" in params  # scikit-learn's own, untouched


def test_a_search_files_its_parent_where_its_parameters_say(tmp_path, monkeypatch, digits):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    x_train, y_train, _, _ = digits
    uri = f"sqlite:///{tmp_path}/elsewhere.db"
    search = GridSearchCV(make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0),
                          {"classifier__alpha": [1e-4]}, cv=2, experiment_name="searches here",
                          run_name="my search", tracking_uri=uri).fit(x_train[:200], y_train[:200])
    client = MlflowClient(uri)
    parent = client.get_run(search.run_id_)
    assert parent.info.run_name == "my search"
    assert client.get_experiment(parent.info.experiment_id).name == "searches here"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{search.run_id_}'")
    assert len(children) == 3  # 2 folds and the refit, in the same store


def test_the_sklearn_hook_sees_when_search_fit_stops_calling_it(monkeypatch):
    from sklearn.model_selection import _search

    from mnist_mlp import sklearn_internals

    def fit(self, X, y=None, **params):  # a future BaseSearchCV.fit that never names it
        return self

    monkeypatch.setattr(_search.BaseSearchCV, "fit", fit)
    with pytest.raises(sklearn_internals.SklearnChangedError, match="no longer calls _fit_and_score"):
        sklearn_internals.check()
