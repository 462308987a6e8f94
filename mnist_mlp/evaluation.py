"""Test-set evaluation with scikit-learn metrics over the whole test set."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
)

from mnist_mlp._switch import tracking_enabled

__all__ = ["evaluate"]


def _fit_run_of(estimator):
    """(tracking_uri, run_id) of the run the estimator (or its final step) was fitted in."""
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    run_id = getattr(final, "run_id_", None)
    return (getattr(final, "tracking_uri_", None), run_id) if run_id else (None, None)


def evaluate(estimator, X, y, *, log=True):
    """Score a fitted classifier or pipeline on a test set.

    Unlike the study, which averaged Keras's per-batch F1, every figure here
    is computed by scikit-learn on the whole test set at once.

    Parameters
    ----------
    estimator : fitted classifier or Pipeline
        Anything with ``predict_proba`` and ``classes_``.
    X : array-like
        Test inputs, in the form ``estimator`` takes (raw images for a pipeline).
    y : array-like of shape (n_samples,)
        True labels.
    log : bool, default=True
        If the estimator's fit was tracked, log into its MLflow run the test
        metrics, the confusion matrix (PNG heatmap and CSV) and the
        classification report.

    Returns
    -------
    dict
        ``test_loss`` (cross-entropy), ``test_accuracy``, ``test_f1_macro``,
        ``test_precision_macro``, ``test_recall_macro`` (floats), and
        ``confusion_matrix``: the row-normalised matrix, rows true labels,
        columns predictions, ordered as ``estimator.classes_``.
    """
    y = np.asarray(y)
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    classes = np.asarray(estimator.classes_)
    # A diverged network outputs NaN: its predictions are still labels (argmax
    # of NaN-as-0 rows picks the first class) and its loss is reported as NaN,
    # honestly, rather than failing the evaluation.
    finite = np.isfinite(proba).all()
    y_pred = classes[np.argmax(np.nan_to_num(proba, nan=0.0, posinf=1.0, neginf=0.0), axis=1)]
    # Keras's float32 softmax can hit exactly 0 or 1; clip as Keras's own loss does.
    eps = np.finfo(np.float32).eps
    if finite:
        proba = np.clip(proba, eps, 1 - eps)
        proba /= proba.sum(axis=1, keepdims=True)
    loss = float(log_loss(y, proba, labels=classes)) if finite else float("nan")
    scores = {
        "test_loss": loss,
        "test_accuracy": float(accuracy_score(y, y_pred)),
        "test_f1_macro": float(f1_score(y, y_pred, average="macro", zero_division=0)),
        "test_precision_macro": float(precision_score(y, y_pred, average="macro", zero_division=0)),
        "test_recall_macro": float(recall_score(y, y_pred, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y, y_pred, labels=classes, normalize="true"),
    }
    tracking_uri, run_id = _fit_run_of(estimator)
    if log and run_id and tracking_enabled():
        from mnist_mlp import tracking

        report = classification_report(y, y_pred, labels=classes, output_dict=True, zero_division=0)
        tracking.log_evaluation(tracking.FitRun.attach(tracking_uri, run_id), scores, classes, report)
    return scores
