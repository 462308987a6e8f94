"""MLPClassifier: the study's network, scikit-learn protocol, fitted state, validation."""

from __future__ import annotations

import math
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.model_selection import cross_validate
from sklearn.utils import get_tags

from mnist_mlp import MLPClassifier
from mnist_mlp._tensorflow import keras

FAST = dict(hidden_layer_sizes=(32,), epochs=3, batch_size=64, random_state=0)


def test_defaults_are_the_study_network():
    params = MLPClassifier().get_params()
    assert params["hidden_layer_sizes"] == (128, 256)
    assert params["activation"] == "relu"
    assert params["optimizer"] == "adam"
    assert params["learning_rate_init"] == 0.001
    assert params["batch_size"] == 256
    assert params["epochs"] == 100
    assert params["validation_split"] == 0.2
    assert params["shuffle"] is False
    assert params["kernel_initializer"] == "glorot_uniform"
    assert params["penalty"] is None and params["dropout"] == 0.0


def test_the_dropout_papers_knobs_build_keras_layers_and_train_in_the_compiled_loop(flat_digits):
    """input_dropout is a Dropout before the first Dense, max_norm a MaxNorm(axis=0) on every hidden
    kernel (none on the output), and both train in the compiled loop, the bound holding on coefs_."""
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST, input_dropout=0.2, dropout=0.5, max_norm=0.5).fit(X[:300], y[:300])
    assert clf.training_loop_ == "compiled", clf.training_loop_reason_
    assert [type(layer).__name__ for layer in clf.model_.layers] == ["Dropout", "Dense", "Dropout", "Dense"]
    assert clf.model_.layers[0].rate == 0.2
    constraints = [layer.kernel_constraint for layer in clf.model_.layers if isinstance(layer, keras.layers.Dense)]
    assert [(c.max_value, c.axis) for c in constraints[:-1]] == [(0.5, 0)] and constraints[-1] is None
    assert np.linalg.norm(clf.coefs_[0], axis=0).max() <= 0.5 * (1 + 1e-6)
    assert np.linalg.norm(clf.coefs_[-1], axis=0).max() > 0.5  # the output layer is not constrained


def test_default_network_architecture(flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(epochs=1, random_state=0).fit(X[:300], y[:300])
    dense = [layer for layer in clf.model_.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [128, 256, 10]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "softmax"]
    assert all(isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform) for layer in dense)
    assert isinstance(clf.model_.optimizer, keras.optimizers.Adam)
    assert clf.model_.optimizer.learning_rate.numpy() == pytest.approx(0.001)
    assert clf.model_.loss == "categorical_crossentropy"


def test_plain_scikeras_is_not_a_classifier_but_ours_is():
    """The bug we fix: scikeras 0.13 under scikit-learn >= 1.6 loses its estimator type."""
    from scikeras.wrappers import KerasClassifier

    assert not is_classifier(KerasClassifier())
    assert is_classifier(MLPClassifier())
    assert get_tags(MLPClassifier()).estimator_type == "classifier"


def test_cross_val_score_uses_stratified_folds(flat_digits):
    X, y, _, _ = flat_digits
    order = np.argsort(y[:300], kind="stable")  # sorted labels: plain KFold would split by class
    X, y = X[:300][order], y[:300][order]
    result = cross_validate(
        MLPClassifier(hidden_layer_sizes=(16,), epochs=1, random_state=0), X, y, cv=3,
        return_indices=True,
    )
    overall = np.bincount(y, minlength=10) / len(y)
    for test_idx in result["indices"]["test"]:
        fold = np.bincount(y[test_idx], minlength=10) / len(test_idx)
        np.testing.assert_allclose(fold, overall, atol=0.02)


def test_learns_well_above_chance(flat_digits):
    X, y, X_test, y_test = flat_digits
    clf = MLPClassifier(epochs=5, random_state=0).fit(X, y)
    assert clf.score(X_test, y_test) > 0.85
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))


def test_fitted_attributes(flat_digits):
    X, y, _, _ = flat_digits
    X, y = X[:1000], y[:1000]
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), epochs=4, batch_size=128, random_state=0)
    assert not [k for k in vars(clf) if k.endswith("_")]
    clf.fit(X, y)
    assert set(clf.history_) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in clf.history_.values())
    n_train = math.floor(1000 * 0.8)
    assert clf.n_weight_updates_ == math.ceil(n_train / 128) * 4 == 28
    assert clf.n_iter_ == 4
    assert clf.fit_time_ > 0
    assert clf.n_features_in_ == 784 and clf.n_classes_ == 10
    assert [w.shape for w in clf.coefs_] == [(784, 32), (32, 16), (16, 10)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (16,), (10,)]
    assert [w.shape for w in clf.initial_coefs_] == [w.shape for w in clf.coefs_]
    assert not np.allclose(clf.initial_coefs_[0], clf.coefs_[0])
    assert all(np.all(b == 0) for b in clf.initial_intercepts_)
    assert clf.history_["loss"][-1] < clf.history_["loss"][0]


