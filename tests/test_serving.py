"""The served model's input contract, in-process (the real server: tests/test_servers.py)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from sklearn.metrics import log_loss

from mnist_mlp import MLPClassifier, make_pipeline, skops_trusted_types
from mnist_mlp.serving import InputContract, InvalidInputError, ServedModel

IMAGES = InputContract((28, 28), "uint8")


@pytest.mark.parametrize("data, match", [
    (np.random.default_rng(0).random((1, 28, 28)), "scaled to \\[0, 1\\]"),
    (np.full((1, 28, 28), 7.9), "whole numbers 0..255 \\(uint8\\); got 7.9"),
    (np.full((1, 28, 28), 256), "0..255 \\(uint8\\); got 256..256"),
    (np.full((1, 784), -1), "0..255"),
    (np.zeros((2, 27, 27)),
     "shape \\(2, 27, 27\\); this model takes shape \\(n, 28, 28\\), \\(n, 28, 28, 1\\) or \\(n, 784\\)"),
    (np.zeros((28, 28)), "batch of one"),
    (np.zeros((1, 28, 28, 3)), "shape \\(1, 28, 28, 3\\)"),
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
    np.zeros((3, 28, 28, 1), dtype=np.uint8),  # a channel axis, as the pipeline takes
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


def test_check_values_is_the_contracts_in_process_half():
    """Fractions or out-of-range values for a whole-number model; the rest is scikit-learn's to say."""
    with pytest.raises(InvalidInputError, match="scaled to \\[0, 1\\]") as info:
        IMAGES.check_values(np.full((2, 784), 0.5))
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError, match="0..255 \\(uint8\\); got 0..300"):
        IMAGES.check_values(np.array([[0, 300]]))
    for passes in (np.full((2, 28, 28), 255.0), np.zeros((1, 5, 5), np.int64),  # whole numbers, any shape
                   np.full((1, 784), np.nan), [[1, 2], [3]], np.full((1, 784), "x")):  # NaN, ragged, text
        IMAGES.check_values(passes)
    InputContract((784,), "float32").check_values(np.full((1, 784), 0.5))  # a float model takes any values


def test_a_table_for_an_array_model_needs_the_pixel_positions_as_its_columns():
    """How a CSV reaches the model: its first line became the columns. Without a header line
    they are the first image's pixels (pandas renames repeats: "0", "0.1", ...) and it is lost."""
    rows = np.arange(2 * 784).reshape(2, 784) % 256
    np.testing.assert_array_equal(IMAGES.check(pd.DataFrame(rows)), rows)  # columns 0..783, as ints
    np.testing.assert_array_equal(IMAGES.check(pd.DataFrame(rows).rename(columns=str)), rows)  # or text
    for columns in (["0", "0.1", "0.2"] + [f"{i}.x" for i in range(781)],  # a headerless CSV
                    list(range(1, 785)), [f"pixel_{i}" for i in range(784)]):
        with pytest.raises(InvalidInputError, match="columns must be the pixel positions 0..783") as info:
            IMAGES.check(pd.DataFrame(rows, columns=columns))
        assert "header 0,1,...,783" in str(info.value) and len(str(info.value)) < 300
    with pytest.raises(InvalidInputError, match="pixel positions"):  # to_csv() with its index column
        IMAGES.check(pd.DataFrame(rows).reset_index().rename(columns={"index": "Unnamed: 0"}))


def test_an_image_model_refuses_images_the_other_way_round(digits):
    """Learned from the training images, not MNIST's: dark ink on light paper is refused by a model
    trained on light digits on black, and light digits by one trained on dark ones."""
    x_train, _, x_test, _ = digits
    light_on_dark = InputContract.from_training(x_train, image_shape=(28, 28))
    background = light_on_dark.background
    assert background.pixel_range == (0, 255) and background.border_mean[1] < 20
    assert InputContract.from_dict(json.loads(json.dumps(light_on_dark.to_dict()))) == light_on_dark
    message = (r"input image 1 has a light background \(border mean 2\d\d of 0..255\); this model was trained "
               r"on a dark one \(border mean 0..\d+\): send light ink on dark paper, e.g. 255 - x")
    batch = np.stack([x_test[0], 255 - x_test[1]])
    for check in (light_on_dark.check, light_on_dark.check_values):
        with pytest.raises(InvalidInputError, match=message):
            check(batch)
    grey = np.maximum(x_test, 90).astype(np.uint8)  # a photo's grey background: not inverted
    for passes in (x_test, x_test.reshape(len(x_test), -1), x_test[..., None], grey):
        light_on_dark.check(passes)
        light_on_dark.check_values(passes)

    dark_on_light = InputContract.from_training(255 - x_train, image_shape=(28, 28))
    dark_on_light.check(255 - x_test)
    with pytest.raises(InvalidInputError, match="image 0 has a dark background .* send dark ink on light paper"):
        dark_on_light.check(x_test[:1])
    scaled = InputContract.from_training(x_train / 255.0, image_shape=(28, 28))  # the range is learned too
    with pytest.raises(InvalidInputError, match="of 0..1\\); .* e.g. 1 - x"):
        scaled.check_values(1 - x_test[:1] / 255.0)
    # Training images of both kinds give no side to refuse; a table (no image shape) learns no background.
    both = InputContract.from_training(np.concatenate([x_train, 255 - x_train]), image_shape=(28, 28))
    both.check(255 - x_test)
    both.check(x_test)
    table = InputContract.from_training(np.zeros((5, 4), dtype=np.float32))
    assert table.background is None and table.to_dict()["background"] is None


