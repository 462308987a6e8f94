"""Score each search fit by more than its search's objective, so that another
search can reuse the fit honestly.

The study runs two searches over the same fits: one picks by validation
accuracy, the other by validation macro F1. A finished fit can stand in for
a later search's fit only with a score of that search's kind
(:func:`mnist_mlp.model_selection.resume.scorer_key`): the macro-F1 search
cannot use an accuracy. So a tracked search of a classifier scores each fit
also by the :data:`COMPANIONS`, from the same predictions (scikit-learn's
multi-metric scorer predicts once), and records each score under its own
key. The second search then reuses every fit the first already trained, with
the score it would have computed itself.
"""

from __future__ import annotations

import math

__all__ = ["COMPANIONS", "CompanionScorer"]

#: Scorer names (``sklearn.metrics.get_scorer``) every tracked classifier fit is also scored by.
COMPANIONS = ("accuracy", "f1_macro")


class CompanionScorer:
    """A scorer that returns ``objective``'s score and keeps the companions' beside it.

    scikit-learn sees an ordinary single-metric scorer: it gets the
    objective's number, and any failure is the objective's own (on an error
    the objective alone is scored again, so errors read as they would
    without companions). ``scores`` holds, per call in order (the test
    split, then the training split when the search returns train scores),
    the companions' finite scores by name.

    Parameters
    ----------
    objective : callable
        The search's scorer, ``objective(estimator, X, y) -> float``.
    companions : sequence of str, default=COMPANIONS
        Scorer names to compute as well.
    """

    def __init__(self, objective, companions=COMPANIONS):
        self.objective = objective
        self.companions = tuple(companions)
        self.scores = []

    def __call__(self, estimator, X, y=None, **score_params):
        from sklearn.metrics import check_scoring

        if y is None or score_params or not self.companions:
            # Unsupervised scoring, or routed sample weights the companions would not share: objective only.
            self.scores.append({})
            return self.objective(estimator, X, y, **score_params)
        scorers = {"objective": self.objective, **{name: name for name in self.companions}}
        try:
            scores = check_scoring(estimator, scoring=scorers)(estimator, X, y)
        except Exception:  # noqa: BLE001 - scored again below, where the objective's own error surfaces
            self.scores.append({})
            return self.objective(estimator, X, y)
        self.scores.append({name: float(scores[name]) for name in self.companions
                            if isinstance(scores[name], (int, float)) and math.isfinite(scores[name])})
        return scores["objective"]

    def results(self, result, return_train_score):
        """``{name: result}``: ``_fit_and_score``'s ``result`` as each companion would have scored it."""
        test = self.scores[0] if self.scores else {}
        train = None
        if return_train_score:
            if len(self.scores) < 2:
                return {}  # the training split was not scored here: no honest train score
            train = self.scores[1]
        found = {}
        for name, score in test.items():
            if train is None:
                found[name] = {**result, "test_scores": score}
            elif name in train:
                found[name] = {**result, "test_scores": score, "train_scores": train[name]}
        return found
