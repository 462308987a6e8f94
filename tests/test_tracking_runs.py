"""Every fit is an MLflow run: where it goes, what it holds, how it ends."""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import mlflow
import numpy as np
import pytest

from mnist_mlp import MLPClassifier, evaluate, make_pipeline
from mnist_mlp._tensorflow import keras
from mnist_mlp.tracking import dataset
from tests.helpers import all_runs, artifact_paths, child_process, run_child

FAST = dict(hidden_layer_sizes=(16,), epochs=3, batch_size=64, random_state=0)

STABLE_PARAMS = {
    "optimizer", "learning_rate", "batch_size", "epochs", "hidden_layer_sizes", "activation",
    "kernel_initializer", "penalty", "alpha", "dropout", "validation_split", "shuffle",
    "random_state", "dataset", "n_train", "n_val",
}


def test_a_bare_fit_is_one_finished_run_with_everything(tracked, flat_digits):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST, optimizer="rmsprop", optimizer__rho=0.99).fit(X[:500], y[:500])
    (run,) = all_runs(tracked)
    assert run.info.run_id == clf.run_id_ and run.info.status == "FINISHED"
    params = run.data.params
    assert STABLE_PARAMS <= set(params)
    assert params["optimizer"] == "rmsprop" and float(params["rho"]) == pytest.approx(0.99)
    assert params["hidden_layer_sizes"] == "[16]" and params["n_train"] == "400" and params["n_val"] == "100"
    history = tracked.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [0, 1, 2]
    assert [m.value for m in history] == pytest.approx(clf.history_["val_accuracy"])
    assert run.data.metrics["weight_updates"] == clf.n_weight_updates_ == 21
    assert run.data.metrics["epochs_run"] == 3 and run.data.metrics["fit_time_s"] > 0
    assert run.data.tags["diverged"] == "false"
    assert run.data.tags["version.scikeras"] and run.data.tags["version.scikit-learn"]
    assert {"history.csv", "learning_curves.png", "weights_violin.png", "model"} <= set(
        artifact_paths(tracked, run.info.run_id)
    )


def test_a_pipeline_fit_is_one_run_and_its_model_serves_images(tracked, digits):
    x_train, y_train, x_test, _ = digits
    with dataset("mnist-embedded"):
        pipe = make_pipeline(**FAST).fit(x_train[:600], y_train[:600])
    (run,) = all_runs(tracked)
    assert run.info.run_id == pipe.run_id_ == pipe["classifier"].run_id_
    assert run.data.params["step.scale"] == "FixedRangeScaler"
    assert run.data.params["dataset"] == "mnist-embedded"
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(model.predict(x_test[:50]), pipe.predict(x_test[:50]))
    # The input is described by the model's contract (checked at predict), not an MLflow schema (which casts).
    assert model.metadata.metadata["mnist_mlp_input_contract"] == pipe.input_contract_
    assert pipe.input_contract_["sample_shape"] == [28, 28] and pipe.input_contract_["dtype"] == "uint8"
    # The whole package ships with the model (every folder), so it loads where mnist_mlp is not installed.
    code = set(artifact_paths(tracked, run.info.run_id, "model/code/mnist_mlp"))
    assert {f"model/code/mnist_mlp/{p}" for p in ("estimator.py", "training", "tracking", "model_selection")} <= code


def test_fit_logs_into_a_child_of_the_active_run_and_leaves_it_open(tracked, flat_digits):
    X, y, _, _ = flat_digits
    with mlflow.start_run() as outer:
        clf = MLPClassifier(**FAST).fit(X[:300], y[:300])
        assert mlflow.active_run().info.run_id == outer.info.run_id
    child = tracked.get_run(clf.run_id_)
    assert child.data.tags["mlflow.parentRunId"] == outer.info.run_id
    assert child.info.status == "FINISHED"
    assert tracked.get_run(outer.info.run_id).info.status == "FINISHED"


def test_tracking_off_by_parameter_or_environment(tracked, flat_digits, monkeypatch):
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST, tracking=False).fit(X[:200], y[:200])
    assert not hasattr(clf, "run_id_")
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    make_pipeline(**FAST).fit(X[:200].reshape(-1, 28, 28), y[:200])
    assert all_runs(tracked) == []


