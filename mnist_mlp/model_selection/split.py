"""The study's split: train on the head of the rows, validate on their tail, as Keras's ``validation_split``."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import BaseCrossValidator

__all__ = ["TrainValidationSplit"]


class TrainValidationSplit(BaseCrossValidator):
    """One split: score on the last ``validation_fraction`` of the samples.

    The study trains with Keras's ``validation_split=0.2`` and no shuffling:
    the network learns from the first 80 % and is validated on the last 20 %.

    With ``estimator_holds_out=True`` the estimator receives all samples and,
    with the same ``validation_split``, holds the same tail out of its own
    training: the score on this test fold is then the study's validation
    accuracy, on data the network never trained on. That needs a search that
    hands the rows over in order, as ``GridSearchCV`` does. A search that
    subsamples or reorders the training rows (``HalvingGridSearchCV``) would
    break the alignment and leak the tail into training: use
    ``estimator_holds_out=False``, which trains on the head only.

    Parameters
    ----------
    validation_fraction : float, default=0.2
        With ``estimator_holds_out``, must equal the classifier's ``validation_split``.
    estimator_holds_out : bool, default=True
    """

    def __init__(self, validation_fraction=0.2, estimator_holds_out=True):
        self.validation_fraction = validation_fraction
        self.estimator_holds_out = estimator_holds_out

    def get_n_splits(self, X=None, y=None, groups=None):
        return 1

    def _iter_test_indices(self, X=None, y=None, groups=None):
        n = len(X)
        split_at = int(np.floor(n * (1 - self.validation_fraction)))  # as Keras splits
        yield np.arange(split_at, n)

    def split(self, X, y=None, groups=None):
        n = len(X)
        for test in self._iter_test_indices(X):
            # Train on all (the estimator holds the tail out itself) or on the head only.
            yield np.arange(n if self.estimator_holds_out else test[0]), test