def test_full_batch_and_online_update_counts(flat_digits):
    X, y, _, _ = flat_digits
    full = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, batch_size=48_000, random_state=0)
    assert full.fit(X[:500], y[:500]).n_weight_updates_ == 2
    online = MLPClassifier(hidden_layer_sizes=(8,), epochs=1, batch_size=1, random_state=0)
    assert online.fit(X[:50], y[:50]).n_weight_updates_ == 40


def test_string_labels(flat_digits):
    X, y, X_test, y_test = flat_digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(**FAST).fit(X[:800], names[y[:800]])
    pred = clf.predict(X_test[:50])
    assert set(pred) <= set(names)
    assert clf.score(X_test, names[y_test]) > 0.6


def test_same_random_state_gives_identical_weights_and_predictions(flat_digits):
    X, y, X_test, _ = flat_digits
    params = dict(FAST, dropout=0.3, shuffle=True)
    a = MLPClassifier(**params).fit(X[:600], y[:600])
    b = MLPClassifier(**params).fit(X[:600], y[:600])
    for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))
    c = MLPClassifier(**dict(params, random_state=1)).fit(X[:600], y[:600])
    assert not np.array_equal(a.initial_coefs_[0], c.initial_coefs_[0])


@pytest.mark.parametrize("initializer", ["glorot_uniform", keras.initializers.HeNormal()])
def test_checking_the_parameters_leaves_the_global_generators_alone(initializer):
    """A fit's checks make a Keras initializer, which draws its seed from Python's
    generator: outside a seeded section that draw moved the stream another thread's
    build had just seeded (the same random_state gave other weights, about one fit in
    sixty in test_concurrent_fits_in_threads)."""
    import random

    random.seed(7), np.random.seed(7)
    expected = random.random(), np.random.random()
    random.seed(7), np.random.seed(7)
    MLPClassifier(kernel_initializer=initializer).validate_hyperparameters()
    assert (random.random(), np.random.random()) == expected


def test_clone_pickle_and_joblib_round_trips(flat_digits, tmp_path):
    X, y, X_test, _ = flat_digits
    clf = MLPClassifier(**FAST, optimizer="rmsprop", optimizer__rho=0.99)
    cloned = clone(clf)
    assert cloned.get_params() == clf.get_params()
    assert cloned.get_params()["optimizer__rho"] == 0.99
    clf.fit(X[:500], y[:500])
    expected = clf.predict_proba(X_test)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X_test), expected)
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "clf.joblib").predict_proba(X_test), expected)
    assert restored.history_ == clf.history_


def test_optimizers_and_routed_settings(flat_digits):
    X, y, _, _ = flat_digits
    rms = MLPClassifier(**FAST, optimizer="rmsprop", optimizer__rho=0.01).fit(X[:200], y[:200])
    assert isinstance(rms.model_.optimizer, keras.optimizers.RMSprop)
    assert rms.model_.optimizer.rho == pytest.approx(0.01)
    sgd = MLPClassifier(**FAST, optimizer="sgd", learning_rate_init=0.01, optimizer__momentum=0.9)
    sgd.fit(X[:200], y[:200])
    assert sgd.model_.optimizer.learning_rate.numpy() == pytest.approx(0.01)
    assert sgd.model_.optimizer.momentum == pytest.approx(0.9)
    given = keras.optimizers.SGD(learning_rate=0.05)
    inst = MLPClassifier(**FAST, optimizer=given).fit(X[:200], y[:200])
    assert inst.model_.optimizer is not given
    assert inst.model_.optimizer.learning_rate.numpy() == pytest.approx(0.05)


