"""evaluate(): scikit-learn metrics over the whole test set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mnist_mlp import evaluate


class FixedProba:
    """A fitted 'classifier' whose probabilities are given."""

    def __init__(self, proba, classes):
        self.proba, self.classes_ = np.asarray(proba, dtype=np.float32), np.asarray(classes)

    def predict_proba(self, X):
        return self.proba


def test_scores_are_whole_set_metrics_not_batch_averages():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    scores = evaluate(FixedProba(proba, [0, 1, 2]), None, y)
    pred = np.array([0, 1, 1, 1, 2, 0])
    assert scores["test_accuracy"] == pytest.approx(4 / 6)
    assert scores["test_f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    np.testing.assert_allclose(scores["confusion_matrix"], [[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]])
    assert np.isfinite(scores["test_loss"])  # probabilities of exactly 0 are clipped


def test_string_classes():
    scores = evaluate(FixedProba([[0.9, 0.1], [0.2, 0.8]], ["cat", "dog"]), None, ["cat", "cat"])
    assert scores["test_accuracy"] == 0.5
    np.testing.assert_allclose(scores["confusion_matrix"], [[0.5, 0.5], [0.0, 0.0]])


def test_a_diverged_network_is_scored_honestly():
    proba = np.full((4, 3), np.nan)
    scores = evaluate(FixedProba(proba, [0, 1, 2]), None, [0, 1, 2, 0])
    assert np.isnan(scores["test_loss"])
    assert scores["test_accuracy"] == 0.5  # every prediction is a valid label: the first class
