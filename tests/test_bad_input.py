"""Bad input: the right exception, a message naming the problem, nothing RUNNING, no model."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from mnist_mlp import MLPClassifier, make_pipeline
from mnist_mlp.cli import main
from mnist_mlp.data import IDXFormatError, load_idx_dataset
from tests.helpers import all_runs, artifact_paths

FAST = dict(hidden_layer_sizes=(8,), epochs=1, batch_size=64, random_state=0)


def _images(n=60, shape=(28, 28), value=10):
    return np.full((n, *shape), value, dtype=np.uint8)


def _labels(n=60):
    return np.arange(n) % 10


PIPELINE_CASES = [
    ("27x27 images", lambda: (_images(shape=(27, 27)), _labels()), ValueError, r"shape \(n, 28, 28\)"),
    ("RGB channels", lambda: (_images(shape=(28, 28, 3)), _labels()), ValueError, r"28, 28, 3"),
    ("ragged lists", lambda: ([[1, 2, 3], [4, 5]], [0, 1]), ValueError, "ragged"),
    ("NaN pixels", lambda: (np.where(np.eye(28, dtype=bool), np.nan, 1.0)[None].repeat(60, 0), _labels()),
     ValueError, "NaN"),
    ("inf pixels", lambda: (np.full((60, 28, 28), np.inf), _labels()), ValueError, "infinity"),
    ("strings", lambda: (np.full((60, 28, 28), "a"), _labels()), ValueError, "numeric|convert"),
    ("negative pixels", lambda: (np.full((60, 28, 28), -1.0), _labels()), ValueError, r"values in \[0.0, 255.0\]"),
    ("pixels over 255", lambda: (np.full((60, 28, 28), 300.0), _labels()), ValueError, r"values in \[0.0, 255.0\]"),
    ("a single class", lambda: (_images(), np.zeros(60, dtype=int)), ValueError, "at least 2 classes"),
    ("labels with NaN", lambda: (_images(), np.where(_labels() == 3, np.nan, _labels())), ValueError, "NaN|Input y"),
    ("multi-column labels", lambda: (_images(), np.eye(10)[_labels()] * 3), ValueError, "single column|multilabel|Unknown label"),
    ("continuous labels", lambda: (_images(), np.linspace(0, 1, 60)), ValueError, "class labels; y is 'continuous'"),
]


@pytest.mark.parametrize("what, make, error, message", PIPELINE_CASES, ids=[c[0] for c in PIPELINE_CASES])
def test_bad_training_data(tracked, what, make, error, message):
    X, y = make()
    with pytest.raises(error, match=message):
        make_pipeline(**FAST).fit(X, y)
    (run,) = all_runs(tracked)  # a pipeline fit opens its run before the data reaches the network
    assert run.info.status == "FAILED", what
    assert run.data.tags["error"].startswith(error.__name__), run.data.tags["error"]
    assert "model" not in artifact_paths(tracked, run.info.run_id)


SHAPE_CASES = [
    ("X and y of different lengths", lambda: (_images(60), _labels(50)),
     r"Found input variables with inconsistent numbers of samples: \[60, 50\]"),
    ("empty X", lambda: (_images(0), _labels(0)), r"Found array with 0 sample\(s\) \(shape=\(0, 28, 28\)\)"),
]


@pytest.mark.parametrize("what, make, message", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
@pytest.mark.parametrize("model", ["pipeline", "bare classifier"])
def test_shape_errors_fail_before_any_run(tracked, what, make, message, model):
    X, y = make()
    estimator = make_pipeline(**FAST) if model == "pipeline" else MLPClassifier(**FAST)
    if model == "bare classifier":
        X = X.reshape(len(X), 784)
        message = message.replace("28, 28", "784")
    with pytest.raises(ValueError, match=message):
        estimator.fit(X, y)
    assert all_runs(tracked) == [], what


BAD_PARAMS = [
    ({"alpha": -1.0}, "alpha"), ({"dropout": 1.5}, "dropout"), ({"hidden_layer_sizes": (0,)}, "hidden_layer_sizes"),
    ({"batch_size": 0}, "batch_size"), ({"optimizer": "adamx"}, "optimizer"), ({"epochs": -3}, "epochs"),
    ({"validation_split": 1.0}, "validation_split"), ({"learning_rate_init": -0.1}, "learning_rate_init"),
    ({"penalty": "l3"}, "penalty"), ({"activation": "sinewave"}, "activation"),
]


@pytest.mark.parametrize("params, name", BAD_PARAMS, ids=[n for _, n in BAD_PARAMS])
def test_bad_parameters_fail_before_any_run(tracked, params, name):
    with pytest.raises(ValueError, match=name):
        make_pipeline(**{**FAST, **params}).fit(_images(), _labels())
    assert all_runs(tracked) == []


@pytest.mark.slow
def test_predict_time_errors(tracked):
    with pytest.raises(NotFittedError):
        make_pipeline(**FAST).predict(_images(2))
    pipe = make_pipeline(**FAST).fit(_images(), _labels())
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\)"):
        pipe.predict(_images(2, shape=(32, 32)))
    clf = MLPClassifier(**FAST).fit(np.ones((60, 784), np.float32), _labels())
    fitted = {r.info.run_id for r in all_runs(tracked)}
    with pytest.raises(ValueError, match="X has 100 features, but MLPClassifier is expecting 784"):
        clf.predict(np.ones((2, 100), np.float32))
    with pytest.raises(ValueError, match="input looks scaled to"):
        pipe.predict(_images(2) / 255.0)
    runs = all_runs(tracked)
    assert {r.info.run_id for r in runs} == fitted and {r.info.status for r in runs} == {"FINISHED"}


def test_bad_data_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_idx_dataset(tmp_path / "missing")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 7))
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte.gz"):
        load_idx_dataset(tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "2.7"], "unknown experiment '2.7'"),
        (["fit", "--epochs", "2.5"], "whole number"),
        (["fit", "--penalty", "l7"], "l1, l2 or none"),
        (["fit", "--dropout", "2", "--epochs", "1"], "dropout"),
        (["fit", "--data-dir", "/nonexistent/mnist"], "does not exist"),
        (["study", "2.2", "--seeds", "a,b"], "comma-separated ints"),
        (["tune", "--method", "bayes"], "invalid choice"),
    ],
)
def test_bad_command_lines(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
