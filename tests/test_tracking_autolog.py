"""MLflow's autologging on: the package's fits make no run of their own internals and never crash."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from mnist_mlp import MLPClassifier, make_pipeline
from mnist_mlp.tracking.autolog import autolog_suspended

FAST = dict(hidden_layer_sizes=(16,), epochs=2, batch_size=64, random_state=0)


@pytest.fixture(params=["sklearn", "all"])
def autolog(request, tracked):
    """``mlflow.sklearn.autolog()`` or ``mlflow.autolog()`` on for the test, off after it."""
    import mlflow

    # Each flavor's own autolog() call (the teardown's disable=True included) takes
    # precedence over mlflow.autolog(): scikit-learn's is switched on by name too.
    switches = [mlflow.sklearn.autolog] if request.param == "sklearn" else [mlflow.autolog, mlflow.sklearn.autolog]
    for switch in switches:
        switch(silent=True)
    try:
        yield tracked
    finally:
        for switch in switches:
            switch(disable=True, silent=True)


def _runs(client):
    return client.search_runs(["0"])


def _models(client, run):
    return client.search_logged_models(["0"], filter_string=f"source_run_id='{run.info.run_id}'")


def test_a_tracked_pipeline_fit_is_one_run_with_one_model(autolog, digits):
    x, y, _, _ = digits
    pipe = make_pipeline(**FAST).fit(x[:400], y[:400])
    (run,) = _runs(autolog)
    assert run.info.run_id == pipe.run_id_
    assert not [k for k in run.data.params if k.startswith(("onehotencoder", "steps", "memory"))]
    assert len(_models(autolog, run)) == 1


def test_a_bare_fit_leaves_no_label_encoder_run(autolog, flat_digits):
    X, y, _, _ = flat_digits
    MLPClassifier(**FAST, tracking=False).fit(X[:400], y[:400])
    assert _runs(autolog) == []  # scikeras's label-encoder Pipeline made a run here
    clf = MLPClassifier(**FAST).fit(X[:400], y[:400])
    assert [r.info.run_id for r in _runs(autolog)] == [clf.run_id_]


@pytest.mark.slow
@pytest.mark.parametrize("tensorboard", ["absent", "installed"])
def test_a_keras_fit_fallback_does_not_need_tensorboard(autolog, flat_digits, monkeypatch, tensorboard):
    """sample_weight makes the fit fall back to keras.Model.fit, which TensorFlow's autologging patches."""
    if tensorboard == "absent":
        monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard...` now fails
    elif importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed")
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST).fit(X[:400], y[:400], sample_weight=np.ones(400))
    assert clf.training_loop_ == "keras"
    assert [r.info.run_id for r in _runs(autolog)] == [clf.run_id_]


@pytest.mark.slow
def test_a_plain_pipeline_is_autologged_but_not_the_classifier_inside(autolog, digits):
    """What autolog is for: the user's own scikit-learn objects (here an untracked pipeline)."""
    x, y, _, _ = digits
    make_pipeline(**FAST, tracking=False).fit(x[:400], y[:400])
    (run,) = _runs(autolog)
    assert "classifier" in run.data.params  # autolog's params of the user's pipeline
    assert not [k for k in run.data.params if k.startswith("onehotencoder")]


def test_autologging_comes_back_after_nested_and_failed_fits():
    from mlflow.utils import autologging_utils

    with autolog_suspended():
        with autolog_suspended():
            assert autologging_utils._AUTOLOGGING_GLOBALLY_DISABLED
        assert autologging_utils._AUTOLOGGING_GLOBALLY_DISABLED  # the outer fit is still running
    assert not autologging_utils._AUTOLOGGING_GLOBALLY_DISABLED
    with pytest.raises(RuntimeError), autolog_suspended():
        raise RuntimeError("a fit failed")
    assert not autologging_utils._AUTOLOGGING_GLOBALLY_DISABLED
