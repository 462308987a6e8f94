"""Hyperband over epochs: brackets, rungs that continue training, the run tree."""

from __future__ import annotations

import joblib
import numpy as np
import pytest

from mnist_mlp import HyperbandSearchCV, make_pipeline
from mnist_mlp.model_selection import TrainValidationSplit
from mnist_mlp.model_selection.hyperband import brackets_for
from tests.helpers import all_runs

GRID = {"classifier__learning_rate_init": [1e-3, 1e-2, 1e-1], "classifier__hidden_layer_sizes": [(16,), (32,)]}
# No shuffling, no dropout: a continued fit must then equal a fresh one to round-off.
PIPE = dict(shuffle=False, random_state=0, batch_size=64)


@pytest.fixture
def untracked(monkeypatch):
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")


def test_brackets_are_keras_tuners():
    # keras-tuner: s_max = floor(log_3 R); bracket s starts ceil((s_max+1)/(s+1) * 3**s) at R / 3**s epochs.
    assert brackets_for(27, 3) == {3: (27, 1), 2: (12, 3), 1: (6, 9), 0: (4, 27)}
    assert brackets_for(81, 3)[3] == (34, 3)
    assert brackets_for(2, 3) == {0: (1, 2)}


def _search(continue_training, **kwargs):
    return HyperbandSearchCV(make_pipeline(**PIPE), GRID, max_resources=9, factor=3, cv=TrainValidationSplit(0.2),
                             continue_training=continue_training, refit=False, **kwargs)


@pytest.mark.slow
def test_continued_rungs_score_as_fresh_fits_and_train_fewer_epochs(untracked, digits):
    x_train, y_train, _, _ = digits
    X, y = x_train[:1500], y_train[:1500]
    continued = _search(True, brackets=[2, 1]).fit(X, y)
    fresh = _search(False, brackets=[2, 1]).fit(X, y)
    np.testing.assert_allclose(continued.cv_results_["mean_test_score"], fresh.cv_results_["mean_test_score"],
                               atol=1e-9)
    # Bracket 2: 6 x 1 epoch, 2 x 3, 1 x 9; bracket 1: 6 x 3, 2 x 9.
    assert fresh.n_epochs_trained_ == 6 * 1 + 2 * 3 + 1 * 9 + 6 * 3 + 2 * 9 == 57
    assert continued.n_epochs_trained_ == 6 * 1 + 2 * 2 + 1 * 6 + 6 * 3 + 2 * 6 == 46
    # The plan, known before the search runs (a scheduler orders work by it), is what it trains.
    assert (fresh.planned_epochs(), continued.planned_epochs()) == (57, 46)
    results = continued.cv_results_
    assert list(results["bracket"]) == [2] * 9 + [1] * 8
    assert list(results["rung"]) == [0] * 6 + [1] * 2 + [2] + [0] * 6 + [1] * 2
    assert list(results["n_resources"]) == [1] * 6 + [3] * 2 + [9] + [3] * 6 + [9] * 2
    assert list(results["continued_from"]) == [0] * 6 + [1] * 2 + [3] + [0] * 6 + [3] * 2
    # The promoted are the rung's best: the 2 of bracket 2's rung 0 with the highest scores.
    rung0 = np.asarray(results["mean_test_score"][:6])
    promoted = [p for p in results["params"][6:8]]
    best_two = [results["params"][i] for i in np.argsort(-rung0, kind="stable")[:2]]
    assert sorted(map(repr, promoted)) == sorted(repr({**p, "classifier__epochs": 3}) for p in best_two)
    # The best is chosen among the 9-epoch fits only.
    nine = np.flatnonzero(np.asarray(results["n_resources"]) == 9)
    assert continued.best_index_ in nine
    assert continued.best_score_ == max(results["mean_test_score"][i] for i in nine)
    assert continued.best_params_["classifier__epochs"] == 9


