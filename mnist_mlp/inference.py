"""A fitted network's forward pass from its weight arrays: NumPy, no TensorFlow.

A fitted :class:`~mnist_mlp.MLPClassifier` is, for predicting, a few kernels
and biases (``coefs_``, ``intercepts_``), one hidden activation and a softmax.
:func:`forward_model` turns a fitted estimator or pipeline into the same
predictor with its classifier replaced by a :class:`ForwardClassifier` that
holds only those arrays; the logged model's ``python_function`` flavour
(:mod:`mnist_mlp.serving`, so ``mlflow models serve`` and ``mnist-mlp predict``)
loads that one, and so predicts without importing TensorFlow (seconds of
start-up), while its ``sklearn`` flavour keeps the estimator itself.

Only the hidden activations named in :data:`ACTIVATIONS` are computed here
(the compiled training loop's own list); :func:`forward_model` returns None
for anything else, and for a network whose answers it does not reproduce, so
that such a model is served by the estimator itself, as before.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["ACTIVATIONS", "ForwardClassifier", "forward_model"]

#: Hidden activations computed here, by their Keras names, as Keras computes them in float32.
ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0, out=z),
    "tanh": lambda z: np.tanh(z, out=z),
    "sigmoid": lambda z: np.divide(1, 1 + np.exp(-z), dtype=np.float32),
}

# A forward model must reproduce the estimator's probabilities on the training
# rows it is logged with to within float32 rounding (measured: below 1e-7).
_TOLERANCE = 1e-5


class ForwardClassifier(ClassifierMixin, BaseEstimator):
    """A fitted dense softmax network, predicting from its weight arrays.

    Made from a fitted :class:`~mnist_mlp.MLPClassifier` by
    :meth:`from_estimator`, never fitted itself. It checks its input as the
    estimator does (finite numbers, ``n_features_in_`` columns, the fitted
    column names) and predicts what the estimator predicts.

    Parameters
    ----------
    activation : str, default="relu"
        The hidden layers' activation, a key of :data:`ACTIVATIONS`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray
        Kernel of each Dense layer, input side first (float32).
    intercepts_ : list of ndarray
        Bias of each Dense layer (float32).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when the estimator was fitted on a DataFrame with string column names.
    diverged_ : bool
        Whether the estimator's training diverged.
    """

    def __init__(self, *, activation="relu"):
        self.activation = activation

    @classmethod
    def from_estimator(cls, estimator):
        """The forward pass of a fitted ``MLPClassifier``, or None where its activation is not computed here.

        Parameters
        ----------
        estimator : MLPClassifier
            Fitted.

        Returns
        -------
        ForwardClassifier or None
        """
        activation = estimator.network_spec()["activation"]
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            return None
        forward = cls(activation=activation)
        forward.classes_ = np.asarray(estimator.classes_)
        forward.coefs_ = [np.asarray(c, dtype=np.float32) for c in estimator.coefs_]
        forward.intercepts_ = [np.asarray(b, dtype=np.float32) for b in estimator.intercepts_]
        forward.n_features_in_ = int(estimator.n_features_in_)
        if hasattr(estimator, "feature_names_in_"):
            forward.feature_names_in_ = estimator.feature_names_in_
        forward.diverged_ = bool(getattr(estimator, "diverged_", False))
        return forward

    def fit(self, X, y=None):
        """Not supported: fit the :class:`~mnist_mlp.MLPClassifier` this predictor was made from.

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError("a ForwardClassifier predicts with a fitted network's weights; fit the MLPClassifier")

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``, columns as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float32
        """
        check_is_fitted(self, "coefs_")
        z = validate_data(self, X, reset=False, dtype=np.float32)
        hidden = ACTIVATIONS[self.activation]
        for i, (kernel, bias) in enumerate(zip(self.coefs_, self.intercepts_)):
            z = z @ kernel
            z += bias
            if i < len(self.coefs_) - 1:
                z = hidden(z)
        # Keras's softmax: shifted by the row's maximum, so that exp never overflows.
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict(self, X):
        """The most probable class of each row (the first one on a tie, as the estimator).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def forward_model(model, example):
    """``model`` with its fitted ``MLPClassifier`` replaced by a :class:`ForwardClassifier`.

    Parameters
    ----------
    model : fitted MLPClassifier or Pipeline ending in one
    example : array-like
        A few rows ``model`` takes (its logged input example): the forward
        model must give their probabilities as ``model`` does.

    Returns
    -------
    ForwardClassifier, Pipeline or None
        A classifier for a bare estimator, a ``sklearn.pipeline.Pipeline``
        of the same fitted preprocessing steps for a pipeline; None where
        the network is not one computed here or its answers differ.
    """
    from sklearn.pipeline import Pipeline

    steps = list(model.steps) if hasattr(model, "steps") else None
    final = steps[-1][1] if steps else model
    if not hasattr(final, "network_spec") or not hasattr(final, "coefs_"):
        return None
    forward = ForwardClassifier.from_estimator(final)
    if forward is None:
        return None
    if steps:
        forward = Pipeline([*steps[:-1], (steps[-1][0], forward)])
    with warnings.catch_warnings():  # a diverged estimator warns on predicting: this comparison is no user's
        warnings.simplefilter("ignore")
        expected = model.predict_proba(example)
    # equal_nan: a diverged network's NaN answers are the estimator's too (served, both refuse).
    if not np.allclose(forward.predict_proba(example), expected, rtol=0, atol=_TOLERANCE, equal_nan=True):
        return None
    return forward