def test_evaluate_logs_test_metrics_and_confusion_matrix(tracked, digits):
    x_train, y_train, x_test, y_test = digits
    pipe = make_pipeline(**FAST).fit(x_train[:600], y_train[:600])
    scores = evaluate(pipe, x_test, y_test)
    run = tracked.get_run(pipe.run_id_)
    for name in ("test_loss", "test_accuracy", "test_f1_macro", "test_precision_macro", "test_recall_macro"):
        assert run.data.metrics[name] == pytest.approx(scores[name])
    assert scores["test_accuracy"] == pytest.approx((pipe.predict(x_test) == y_test).mean())
    assert {"confusion_matrix.png", "confusion_matrix.csv", "classification_report.json"} <= set(
        artifact_paths(tracked, pipe.run_id_)
    )
    np.testing.assert_allclose(scores["confusion_matrix"].sum(axis=1), 1.0)
    csv = tracked.download_artifacts(pipe.run_id_, "confusion_matrix.csv")
    rows = open(csv).read().splitlines()
    assert rows[0].startswith("true\\predicted,0,1") and len(rows) == 11


def test_a_divergent_fit_is_logged_and_tagged_not_a_crash(tracked, flat_digits):
    X, y, X_test, _ = flat_digits
    clf = MLPClassifier(
        hidden_layer_sizes=(32, 32), epochs=3, random_state=0, optimizer="sgd",
        learning_rate_init=0.01, kernel_initializer=keras.initializers.RandomNormal(mean=10.0),
        penalty="l2", alpha=0.01,
    ).fit(X[:500], y[:500])
    run = tracked.get_run(clf.run_id_)
    assert run.info.status == "FINISHED" and run.data.tags["diverged"] == "true"
    losses = [m.value for m in tracked.get_metric_history(clf.run_id_, "loss")]
    assert len(losses) == 3 and (np.isnan(losses).any() or max(losses) > 1e3)
    assert set(clf.predict(X_test)) <= set(range(10))


class _Boom(keras.callbacks.Callback):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise self.exc