def test_a_pickled_state_continued_equals_a_fresh_fit(untracked, digits, tmp_path):
    """What a rung does between processes: 3 epochs, pickled, loaded, 6 more = 9 epochs straight."""
    x_train, y_train, x_test, _ = digits
    X, y = x_train[:1000], y_train[:1000]
    joblib.dump(make_pipeline(**PIPE, hidden_layer_sizes=(32,), epochs=3).fit(X, y), tmp_path / "3.pkl")
    continued = joblib.load(tmp_path / "3.pkl").set_params(classifier__epochs=6, classifier__warm_start=True)
    continued.fit(X, y)
    fresh = make_pipeline(**PIPE, hidden_layer_sizes=(32,), epochs=9).fit(X, y)
    assert continued[-1].model_.optimizer.iterations.numpy() == fresh[-1].model_.optimizer.iterations.numpy()
    np.testing.assert_allclose(continued.predict_proba(x_test), fresh.predict_proba(x_test), atol=1e-5)
    for ours, theirs in zip(continued[-1].coefs_, fresh[-1].coefs_):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.slow
def test_every_rung_and_bracket_is_a_tagged_child_of_one_parent(tracked, digits):
    x_train, y_train, _, _ = digits
    search = _search(True, brackets=[1], scoring="accuracy").set_params(refit=True).fit(x_train[:1000], y_train[:1000])
    runs = all_runs(tracked)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == search.run_id_]
    assert len(runs) == 1 + len(children)
    folds = [r for r in children if r.data.tags["role"] == "fold"]
    assert len(folds) == 6 + 2 and {r.info.status for r in children} == {"FINISHED"}
    tags = sorted((r.data.tags["rung"], r.data.tags["n_resources"], r.data.tags["continued_from"],
                   r.data.params["epochs"]) for r in folds)
    assert tags == [("0", "3", "0", "3")] * 6 + [("1", "9", "3", "6")] * 2  # a continued rung trains 6 more
    assert {r.data.tags["bracket"] for r in folds} == {"1"}
    assert [r.data.tags["role"] for r in children].count("refit") == 1
    parent = tracked.get_run(search.run_id_)
    assert parent.data.params["max_resources"] == "9" and parent.data.params["brackets"] == "[1]"


@pytest.mark.parametrize("kwargs, match", [
    (dict(brackets=[5]), "brackets \\[5\\] do not exist"),
    (dict(candidates="some"), "candidates must be"),
])
def test_bad_settings_are_refused_by_name(untracked, digits, kwargs, match, tmp_path, monkeypatch):
    x_train, y_train, _, _ = digits
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the rungs' states would go
    with pytest.raises(ValueError, match=match):
        _search(True, **kwargs).fit(x_train[:300], y_train[:300])
    assert not list(tmp_path.glob("mnist_mlp_hyperband_*"))  # nothing left behind


def test_the_grid_must_not_set_the_resource(untracked, digits):
    x_train, y_train, _, _ = digits
    search = HyperbandSearchCV(make_pipeline(**PIPE), {"classifier__epochs": [1, 2]}, max_resources=3,
                               cv=TrainValidationSplit(0.2))
    with pytest.raises(ValueError, match="must not name the resource 'classifier__epochs'"):
        search.fit(x_train[:300], y_train[:300])


@pytest.mark.slow
def test_a_macro_f1_search_after_an_accuracy_search_trains_only_what_differs(tracked, digits):
    """The study's two objectives: the F1 search takes every fit the accuracy search trained, scored
    by F1 from the same predictions, and its results equal an F1 search run alone."""
    x_train, y_train, _, _ = digits
    X, y = x_train[:1000], y_train[:1000]
    by_accuracy = _search(True, brackets=[1], scoring="accuracy").fit(X, y)
    by_f1 = _search(True, brackets=[1], scoring="f1_macro").fit(X, y)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNIST_MLP_TRACKING", "0")
        alone = _search(True, brackets=[1], scoring="f1_macro").fit(X, y)
    assert by_accuracy.n_epochs_trained_ == alone.n_epochs_trained_ == 6 * 3 + 2 * 6
    np.testing.assert_allclose(by_f1.cv_results_["mean_test_score"], alone.cv_results_["mean_test_score"],
                               atol=1e-6)
    assert [repr(p) for p in by_f1.cv_results_["params"]] == [repr(p) for p in alone.cv_results_["params"]]
    # Rung 0 is all reused; a rung-1 candidate both objectives promoted is reused too, one only F1
    # promoted would be trained afresh for 9 epochs (this search never saved its 3-epoch state).
    # On these rows both promote the same two: the F1 search trains nothing.
    promoted = {repr(p) for p in by_accuracy.cv_results_["params"][6:]}
    assert {repr(p) for p in by_f1.cv_results_["params"][6:]} == promoted
    assert by_f1.n_epochs_trained_ == 0
    reused = [r for r in all_runs(tracked) if r.data.tags.get("reused_by") == by_f1.run_id_]
    assert len(reused) == 6 + 2


