"""scikit-learn's estimator checks on a cheap configuration of every estimator, tracking on."""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from mnist_mlp import FixedRangeScaler, ImageFlattener, MLPClassifier
from tests import helpers

# Small and fast, yet able to fit the checks' toy data sets (lr 0.01, no hold-out).
CHEAP_MLP = MLPClassifier(
    hidden_layer_sizes=(16,), epochs=20, batch_size=32, learning_rate_init=0.01,
    validation_split=0.0, random_state=0,
)

# Each entry is a check MLPClassifier cannot pass, and why. Keep this list short.
EXPECTED_FAILURES = {
    "MLPClassifier": {
        "check_estimator_tags_renamed": (
            "scikeras's BaseWrapper still defines the pre-1.6 `_more_tags`; our class "
            "defines `__sklearn_tags__`, which is what scikit-learn >= 1.6 reads"
        ),
        "check_mixin_order": (
            "scikeras declares KerasClassifier(BaseWrapper, ClassifierMixin); no subclass "
            "can reorder that MRO. The tags it would lose are set in __sklearn_tags__"
        ),
        "check_do_not_raise_errors_in_init_or_set_params": (
            "the check sets a parameter literally named `kwargs`; our **kwargs carries "
            "scikeras's routed parameters (optimizer__rho), each settable by its name"
        ),
        "check_sample_weight_equivalence_on_dense_data": (
            "mini-batch training: repeating a sample changes batch composition, so weights "
            "match repetition only to float32 round-off (~2e-5 vs the check's rtol 1e-7)"
        ),
    },
}


@pytest.fixture(autouse=True)
def tracking_on(monkeypatch, tmp_path, empty_store):
    """The checks run as a user's code does: with tracking on (the default),
    every fit an MLflow run, into a store of this test's own."""
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", helpers.copy_of_store(empty_store, tmp_path))
    monkeypatch.chdir(tmp_path)


def _expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks(
    [CHEAP_MLP, FixedRangeScaler(data_min=-1e3, data_max=1e3), ImageFlattener(image_shape=None)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
