"""Companion scores: a fit scored by accuracy and macro F1 beside its search's objective."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, get_scorer

from mnist_mlp.model_selection.companion_scores import CompanionScorer


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int) + (X[:, 1] > 1)
    return LogisticRegression().fit(X, y), X, y


def test_the_objective_is_returned_and_the_companions_kept_from_the_same_predictions(fitted):
    model, X, y = fitted
    scorer = CompanionScorer(get_scorer("balanced_accuracy"))
    score = scorer(model, X, y)
    pred = model.predict(X)
    assert score == pytest.approx(get_scorer("balanced_accuracy")(model, X, y))
    assert scorer.scores == [{"accuracy": pytest.approx(accuracy_score(y, pred)),
                              "f1_macro": pytest.approx(f1_score(y, pred, average="macro"))}]


def test_results_swap_in_each_companions_test_and_train_scores(fitted):
    model, X, y = fitted
    scorer = CompanionScorer(get_scorer("balanced_accuracy"), ["f1_macro"])
    scorer(model, X[:100], y[:100])  # test split first, as _fit_and_score scores it
    scorer(model, X[100:], y[100:])
    result = {"test_scores": 0.1, "train_scores": 0.2, "fit_time": 3.0}
    f1 = scorer.results(result, return_train_score=True)["f1_macro"]
    assert f1["test_scores"] == pytest.approx(f1_score(y[:100], model.predict(X[:100]), average="macro"))
    assert f1["train_scores"] == pytest.approx(f1_score(y[100:], model.predict(X[100:]), average="macro"))
    assert f1["fit_time"] == 3.0
    # Train scores asked for but never computed here: nothing honest to record.
    lone = CompanionScorer(get_scorer("balanced_accuracy"), ["f1_macro"])
    lone(model, X, y)
    assert lone.results(result, return_train_score=True) == {}


def test_an_objective_that_fails_fails_as_it_would_alone(fitted):
    model, X, y = fitted

    def broken(estimator, X, y):
        raise RuntimeError("the objective's own error")

    with pytest.raises(RuntimeError, match="the objective's own error"):
        CompanionScorer(broken)(model, X, y)


def test_a_companion_that_cannot_score_is_left_out(fitted):
    _, X, y = fitted
    model = DummyClassifier(strategy="most_frequent").fit(X, y)
    # roc_auc raises on three classes (it needs multi_class=...): not recorded, the objective stands.
    scorer = CompanionScorer(get_scorer("accuracy"), ["roc_auc"])
    assert scorer(model, X, y) == pytest.approx(accuracy_score(y, model.predict(X)))
    assert scorer.scores == [{}]

