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
from mnist_mlp.serving import InvalidInputError

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


def test_a_pipeline_fitted_on_a_dataframe_checks_its_column_names(digits):
    import pandas as pd

    x_train, y_train, x_test, _ = digits
    names = [f"px{i}" for i in range(784)]
    pipe = make_pipeline(**FAST).fit(pd.DataFrame(x_train.reshape(-1, 784), columns=names), y_train)
    assert pipe.feature_names_in_.tolist() == names and pipe.n_features_in_ == 784
    test = pd.DataFrame(x_test.reshape(-1, 784), columns=names)
    np.testing.assert_array_equal(pipe.predict(test), make_pipeline(**FAST).fit(x_train, y_train).predict(x_test))
    with pytest.raises(ValueError, match="Feature names must be in the same order as they were in fit"):
        pipe.predict(test[names[::-1]])
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        pipe.score(test.set_axis([f"q{i}" for i in range(784)], axis=1), np.zeros(len(test)))


def test_a_pipeline_fitted_on_whole_numbers_refuses_scaled_images(digits):
    """The served model's contract, in-process: scaled images would get confident wrong digits."""
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(**FAST).fit(x_train, y_train)
    contract = dict(pipe.input_contract_)
    assert contract.pop("background")["image_shape"] == [28, 28]
    assert contract == {"sample_shape": [28, 28], "dtype": "uint8", "columns": None}
    scaled = x_test / 255.0
    message = r"input looks scaled to \[0, 1\]; this model takes raw uint8 values 0..255, as it was trained: " \
              r"send round\(x \* 255\)"
    for method in (pipe.predict, pipe.predict_proba, lambda X: pipe.score(X, y_test)):
        with pytest.raises(InvalidInputError, match=message):
            method(scaled)
    with pytest.raises(ValueError, match=r"whole numbers 0..255 \(uint8\); got 7.5"):
        pipe.predict(np.full((1, 28, 28), 7.5))
    # Whole numbers in any dtype still pass, and so do they after a pickle round trip (the logged model).
    np.testing.assert_array_equal(pipe.predict(x_test.astype(np.float64)), pipe.predict(x_test))
    with pytest.raises(InvalidInputError, match="scaled"):
        pickle.loads(pickle.dumps(pipe)).predict(scaled)
    # ints other than uint8 alike; a pipeline fitted on float images takes any floats.
    with pytest.raises(InvalidInputError, match=r"whole numbers \(int64\), as it was trained"):
        make_pipeline(**FAST).fit(x_train[:300].astype(np.int64), y_train[:300]).predict(scaled)
    floats = make_pipeline(**FAST).fit(x_train[:300].astype(np.float32), y_train[:300])
    assert floats.predict(scaled).shape == (len(scaled),)
    assert not hasattr(make_pipeline(**FAST), "input_contract_")


def test_a_pipeline_fitted_on_images_refuses_them_inverted(digits):
    """Dark ink on light paper, what a photo gives: without the contract, confident wrong digits."""
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(**FAST).fit(x_train, y_train)
    for method in (pipe.predict, pipe.predict_proba, lambda X: pipe.score(X, y_test)):
        with pytest.raises(InvalidInputError, match="input image 0 has a light background"):
            method(255 - x_test)
    assert pipe.score(x_test, y_test) > 0.5  # every normal test image is answered
    # A table has no background: a pipeline of a 1-D "image" shape takes any rows in its range.
    rows = np.random.default_rng(0).integers(0, 256, (300, 4))
    table = make_pipeline(image_shape=None, **FAST).fit(rows, y_train[:300])
    assert table.input_contract_["background"] is None
    assert table.predict(255 - rows).shape == (300,)


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