@pytest.mark.parametrize("exc, status", [(RuntimeError("disk on fire"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_a_failing_fit_ends_its_run_and_logs_no_model(tracked, digits, exc, status):
    x_train, y_train, _, _ = digits
    pipe = make_pipeline(**dict(FAST, epochs=4), callbacks=[_Boom(exc)])
    with pytest.raises(type(exc)):
        pipe.fit(x_train[:300], y_train[:300])
    (run,) = all_runs(tracked)
    assert run.info.status == status
    assert type(exc).__name__ in run.data.tags["error"]
    assert "model" not in artifact_paths(tracked, run.info.run_id)
    assert len(tracked.get_metric_history(run.info.run_id, "loss")) == 2  # the epochs that ran


def test_a_model_that_fails_to_save_leaves_no_half_written_artifact(tracked, digits, monkeypatch):
    import mlflow.sklearn

    def save_half(model, path, **kwargs):
        Path(path).mkdir()
        (Path(path) / "model.pkl").write_bytes(b"half")  # then the disk fills up
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mlflow.sklearn, "save_model", save_half)
    x_train, y_train, _, _ = digits
    with pytest.raises(OSError, match="No space"):
        make_pipeline(**FAST).fit(x_train[:300], y_train[:300])
    (run,) = all_runs(tracked)
    assert run.info.status == "FAILED" and "No space" in run.data.tags["error"]
    assert "model" not in artifact_paths(tracked, run.info.run_id)
    assert {"learning_curves.png", "history.csv"} <= set(artifact_paths(tracked, run.info.run_id))
    run_folder = Path(urllib.parse.urlparse(run.info.artifact_uri).path).parent
    assert not [p for p in run_folder.iterdir() if p.name.startswith(".staging")]  # cleaned up


def test_the_last_metrics_and_tags_are_written_with_the_runs_end(tracked, flat_digits, monkeypatch):
    from mlflow.tracking import MlflowClient

    calls = []
    log_batch = MlflowClient.log_batch
    monkeypatch.setattr(MlflowClient, "log_batch", lambda self, *a, **k: calls.append(k) or log_batch(self, *a, **k))
    X, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST).fit(X[:300], y[:300])
    # Params at the start, then one write at the end: per-epoch and final metrics and tags together.
    assert len(calls) == 2 and calls[0]["params"] and not calls[0].get("metrics")
    names = {m.key for m in calls[1]["metrics"]}
    assert {"loss", "val_accuracy", "fit_time_s", "weight_updates", "epochs_run"} <= names
    assert {t.key for t in calls[1]["tags"]} >= {"diverged", "training_loop", "model_uri"}
    # The fit's results, not its per-epoch series, are linked to the MLflow 3 logged model.
    assert {m.key for m in calls[1]["metrics"] if m.model_id} == {"fit_time_s", "weight_updates", "epochs_run"}
    run = tracked.get_run(clf.run_id_)
    (output,) = run.outputs.model_outputs
    assert run.info.status == "FINISHED" and run.data.tags["model_uri"] == f"models:/{output.model_id}"
    model = tracked.get_logged_model(output.model_id)
    assert model.source_run_id == run.info.run_id and model.params["epochs"] == str(FAST["epochs"])
    assert {m.key for m in model.metrics} == {"fit_time_s", "weight_updates", "epochs_run"}


def test_bad_input_leaves_no_running_run_and_no_model(tracked, flat_digits):
    X, y, _, _ = flat_digits
    with pytest.raises(ValueError, match="alpha"):
        MLPClassifier(alpha=-1).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="NaN"):
        bad = X[:50].copy()
        bad[3, 3] = np.nan
        MLPClassifier(**FAST).fit(bad, y[:50])
    assert all_runs(tracked) == []  # the bare estimator checks before opening a run
    with pytest.raises(ValueError, match="28, 28"):
        make_pipeline(**FAST).fit(np.zeros((50, 27, 27)), y[:50])
    runs = all_runs(tracked)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert artifact_paths(tracked, runs[0].info.run_id) == []


def test_a_model_that_fails_to_save_publishes_nothing_and_is_marked_failed(tracked, flat_digits, monkeypatch):
    import mlflow.sklearn

    def broken(model, path, **kwargs):
        Path(path).mkdir()
        (Path(path) / "MLmodel").write_text("half")  # half-written, then it fails
        raise OSError("disk full")

    monkeypatch.setattr(mlflow.sklearn, "save_model", broken)
    X, y, _, _ = flat_digits
    with pytest.raises(OSError, match="disk full"):
        MLPClassifier(**FAST).fit(X[:300], y[:300])
    (run,) = all_runs(tracked)
    assert run.info.status == "FAILED" and "disk full" in run.data.tags["error"]
    (model,) = tracked.search_logged_models(experiment_ids=["0"])
    assert str(model.status).endswith("FAILED") and model.source_run_id == run.info.run_id
    assert artifact_paths(tracked, run.info.run_id, "") == sorted(
        ["history.csv", "learning_curves.png", "weights_violin.png"])  # no model, no half of one
    assert tracked.list_logged_model_artifacts(model.model_id) == []


@pytest.mark.slow
def test_concurrent_processes_share_a_fresh_store(tmp_path, monkeypatch):
    """2 processes x 10 fits, starting from a store that does not exist yet."""
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from mnist_mlp import MLPClassifier
        rng = np.random.default_rng(int(sys.argv[1]))
        X = rng.random((120, 8), dtype=np.float32); y = np.arange(120) % 3
        for i in range(10):
            MLPClassifier(hidden_layer_sizes=(4,), epochs=1, batch_size=32, random_state=i).fit(X, y)
        """
    )
    env = {"MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    monkeypatch.setenv("MNIST_MLP_TRACKING", "1")
    import os

    with contextlib.ExitStack() as children:  # both ended however the test ends
        procs = [
            children.enter_context(child_process([sys.executable, "-c", script, str(i)], env={**os.environ, **env},
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for i in range(2)
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "database is locked" not in err and "Traceback" not in err
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(uri).search_runs(["0"], max_results=100)
    assert len(runs) == 20
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.parametrize("kind, labels", [
    ("str", lambda y: np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]),
    ("object", lambda y: np.array([f"digit {v}" for v in y], dtype=object)),
    ("bool", lambda y: y % 2 == 0),
    ("negative ints with gaps", lambda y: (y - 5) * 3),
    ("list", lambda y: [int(v) for v in y]),
], ids=["str", "object", "bool", "negative-ints", "list"])
def test_any_label_kind_fits_and_logs_with_tracking_on(tracked, flat_digits, kind, labels):
    X, y, X_test, _ = flat_digits
    y_kind = labels(y[:300])
    clf = MLPClassifier(**FAST).fit(X[:300], y_kind)
    run = tracked.get_run(clf.run_id_)
    assert run.info.status == "FINISHED", run.data.tags.get("error")
    predicted = clf.predict(X_test[:20])
    assert set(np.asarray(predicted).tolist()) <= set(np.asarray(y_kind).tolist())
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(np.asarray(model.predict(X_test[:20])), np.asarray(predicted))


@pytest.mark.slow
def test_sklearn_searches_in_worker_processes_file_every_fit_under_the_active_run(tracked, digits):
    """scikit-learn's own searches and cross-validation, n_jobs=2 (loky processes), in a run."""
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import (GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV,
                                         cross_val_score, cross_validate)

    x_train, y_train, _, _ = digits
    X, y = x_train[:300], y_train[:300]
    pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, batch_size=64, random_state=0)
    grid = {"classifier__learning_rate_init": [1e-3, 1e-2]}
    with mlflow.start_run(run_name="user run") as parent:
        GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)                        # 4 folds + refit
        RandomizedSearchCV(pipe, grid, n_iter=2, cv=2, n_jobs=2, random_state=0).fit(X, y)  # 4 + 1
        HalvingGridSearchCV(pipe, grid, cv=2, n_jobs=2, min_resources=100, factor=2).fit(X, y)
        cross_val_score(pipe, X, y, cv=2, n_jobs=2)                                # 2
        cross_validate(MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0),
                       X.reshape(len(X), -1) / 255.0, y, cv=2, n_jobs=2)           # 2, a bare classifier
    runs = all_runs(tracked)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    in_workers = [r for r in children if r.data.tags.get("launched_in") == "worker process"]
    halving_fits = 2 * 2 + 1 * 2 + 1  # rung 0: 2 candidates x 2 folds; rung 1: 1 x 2; refit
    assert len(children) == 5 + 5 + halving_fits + 2 + 2
    assert len(runs) == 1 + len(children)  # nothing top-level but the user's run
    assert len(in_workers) == len(children) - 3  # all but the three refits (in this process)
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.info.experiment_id for r in children} == {parent.info.experiment_id}
    print(f"user run: {len(children)} children ({len(in_workers)} fitted in worker processes), "
          f"{len(runs) - 1 - len(children)} other runs")