def test_initializer_on_all_layers_penalty_on_hidden_only(flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(
        hidden_layer_sizes=(32, 16), epochs=1, random_state=0, optimizer="sgd",
        learning_rate_init=0.01, kernel_initializer=keras.initializers.RandomNormal(mean=10.0),
        penalty="l2", alpha=0.01, dropout=0.3,
    ).fit(X[:200], y[:200])
    for w in clf.initial_coefs_:  # hidden AND output start around 10
        assert abs(w.mean() - 10.0) < 0.2
    dense = [layer for layer in clf.model_.layers if isinstance(layer, keras.layers.Dense)]
    assert [type(layer.kernel_regularizer).__name__ for layer in dense] == ["L2", "L2", "NoneType"]
    assert dense[0].kernel_regularizer.l2 == pytest.approx(0.01)
    dropouts = [layer for layer in clf.model_.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in dropouts] == [0.3, 0.3]
    l1 = MLPClassifier(**FAST, penalty="l1", alpha=0.001).fit(X[:200], y[:200])
    assert type(l1.model_.layers[0].kernel_regularizer).__name__ == "L1"


def test_validation_split_zero_has_no_validation_history(flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST, validation_split=0.0).fit(X[:200], y[:200])
    assert set(clf.history_) == {"loss", "accuracy"}
    assert clf.n_weight_updates_ == math.ceil(200 / 64) * 3


@pytest.mark.parametrize(
    "params, name",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"optimizer": "adamm"}, "optimizer"),
        ({"penalty": "l3"}, "penalty"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"hidden_layer_sizes": ()}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (128, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": (-5,)}, "hidden_layer_sizes"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"validation_split": -0.2}, "validation_split"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate_init": 0.0}, "learning_rate_init"),
        ({"kernel_initializer": "no_such_init"}, "kernel_initializer"),
        ({"activation": "no_such_activation"}, "activation"),
        ({"optimizer": "adam", "optimizer__rho": 0.9}, "optimizer__"),
        ({"optimizr__rho": 0.9}, "optimizr__rho"),
    ],
)
def test_invalid_parameters_fail_before_training(params, name, flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**params)  # constructing never validates (clone, set_params)
    with pytest.raises(ValueError, match=name):
        clf.fit(X[:50], y[:50])
    assert not hasattr(clf, "model_")


def test_bad_data_errors(flat_digits):
    X, y, _, _ = flat_digits
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier(**FAST).fit(X[:20], np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="2D"):
        MLPClassifier(**FAST).fit(X[:20].reshape(20, 28, 28), y[:20])
    with pytest.raises(ValueError, match="NaN"):
        bad = X[:20].copy()
        bad[0, 0] = np.nan
        MLPClassifier(**FAST).fit(bad, y[:20])
    clf = MLPClassifier(**FAST).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="X has 20 features, but MLPClassifier is expecting 784"):
        clf.predict(X[:5, :20])


def _frame(X, names=None):
    import pandas as pd

    return pd.DataFrame(X, columns=names or [f"px{i}" for i in range(X.shape[1])])


def test_a_dataframe_fit_records_feature_names_and_predict_checks_them(flat_digits):
    """scikit-learn's own errors for the columns of a DataFrame, as its estimators give them."""
    X, y, X_test, y_test = flat_digits
    frame, test = _frame(X[:300]), _frame(X_test)
    clf = MLPClassifier(**FAST).fit(frame, y[:300])
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    assert clf.n_features_in_ == 784
    # The same columns: the answers of the same network fitted on the array.
    np.testing.assert_array_equal(clf.predict(test), MLPClassifier(**FAST).fit(X[:300], y[:300]).predict(X_test))
    with pytest.raises(ValueError, match="Feature names must be in the same order as they were in fit"):
        clf.predict(test[test.columns[::-1]])
    with pytest.raises(ValueError, match="Feature names unseen at fit time:\n- q0"):
        clf.predict_proba(test.set_axis([f"q{i}" for i in range(784)], axis=1))
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing:\n- px783"):
        clf.score(test.iloc[:, :783], y_test)
    with pytest.warns(UserWarning, match="X does not have valid feature names, but MLPClassifier was fitted"):
        clf.predict(X_test[:5])
    # Refitted on an array, it forgets the names, as scikit-learn's estimators do.
    assert not hasattr(clf.fit(X[:300], y[:300]), "feature_names_in_")


