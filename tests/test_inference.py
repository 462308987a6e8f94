"""The forward pass from weight arrays: Keras's answers, and a served model without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from mnist_mlp import MLPClassifier, make_pipeline
from mnist_mlp.inference import ACTIVATIONS, ForwardClassifier, forward_model


def _keras_proba(clf, X):
    """The Keras model's own forward pass (its ``__call__``, not the compiled one predict uses)."""
    return np.asarray(clf.model_(np.asarray(X, np.float32), training=False))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_the_forward_pass_is_keras_s_for_every_activation_computed_here(flat_digits, activation):
    x_train, y_train, x_test, _ = flat_digits
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), activation=activation, dropout=0.2, epochs=2,
                        random_state=0, tracking=False).fit(x_train[:300], y_train[:300])
    forward = ForwardClassifier.from_estimator(clf)
    proba = forward.predict_proba(x_test[:200])
    np.testing.assert_allclose(proba, _keras_proba(clf, x_test[:200]), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(forward.predict(x_test[:200]), clf.predict(x_test[:200]))
    assert proba.dtype == np.float32 and forward.n_features_in_ == 784 and not forward.diverged_


def test_forward_model_keeps_the_pipeline_and_refuses_what_it_does_not_compute(digits, flat_digits):
    x_train, y_train, x_test, _ = digits
    pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0, tracking=False).fit(
        x_train[:200], y_train[:200])
    forward = forward_model(pipe, x_test[:5])
    assert type(forward) is Pipeline and [n for n, _ in forward.steps] == [n for n, _ in pipe.steps]
    assert isinstance(forward[-1], ForwardClassifier)
    np.testing.assert_allclose(forward.predict_proba(x_test[:100]), pipe.predict_proba(x_test[:100]), atol=1e-6)
    with pytest.raises(ValueError, match="images must have shape"):  # the pipeline's own checks, kept
        forward.predict(np.zeros((2, 27, 27)))
    with pytest.raises(TypeError, match="fit the MLPClassifier"):
        forward.fit(x_train[:10], y_train[:10])
    # An activation the forward pass does not compute: no forward model, the estimator serves.
    flat_train, _, flat_test, _ = flat_digits
    elu = MLPClassifier(hidden_layer_sizes=(8,), activation="elu", epochs=1, random_state=0,
                        tracking=False).fit(flat_train[:200], y_train[:200])
    assert forward_model(elu, flat_test[:5]) is None


def test_a_frame_model_keeps_its_column_names_and_string_labels():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0, tracking=False).fit(X, labels)
    forward = forward_model(clf, X.iloc[:5])
    np.testing.assert_array_equal(forward.predict(X), clf.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        forward.predict(X.rename(columns={X.columns[0]: "other"}))
    with pytest.raises(ValueError, match="4 features"):
        forward.predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        forward.predict(pd.DataFrame(np.full((1, 4), np.nan), columns=X.columns))


# Loads the logged model as mnist-mlp predict does and as the server does (mlflow.pyfunc),
# with TensorFlow and Keras made unimportable: where they are not installed.
_WITHOUT_TENSORFLOW = """
import json, sys
import numpy as np
sys.modules["tensorflow"] = sys.modules["keras"] = None
import mlflow.pyfunc
from mlflow.exceptions import MlflowException
images = np.load(sys.argv[2])
served = mlflow.pyfunc.load_model(sys.argv[1])
labels = served.predict(images).tolist()
try:
    served.predict(255 - images[:1])
    refused = None
except MlflowException as exc:
    refused = exc.message
from mnist_mlp.cli import main
main(["predict", sys.argv[1], sys.argv[2], "--json"])
print(json.dumps({"labels": labels, "refused": refused,
                  "loaded": sorted(m for m in ("tensorflow", "keras", "scikeras", "numba") if sys.modules.get(m))}))
"""


@pytest.mark.slow
def test_the_logged_model_predicts_without_tensorflow(tmp_path, monkeypatch, digits):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)
    x_train, y_train, x_test, _ = digits
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=2, random_state=0).fit(x_train[:300], y_train[:300])
    np.save(tmp_path / "images.npy", x_test[:50])
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, f"runs:/{pipe.run_id_}/model",
                           str(tmp_path / "images.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cli, result = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert result["loaded"] == []
    assert result["labels"] == pipe.predict(x_test[:50]).tolist() == cli["predictions"][0]["labels"]
    # The input contract's polarity check holds on the TensorFlow-free model.
    assert result["refused"].startswith("input image 0 has a light background")