@pytest.mark.slow
def test_an_estimator_unpickled_after_its_run_ended_starts_a_run_of_its_own(tracked, flat_digits):
    X, y, _, _ = flat_digits
    code = textwrap.dedent("""
        import pickle, sys
        clf = pickle.load(open(sys.argv[1], "rb"))
        clf.fit(pickle.load(open(sys.argv[2], "rb")), pickle.load(open(sys.argv[3], "rb")))
    """)
    with mlflow.start_run() as parent:
        payload = pickle.dumps(MLPClassifier(**dict(FAST, epochs=1)))
    paths = []
    for name, obj in (("clf", None), ("X", X[:200]), ("y", y[:200])):
        path = Path(f"{name}.pkl")
        path.write_bytes(payload if obj is None else pickle.dumps(obj))
        paths.append(str(path))
    run_child([sys.executable, "-c", code, *paths], check=True, timeout=300)
    runs = all_runs(tracked)
    assert len(runs) == 2
    (fit,) = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert "mlflow.parentRunId" not in fit.data.tags  # the run it was pickled under had ended


def test_the_run_active_in_another_thread_is_found(tracked):
    """Guards the one read of MLflow's private per-thread run stacks (tracking/store.py)."""
    import threading

    from mnist_mlp.tracking import store

    found = []
    with mlflow.start_run() as run:
        thread = threading.Thread(target=lambda: found.append(store.active_run_in_process()))
        thread.start()
        thread.join()
    assert found[0] is not None and found[0].info.run_id == run.info.run_id
    assert store.active_run_in_process() is None  # ended: nothing active anywhere


@pytest.fixture
def fresh_context(monkeypatch):
    """MLflow's run context resolved anew for the test (it is cached per process), and again after it."""
    from mnist_mlp.tracking import store

    store.mlflow_context_tags.cache_clear()
    yield monkeypatch
    store.mlflow_context_tags.cache_clear()


def test_runs_carry_mlflows_context_tags_and_the_packages_own_tags_win(tracked, flat_digits, fresh_context):
    from mlflow.tracking.context.registry import resolve_tags

    # A context provider (MLFLOW_RUN_CONTEXT) that names the run and its parent itself.
    fresh_context.setenv("MLFLOW_RUN_CONTEXT",
                         '{"team": "vision", "mlflow.runName": "not the fit", "mlflow.parentRunId": "elsewhere"}')
    X, y, _, _ = flat_digits
    with mlflow.start_run() as outer:
        clf = MLPClassifier(**FAST).fit(X[:300], y[:300])
    tags = tracked.get_run(clf.run_id_).data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"] and tags["mlflow.source.name"]
    assert tags["team"] == "vision"
    expected = {k: v for k, v in resolve_tags().items() if k not in ("mlflow.runName", "mlflow.parentRunId")}
    assert {k: tags.get(k) for k in expected} == expected  # what mlflow.start_run would have set
    assert tags["mlflow.runName"].startswith("MLP 16") and tags["mlflow.parentRunId"] == outer.info.run_id