def test_a_refusal_keeps_its_reason_when_mlflow_rewrites_the_message():
    """MLflow's scoring server assigns ``e.message = f"Failed to predict data '{data}'..."`` to a
    model's MlflowException; the served model's refusal keeps the reason alone."""
    served = ServedModel(None, IMAGES)
    with pytest.raises(MlflowException) as info:
        served.predict(np.full((64, 28, 28), 0.5))
    error = info.value
    error.message = f"Failed to predict data '{np.full((64, 28, 28), 0.5)}'. \nError: {error.message}"
    body = json.loads(error.serialize_as_json())
    assert body["message"].startswith("input looks scaled to [0, 1]") and len(error.serialize_as_json()) < 300
    assert error.get_http_status_code() == 400


def test_the_models_own_value_errors_become_a_one_line_400(digits):
    x_train, y_train, x_test, _ = digits
    pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(x_train[:200], y_train[:200])
    served = ServedModel(pipe, None)  # no contract (a model logged before contracts): scikit-learn speaks
    np.testing.assert_array_equal(served.predict(x_test[:3]), pipe.predict(x_test[:3]))
    with pytest.raises(MlflowException, match="^images must have shape") as info:
        served.predict(np.zeros((2, 27, 27)))
    assert info.value.get_http_status_code() == 400 and "\n" not in info.value.message


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_a_logged_image_model_loads_as_a_checking_pyfunc(store, digits):
    x_train, y_train, x_test, _ = digits
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=2, random_state=0).fit(x_train[:300], y_train[:300])
    served = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id_}/model")
    np.testing.assert_array_equal(served.predict(x_test[:10]), pipe.predict(x_test[:10]))
    with pytest.raises(MlflowException, match="scaled to \\[0, 1\\]") as info:
        served.predict(x_test[:2] / 255.0)
    assert info.value.get_http_status_code() == 400
    # What the pipeline takes, the logged model takes: a channel axis; what it refuses, it refuses.
    np.testing.assert_array_equal(served.predict(x_test[:10, ..., None]), pipe.predict(x_test[:10]))
    with pytest.raises(MlflowException, match="input image 0 has a light background") as info:
        served.predict(255 - x_test[:2])
    assert info.value.get_http_status_code() == 400
    assert served.metadata.metadata["mnist_mlp_input_contract"] == pipe.input_contract_
    assert served.metadata.get_input_schema() is None  # MLflow's schema would cast, not refuse
    # The sklearn flavour is the plain fitted pipeline, as before, and it guards its input itself.
    plain = mlflow.sklearn.load_model(f"runs:/{pipe.run_id_}/model")
    assert type(plain) is type(pipe)
    with pytest.raises(InvalidInputError, match="scaled to \\[0, 1\\]"):
        plain.predict(x_test[:2] / 255.0)


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


@pytest.mark.slow
def test_mlflow_evaluate_scores_the_logged_model_and_the_sklearn_flavour_its_probabilities(store, digits, tmp_path):
    """docs/interop.md: MLflow's evaluator asks only models it loads itself (``mlflow.sklearn``'s
    loader) for probabilities; the checking pyfunc gets labels' metrics, the sklearn flavour saved
    as a plain sklearn model gets log_loss and roc_auc as well."""
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=2, random_state=0).fit(x_train[:300], y_train[:300])
    uri = f"runs:/{pipe.run_id_}/model"
    data = dict(data=x_test[:200].reshape(200, -1), targets=y_test[:200], model_type="classifier",
                feature_names=[str(i) for i in range(784)], evaluators=["default"])
    with mlflow.start_run():
        checked = mlflow.models.evaluate(uri, **data).metrics
    assert checked["accuracy_score"] == pytest.approx(pipe.score(x_test[:200], y_test[:200]))
    assert "log_loss" not in checked and "roc_auc" not in checked
    mlflow.sklearn.save_model(mlflow.sklearn.load_model(uri), str(tmp_path / "plain"),
                              skops_trusted_types=skops_trusted_types())
    with mlflow.start_run():
        plain = mlflow.models.evaluate(str(tmp_path / "plain"), **data).metrics
    assert plain["accuracy_score"] == checked["accuracy_score"]
    assert plain["log_loss"] == pytest.approx(log_loss(y_test[:200], pipe.predict_proba(x_test[:200]),
                                                       labels=pipe.classes_))
    assert 0.5 < plain["roc_auc"] <= 1
