"""make_pipeline: flatten -> scale -> MLPClassifier, in searches and round trips."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV
from sklearn.preprocessing import MinMaxScaler

from mnist_mlp import FixedRangeScaler, ImageFlattener, MLPClassifier, make_pipeline

FAST = dict(hidden_layer_sizes=(32,), epochs=5, batch_size=64, random_state=0)


def test_steps_and_defaults():
    pipe = make_pipeline()
    assert [name for name, _ in pipe.steps] == ["flatten", "scale", "classifier"]
    assert isinstance(pipe["flatten"], ImageFlattener)
    assert isinstance(pipe["scale"], FixedRangeScaler)
    assert isinstance(pipe["classifier"], MLPClassifier)
    assert isinstance(make_pipeline(scaler="minmax")["scale"], MinMaxScaler)
    with pytest.raises(ValueError, match="scaler"):
        make_pipeline(scaler="standard")


def test_fits_raw_images_and_round_trips(digits):
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(**FAST).fit(x_train, y_train)
    assert pipe.score(x_test, y_test) > 0.8
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(x_test), pipe.predict(x_test))
    fresh = clone(pipe)
    assert not hasattr(fresh["classifier"], "model_")


def test_minmax_scaler_variant(digits):
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(scaler="minmax", **FAST).fit(x_train, y_train)
    assert pipe.score(x_test, y_test) > 0.8


def test_grid_search_over_step_params(digits):
    x_train, y_train, _, _ = digits
    search = GridSearchCV(
        make_pipeline(**FAST, optimizer="rmsprop"),
        {"classifier__hidden_layer_sizes": [(8,), (32,)], "classifier__optimizer__rho": [0.9]},
        cv=2,
    )
    search.fit(x_train[:600], y_train[:600])
    assert len(search.cv_results_["params"]) == 2
    assert search.best_estimator_["classifier"].get_params()["optimizer__rho"] == 0.9
    assert hasattr(search.best_estimator_["classifier"], "model_")


def test_halving_grid_search(digits):
    x_train, y_train, _, _ = digits
    search = HalvingGridSearchCV(
        make_pipeline(**FAST),
        {"classifier__learning_rate_init": [1e-3, 1e-2, 1e-1]},
        cv=2, factor=3, min_resources=200, random_state=0,
    )
    search.fit(x_train[:900], y_train[:900])
    assert search.n_iterations_ == 2
    assert list(search.n_resources_) == [200, 600]
    assert search.best_params_["classifier__learning_rate_init"] in (1e-3, 1e-2, 1e-1)