@pytest.mark.slow
def test_a_script_in_a_git_checkout_is_tagged_with_its_commit():
    # In a process of its own: MLflow caches the git lookup of the first source it resolves.
    import json
    import subprocess

    code = ("import json, sys; sys.argv[0] = sys.argv[1]; from mnist_mlp.tracking import store; "
            "print(json.dumps(store.mlflow_context_tags()))")
    tags = json.loads(run_child([sys.executable, "-c", code, __file__], check=True, timeout=300).stdout.splitlines()[-1])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    commit = head.stdout.strip() if head.returncode == 0 else None  # a checkout that is no repository: none
    assert tags.get("mlflow.source.git.commit") == commit and tags["mlflow.source.name"] == __file__


def test_mlflow_context_falls_back_to_this_process_when_mlflow_moves_it(fresh_context, caplog):
    import builtins

    from mnist_mlp.tracking import store

    real_import = builtins.__import__

    def moved(name, *args, **kwargs):
        if name == "mlflow.tracking.context.registry":
            raise ImportError("moved")
        return real_import(name, *args, **kwargs)

    fresh_context.setattr(builtins, "__import__", moved)
    fresh_context.setattr(sys, "argv", ["train.py"])
    tags = store.mlflow_context_tags()
    assert tags["mlflow.source.name"] == "train.py" and tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.user"]
    assert "resolve_tags) is unavailable (ImportError: moved)" in caplog.text


def test_mlflow_last_active_run_finds_the_fit_after_it(tracked, flat_digits):
    # MLflow keeps the last run it ended in a private thread-local this package must set too: if this
    # fails after an MLflow upgrade, see tracking.store.remember_last_active_run.
    X, y, _, _ = flat_digits
    with mlflow.start_run():
        pass
    clf = MLPClassifier(**FAST).fit(X[:300], y[:300])
    assert mlflow.active_run() is None and mlflow.last_active_run().info.run_id == clf.run_id_
    other = MLPClassifier(**FAST)
    with pytest.raises(ValueError):
        other.fit(X[:300], y[:300, None].repeat(2, axis=1))  # bad input: no run, nothing remembered
    assert mlflow.last_active_run().info.run_id == clf.run_id_


def test_the_dropout_papers_knobs_are_params_and_the_schedule_a_metric_of_each_epoch(tracked, flat_digits):
    """Runs that differ only in a knob can be told apart in the UI; each epoch's rate is in the run."""
    x, y, _, _ = flat_digits
    clf = MLPClassifier(**FAST, input_dropout=0.2, max_norm=3.0, learning_rate="cosine",
                        early_stopping=True, n_iter_no_change=5).fit(x, y)
    run = tracked.get_run(clf.run_id_)
    assert {k: run.data.params[k] for k in ("input_dropout", "max_norm", "learning_rate_schedule",
                                            "early_stopping", "n_iter_no_change", "learning_rate")} == {
        "input_dropout": "0.2", "max_norm": "3.0", "learning_rate_schedule": "cosine",
        "early_stopping": "true", "n_iter_no_change": "5", "learning_rate": "0.001"}
    rates = [m.value for m in tracked.get_metric_history(clf.run_id_, "learning_rate")]
    assert rates == pytest.approx(clf.history_["learning_rate"]) and rates[0] > rates[-1]
    plain = tracked.get_run(MLPClassifier(**FAST).fit(x, y).run_id_).data.params
    assert plain["max_norm"] == "null" and plain["learning_rate_schedule"] == "constant" and "tol" not in plain


def test_a_stop_while_a_run_is_created_leaves_it_where_the_process_ends_it(tracked, monkeypatch):
    """A SIGINT that lands inside ``create_run`` (the run exists, not yet noted open) is held until
    the run is noted: the stop still unwinds, and the run is among those the process ends KILLED."""
    import os
    import signal

    from mlflow.tracking import MlflowClient

    from mnist_mlp import interrupts
    from mnist_mlp.tracking import FitRun, end_runs_open_here

    create = MlflowClient.create_run

    def create_then_stopped(self, *args, **kwargs):
        run = create(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at the next bytecode: here
        return run

    monkeypatch.setattr(MlflowClient, "create_run", create_then_stopped)
    # Python's own Ctrl-C handler first, whatever the parent left (a background job ignores SIGINT,
    # and handled() keeps an ignored signal ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(interrupts.Stopped), interrupts.handled():
            FitRun.open(run_name="cut short")
    finally:
        signal.signal(signal.SIGINT, previous)
    (left,) = tracked.search_runs([r.experiment_id for r in tracked.search_experiments()])
    assert left.info.status == "RUNNING"
    assert end_runs_open_here() == [left.info.run_id]
    assert tracked.get_run(left.info.run_id).info.status == "KILLED"
