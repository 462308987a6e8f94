"""A fitted estimator saved as plain data: pickle, joblib, skops and MLflow's sklearn flavour."""

from __future__ import annotations

import os
import pickle
import pickletools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mnist_mlp
from mnist_mlp import MLPClassifier, make_pipeline

FAST = dict(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)


@pytest.fixture
def untracked(monkeypatch):
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")


@pytest.fixture
def fitted(untracked, digits):
    x, y, x_test, _ = digits
    return make_pipeline(**FAST).fit(x[:600], y[:600]), x_test[:200]


def _strings(payload):
    """Every string a pickle holds (module and class names of what unpickling imports among them)."""
    return {arg for _, arg, _ in pickletools.genops(payload) if isinstance(arg, str)}


def test_a_pickle_holds_arrays_not_keras_objects(fitted):
    pipe, x_test = fitted
    payload = pickle.dumps(pipe)
    assert not [name for name in _strings(payload) if "keras" in name or "tensorflow" in name]
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.predict_proba(x_test), pipe.predict_proba(x_test))
    clf = restored[-1]
    assert clf.history_ == pipe[-1].history_ and clf.n_iter_ == 2
    for saved, loaded in zip(pipe[-1].coefs_ + pipe[-1].initial_coefs_, clf.coefs_ + clf.initial_coefs_):
        np.testing.assert_array_equal(saved, loaded)
    # The optimizer's step count and slots came back with the weights.
    assert int(clf.model_.optimizer.iterations.numpy()) == clf.n_weight_updates_ > 0
    for saved, loaded in zip(pipe[-1].model_.optimizer.variables, clf.model_.optimizer.variables):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())


def test_skops_saves_the_pipeline_and_trusts_only_the_package_types(fitted):
    import skops.io as sio

    pipe, x_test = fitted
    payload = sio.dumps(pipe)
    assert sorted(sio.get_untrusted_types(data=payload)) == sorted(mnist_mlp.skops_trusted_types())
    restored = sio.loads(payload, trusted=mnist_mlp.skops_trusted_types())
    np.testing.assert_array_equal(restored.predict_proba(x_test), pipe.predict_proba(x_test))
    np.testing.assert_array_equal(restored.predict(x_test), pipe.predict(x_test))


def test_a_loaded_estimator_continues_training_as_if_never_saved(untracked, flat_digits):
    import skops.io as sio

    X, y, X_test, _ = flat_digits
    straight = MLPClassifier(**FAST, optimizer="rmsprop").fit(X[:600], y[:600])
    saved = sio.dumps(straight)
    straight.partial_fit(X[:600], y[:600])
    loaded = sio.loads(saved, trusted=mnist_mlp.skops_trusted_types()).partial_fit(X[:600], y[:600])
    np.testing.assert_array_equal(loaded.predict_proba(X_test), straight.predict_proba(X_test))
    assert loaded.n_weight_updates_ == straight.n_weight_updates_


def test_string_labels_and_their_dtype_survive(untracked, flat_digits):
    import skops.io as sio

    X, y, X_test, _ = flat_digits
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y[:600]]
    clf = MLPClassifier(**FAST).fit(X[:600], labels)
    restored = sio.loads(sio.dumps(clf), trusted=mnist_mlp.skops_trusted_types())
    np.testing.assert_array_equal(restored.predict(X_test), clf.predict(X_test))
    assert restored.y_dtype_ == clf.y_dtype_ and restored.predict(X_test).dtype == clf.predict(X_test).dtype


def test_saved_weights_that_do_not_fit_the_parameters_are_refused(untracked, flat_digits):
    X, y, _, _ = flat_digits
    state = MLPClassifier(**FAST).fit(X[:300], y[:300]).__getstate__()
    state["hidden_layer_sizes"] = (8,)
    with pytest.raises(ValueError, match="saved weights do not fit"):
        MLPClassifier.__new__(MLPClassifier).__setstate__(state)


@pytest.mark.slow
def test_mlflow_default_format_logs_and_loads_in_a_fresh_process(fitted, tmp_path):
    """``mlflow.sklearn.log_model(pipe, name="model")``: MLflow's default format (skops)."""
    import mlflow
    import mlflow.sklearn

    pipe, x_test = fitted
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(pipe, name="model", skops_trusted_types=mnist_mlp.skops_trusted_types())
        flavor = mlflow.models.get_model_info(info.model_uri).flavors["sklearn"]
    finally:
        mlflow.set_tracking_uri(None)
    np.save(tmp_path / "x.npy", x_test)
    script = textwrap.dedent(f"""
        import sys, numpy as np, mlflow, mlflow.sklearn
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        model = mlflow.sklearn.load_model("{info.model_uri}")
        np.save(sys.argv[1], model.predict_proba(np.load(sys.argv[2])))
    """)
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "p.npy"), str(tmp_path / "x.npy")], check=True,
                   env={**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}, timeout=300)
    assert flavor["serialization_format"] == "skops"
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), pipe.predict_proba(x_test))
