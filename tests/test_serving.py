"""The served model's input contract, in-process (the real server: tests/test_servers.py)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mnist_mlp import MLPClassifier, make_pipeline
from mnist_mlp.serving import InputContract, InvalidInputError

IMAGES = InputContract((28, 28), "uint8")


@pytest.mark.parametrize("data, match", [
    (np.random.default_rng(0).random((1, 28, 28)), "scaled to \\[0, 1\\]"),
    (np.full((1, 28, 28), 7.9), "whole numbers 0..255 \\(uint8\\); got 7.9"),
    (np.full((1, 28, 28), 256), "0..255 \\(uint8\\); got 256..256"),
    (np.full((1, 784), -1), "0..255"),
    (np.zeros((2, 27, 27)), "shape \\(2, 27, 27\\); this model takes shape \\(n, 28, 28\\) or \\(n, 784\\)"),
    (np.zeros((28, 28)), "batch of one"),
    (np.zeros((1, 28, 28, 1)), "shape \\(1, 28, 28, 1\\)"),
    ([], "empty input"),
    ([[]], "empty input"),
    (3, "single value"),
    ([[1, 2], [3]], "different lengths"),
    ([[["x"] * 28] * 28], "numbers; got 'x'"),
    ([[["7"] * 28] * 28], "numbers; got '7'"),
    ([[[None] * 28] * 28], "numbers; got None"),
    ([[[True] * 28] * 28], "numbers; got True"),
    (np.full((1, 784), np.nan), "NaN or infinite"),
    (np.full((1, 784), np.inf), "NaN or infinite"),
])
def test_inputs_an_image_model_was_not_trained_for_are_refused_by_name(data, match):
    with pytest.raises(InvalidInputError, match=match) as info:
        IMAGES.check(data)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("data", [
    np.full((2, 28, 28), 7, dtype=np.uint8),
    np.full((2, 28, 28), 255.0),            # integer-valued floats (JSON numbers)
    np.zeros((3, 784), dtype=np.int64),     # flattened
    [[[0] * 28] * 28],
])
def test_pixels_as_trained_pass_as_uint8(data):
    checked = IMAGES.check(data)
    assert checked.dtype == np.uint8
    np.testing.assert_array_equal(checked, np.asarray(data))


def test_a_float_model_takes_any_finite_numbers_and_a_frame_model_its_columns():
    floats = InputContract.from_training(np.zeros((5, 4), dtype=np.float32))
    assert floats == InputContract((4,), "float32")
    assert floats.check([[0.5, -3.0, 1e6, 2]]).dtype == np.float32
    frame = InputContract.from_training(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    assert frame.columns == ("a", "b")
    checked = frame.check(pd.DataFrame({"b": [4.0], "extra": [0], "a": [3.0]}))
    assert list(checked.columns) == ["a", "b"] and checked.iloc[0].tolist() == [3.0, 4.0]
    with pytest.raises(InvalidInputError, match="missing columns \\['a'\\]"):
        frame.check(pd.DataFrame({"b": [1.0]}))
    assert InputContract.from_dict(frame.to_dict()) == frame


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)


def test_a_logged_image_model_loads_as_a_checking_pyfunc(store, digits):
    x_train, y_train, x_test, _ = digits
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=2, random_state=0).fit(x_train[:300], y_train[:300])
    served = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id_}/model")
    np.testing.assert_array_equal(served.predict(x_test[:10]), pipe.predict(x_test[:10]))
    with pytest.raises(MlflowException, match="scaled to \\[0, 1\\]") as info:
        served.predict(x_test[:2] / 255.0)  # the pipeline itself would answer, wrongly
    assert info.value.get_http_status_code() == 400
    assert served.metadata.get_input_schema() is None  # MLflow's schema would cast, not refuse
    # The sklearn flavour is the plain fitted pipeline, as before.
    plain = mlflow.sklearn.load_model(f"runs:/{pipe.run_id_}/model")
    assert type(plain) is type(pipe)


def test_a_dataframe_model_keeps_its_column_names_in_the_signature(store):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X, y)
    served = mlflow.pyfunc.load_model(f"runs:/{clf.run_id_}/model")
    assert served.metadata.get_input_schema().input_names() == list(X.columns)
    np.testing.assert_array_equal(served.predict(X.iloc[:5]), clf.predict(X.iloc[:5]))


def test_a_diverged_model_refuses_to_answer(store, digits):
    x_train, y_train, x_test, _ = digits
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=2, learning_rate_init=1e6, optimizer="sgd",
                         random_state=0).fit(x_train[:300], y_train[:300])
    assert pipe[-1].diverged_
    served = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id_}/model")
    with pytest.raises(MlflowException, match="diverged"):
        served.predict(x_test[:2])