def test_a_warm_start_or_partial_fit_checks_the_names_it_continues_from(flat_digits):
    """scikeras's fit, partial_fit and predict all validate through our ``_validate_data``:
    a warm start on the same DataFrame neither warns nor forgets its names, reversed columns fail."""
    import warnings

    X, y, _, _ = flat_digits
    frame = _frame(X[:300])
    clf = MLPClassifier(**FAST, warm_start=True).fit(frame, y[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(frame, y[:300])
    # n_iter_ counts on across a warm start (docs/interop.md).
    assert list(clf.feature_names_in_) == list(frame.columns) and clf.n_iter_ == 2 * FAST["epochs"]
    with pytest.raises(ValueError, match="same order"):
        clf.fit(frame[frame.columns[::-1]], y[:300])
    partial = MLPClassifier(**FAST).partial_fit(frame, y[:300])  # scikeras's own path: no fit of ours
    np.testing.assert_array_equal(partial.feature_names_in_, frame.columns)
    with pytest.raises(ValueError, match="same order"):
        partial.partial_fit(frame[frame.columns[::-1]], y[:300])


def test_x_and_y_of_different_lengths_fail_with_scikit_learns_error(flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST)
    with pytest.raises(ValueError, match="inconsistent numbers of samples: \\[100, 90\\]"):
        clf.fit(X[:100], y[:90])
    with pytest.raises(ValueError, match="Found array with 0 sample"):
        clf.fit(X[:0], y[:0])
    assert not hasattr(clf, "model_")


def test_predict_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        MLPClassifier().predict(np.zeros((2, 784), dtype=np.float32))


def test_predict_accepts_other_float_dtypes(flat_digits):
    X, y, X_test, _ = flat_digits
    clf = MLPClassifier(**FAST).fit(X[:200], y[:200])
    np.testing.assert_array_equal(clf.predict(X_test.astype(np.float64)), clf.predict(X_test))


def test_a_diverged_fit_says_so_without_mlflow(flat_digits):
    """The study's mean-10 start, tracking off: a fitted flag, and a warning at every prediction."""
    import warnings

    from mnist_mlp._tensorflow import keras
    from mnist_mlp.estimator import DivergedModelWarning

    X, y, X_test, _ = flat_digits
    bad = MLPClassifier(hidden_layer_sizes=(16,), optimizer="sgd", epochs=2, random_state=0, tracking=False,
                        kernel_initializer=keras.initializers.RandomNormal(mean=10.0)).fit(X[:500], y[:500])
    assert bad.diverged_ is True
    with pytest.warns(DivergedModelWarning, match="diverged in training"):
        bad.predict(X_test[:5])
    good = MLPClassifier(hidden_layer_sizes=(16,), epochs=2, random_state=0, tracking=False).fit(X[:500], y[:500])
    assert good.diverged_ is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergedModelWarning)
        good.predict(X_test[:5])


def test_predictions_from_many_threads_at_once_equal_sequential_ones(flat_digits):
    """One fitted estimator and one pipeline, 8 threads x 20 calls each: the same
    answers as one thread, no error (a served model answers requests this way)."""
    from concurrent.futures import ThreadPoolExecutor

    from mnist_mlp import make_pipeline

    X, y, X_test, _ = flat_digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=1, random_state=0, tracking=False).fit(X[:500], y[:500])
    images = (X_test[:40].reshape(-1, 28, 28) * 255).round().astype(np.uint8)
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=1, random_state=0, tracking=False).fit(
        (X[:500].reshape(-1, 28, 28) * 255).round().astype(np.uint8), y[:500])
    calls = [(clf.predict_proba, X_test[i:i + 5]) for i in range(0, 40, 5)] * 20 + \
            [(pipe.predict, images[i:i + 5]) for i in range(0, 40, 5)] * 20
    expected = [np.asarray(f(x)) for f, x in calls]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda call: np.asarray(call[0](call[1])), calls))
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have, want)


def test_alpha_without_a_penalty_warns_that_it_does_nothing(flat_digits):
    import warnings

    from sklearn.model_selection import GridSearchCV

    X, y, _, _ = flat_digits
    fast = dict(hidden_layer_sizes=(8,), epochs=1, batch_size=64, random_state=0, tracking=False)
    with pytest.warns(UserWarning, match=r"alpha=0\.01 has no effect with penalty=None: set penalty='l2' or 'l1'"):
        MLPClassifier(**fast, alpha=0.01).fit(X[:200], y[:200])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="alpha=")  # the study's settings stay quiet
        MLPClassifier(**fast).fit(X[:200], y[:200])
        MLPClassifier(**fast, penalty="l2", alpha=0.01).fit(X[:200], y[:200])
    with pytest.warns(UserWarning, match="alpha=0.1 has no effect") as caught:
        GridSearchCV(MLPClassifier(**fast), {"alpha": [1e-4, 1e-1]}, cv=2).fit(X[:200], y[:200])
    assert sum("has no effect" in str(w.message) for w in caught) >= 2  # each fold fit of alpha=0.1