def _budgeted(time_budget, grid=GRID, **kwargs):
    return HyperbandSearchCV(make_pipeline(**PIPE), grid, max_resources=3, factor=3, cv=TrainValidationSplit(0.2),
                             candidates="hyperband", random_state=0, refit=False, time_budget=time_budget, **kwargs)


def test_a_spent_budget_stops_after_the_first_rung(untracked, digits):
    """A budget already spent when the first rung ends: that rung is all the search runs."""
    x_train, y_train, _, _ = digits
    search = _budgeted(1e-9).fit(x_train[:200], y_train[:200])
    # Bracket 1 of R=3 starts 3 candidates at 1 epoch; nothing after them.
    results = search.cv_results_
    assert list(results["n_resources"]) == [1] * 3 and list(results["iter"]) == [0] * 3
    assert (search.n_epochs_trained_, search.n_fits_trained_) == (3, 3)
    assert len(search.best_score_history_) == 1 and search.best_score_history_[0][1] == 3
    # No bracket reached 3 epochs: the best is among the 1-epoch fits.
    assert search.best_score_ == max(results["mean_test_score"]) and search.best_params_["classifier__epochs"] == 1
    assert search.budget_spent_s_ == pytest.approx(search.best_score_history_[-1][0], abs=0.05)


@pytest.mark.slow
def test_a_budget_runs_iterations_of_fresh_candidates_until_spent(untracked, digits):
    x_train, y_train, _, _ = digits
    X, y = x_train[:200], y_train[:200]
    once = _budgeted(None).fit(X, y)
    budget = 4.0
    search = _budgeted(budget).fit(X, y)
    elapsed = [t for t, _, _ in search.best_score_history_]
    # The clock is read before each rung: every rung but the last started within the budget, the last ended past it.
    assert elapsed[-2] < budget <= elapsed[-1] and search.budget_spent_s_ >= budget
    results = search.cv_results_
    iterations = np.asarray(results["iter"])
    assert iterations.max() >= 1  # the brackets ran again
    # The first iteration is the unbudgeted search; the next draws other candidates from the grid.
    first = iterations == 0
    assert [repr(p) for p in np.asarray(results["params"])[first]] == [repr(p) for p in once.cv_results_["params"]]
    np.testing.assert_allclose(np.asarray(results["mean_test_score"])[first], once.cv_results_["mean_test_score"])
    drawn = [{repr(p) for p, i, r in zip(results["params"], iterations, results["rung"]) if i == it and r == 0}
             for it in (0, 1)]
    assert drawn[0] != drawn[1]
    epochs = [e for _, e, _ in search.best_score_history_]
    best = [b for _, _, b in search.best_score_history_]
    assert epochs == sorted(epochs) and best == sorted(best) and epochs[-1] == search.n_epochs_trained_
    assert best[-1] == pytest.approx(np.nanmax(results["mean_test_score"]))
    top = np.flatnonzero(np.asarray(results["n_resources"]) == 3)
    assert search.best_index_ in top


def test_without_a_budget_the_search_is_unchanged(untracked, digits):
    x_train, y_train, _, _ = digits
    search = _budgeted(None).fit(x_train[:200], y_train[:200])
    assert "iter" not in search.cv_results_
    # R=3: bracket 1 (3 candidates at 1 epoch, 1 continued to 3), then bracket 0 (2 at 3).
    assert list(search.cv_results_["n_resources"]) == [1, 1, 1, 3, 3, 3]
    assert search.planned_fits() == 6 and len(search.best_score_history_) == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(time_budget=0), "time_budget"),
    (dict(time_budget=-5.0), "time_budget"),
    (dict(time_budget="15m"), "time_budget"),
    (dict(time_budget=10.0, candidates="all"), "time_budget needs candidates='hyperband'"),
])
def test_a_bad_time_budget_is_refused_by_name(untracked, digits, kwargs, match, tmp_path, monkeypatch):
    x_train, y_train, _, _ = digits
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    search = _budgeted(None).set_params(**kwargs)
    with pytest.raises(ValueError, match=match):
        search.fit(x_train[:200], y_train[:200])
    assert not list(tmp_path.glob("mnist_mlp_hyperband_*"))
