"""An interrupted study resumes: nothing finished is refitted, nothing is left RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from mnist_mlp.study import load_experiment
from tests.helpers import child_process

SECTION = "2.4.1"  # 3 alphas x 2 seeds = 6 fits
ARGS = ["study", SECTION, "--epochs", "3", "--n-train", "1200", "--seeds", "0,1"]


# The CLI, with a pause: the process writes its id into MARKER and waits to be
# killed at the end of the AT-th epoch it trains (counted over all its fits).
_PAUSING = """
import os, sys, time
from mnist_mlp._tensorflow import keras
marker, at = sys.argv[1], int(sys.argv[2])
original, seen = keras.callbacks.CallbackList.on_epoch_end, [0]
def on_epoch_end(self, epoch, logs=None):
    original(self, epoch, logs)
    seen[0] += 1
    if seen[0] == at:
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(600)
keras.callbacks.CallbackList.on_epoch_end = on_epoch_end
from mnist_mlp.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _study(uri, *extra, pause=None):
    """The study command as a child process for a ``with`` block, ended when the block ends."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    start = [sys.executable, "-c", _PAUSING, *map(str, pause)] if pause else [sys.executable, "-m", "mnist_mlp"]
    return child_process([*start, *ARGS, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _counts(client):
    experiment = client.get_experiment_by_name(load_experiment(SECTION).experiment_name)
    if experiment is None:
        return {}, []
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    counts = {}
    for run in runs:
        key = (run.data.tags.get("role"), run.info.status)
        counts[key] = counts.get(key, 0) + 1
    return counts, runs


def _fold_results(runs):
    return sorted(
        (r.data.params["alpha"], r.data.params["random_state"], round(r.data.metrics["val_accuracy"], 6))
        for r in runs if r.data.tags.get("role") == "fold" and r.info.status == "FINISHED"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_study_then_rerun(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    marker = tmp_path / "paused.pid"
    with _study(uri, pause=(marker, 2 * 3 + 2)) as proc:  # two fits of 3 epochs done, the third at epoch 2
        deadline = time.monotonic() + 300
        while not marker.is_file():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before, _ = _counts(client)
    assert before == {("search", "RUNNING"): 1, ("fold", "RUNNING"): 1, ("fold", "FINISHED"): 2}
    finished_before = 2

    with _study(uri) as rerun:
        out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    after, runs = _counts(client)
    assert after.get(("fold", "RUNNING"), 0) == 0 and after.get(("search", "RUNNING"), 0) == 0
    assert after[("fold", "FINISHED")] == 6  # exactly one per fit
    # The killed attempt's search run, resumed: one search run, not a second beside it.
    assert after[("search", "FINISHED")] == 1 and ("search", "KILLED") not in after
    assert after[("fold", "KILLED")] == 1  # the fit the kill interrupted
    reused = [r for r in runs if r.data.tags.get("reused_by")]
    assert len(reused) == finished_before
    (search,) = [r for r in runs if r.data.tags.get("role") == "search"]
    assert search.data.metrics["fits_trained"] == 4 and search.data.metrics["fits_reused"] == 2
    assert search.data.tags["attempts"] == "2"
    assert f"Trained 4 fits now; reused 2 of 6" in out and f"Parent run {search.info.run_id}, resumed" in out

    # The same results as an uninterrupted run.
    fresh_uri = f"sqlite:///{tmp_path}/fresh.db"
    with _study(fresh_uri) as fresh:
        _, err = fresh.communicate(timeout=600)
    assert fresh.returncode == 0, err[-2000:]
    _, fresh_runs = _counts(MlflowClient(fresh_uri))
    assert _fold_results(runs) == _fold_results(fresh_runs)

    # --refit fits everything again.
    with _study(uri, "--refit") as forced:
        _, err = forced.communicate(timeout=600)
    assert forced.returncode == 0, err[-2000:]
    again, _ = _counts(client)
    assert again[("fold", "FINISHED")] == 12
    print(f"counts before kill {before}, after rerun {after}")


def test_fingerprints_see_what_changes_a_fit_and_ignore_what_does_not():
    import numpy as np

    from mnist_mlp import make_pipeline
    from mnist_mlp._tensorflow import keras
    from mnist_mlp.study.progress import ProgressCallback
    from mnist_mlp.model_selection.resume import fit_fingerprint

    X, y = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 2
    rows = (np.arange(16), np.arange(16, 20))

    def fingerprint(**params):
        return fit_fingerprint(make_pipeline(epochs=2), {f"classifier__{k}": v for k, v in params.items()},
                               X, y, *rows)

    base = fingerprint()
    assert fingerprint() == base  # stable
    assert fingerprint(callbacks=[ProgressCallback(7)], verbose=1, tracking=False) == base
    assert fingerprint(callbacks=[keras.callbacks.EarlyStopping(patience=2)]) != base
    assert fingerprint(callbacks=[keras.callbacks.EarlyStopping(patience=3)]) != \
        fingerprint(callbacks=[keras.callbacks.EarlyStopping(patience=2)])
    assert fingerprint(alpha=0.5) != base and fingerprint(epochs=3) != base
    assert fingerprint(kernel_initializer=keras.initializers.RandomNormal(mean=10.0)) == \
        fingerprint(kernel_initializer=keras.initializers.RandomNormal(mean=10.0))
    assert fit_fingerprint(make_pipeline(epochs=2), {}, X + 1, y, *rows) != base  # the data
    assert fit_fingerprint(make_pipeline(epochs=2), {}, X, y, np.arange(15), rows[1]) != base  # the rows


def test_fingerprints_cannot_go_stale(monkeypatch):
    """An array changed in place, or other training code, is another fit."""
    import numpy as np

    from mnist_mlp import make_pipeline
    from mnist_mlp.model_selection import resume

    X, y = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 2
    rows = (np.arange(16), np.arange(16, 20))
    pipe = make_pipeline(epochs=2)
    base = resume.fit_fingerprint(pipe, {}, X, y, *rows)
    search = resume.search_fingerprint(pipe, X, y)
    X[3, 5, 5] = 1  # the same object, other contents
    assert resume.fit_fingerprint(pipe, {}, X, y, *rows) != base
    assert resume.search_fingerprint(pipe, X, y) != search
    X[3, 5, 5] = 0
    assert resume.fit_fingerprint(pipe, {}, X, y, *rows) == base
    assert resume.fit_fingerprint(pipe, {}, X, np.array([str(v) for v in y], object), *rows) != base

    identity = resume.code_identity()
    assert set(identity) == {"version", "training_code", "keras", "tensorflow"}
    assert identity["keras"] and identity["tensorflow"]
    for key, other in [("training_code", "0" * 16), ("keras", "9.9.9"), ("version", "9.9")]:
        monkeypatch.setattr(resume, "code_identity", lambda key=key, other=other: {**identity, key: other})
        assert resume.fit_fingerprint(pipe, {}, X, y, *rows) != base, key
        assert resume.search_fingerprint(pipe, X, y) != search, key


def test_the_code_identity_follows_the_training_source(tmp_path, monkeypatch):
    import shutil

    import mnist_mlp
    from mnist_mlp.model_selection import resume

    real = resume.code_identity()
    copy = tmp_path / "mnist_mlp"
    folder = __import__("pathlib").Path(mnist_mlp.__file__).parent
    copy.mkdir()
    for name in resume._TRAINING_CODE:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, copy / name)
    monkeypatch.setattr(mnist_mlp, "__file__", str(copy / "__init__.py"))
    resume.code_identity.cache_clear()
    try:
        same = resume.code_identity()
        (copy / "training/kernels.py").write_text((copy / "training/kernels.py").read_text().replace("2.0", "1.0"))
        resume.code_identity.cache_clear()
        changed = resume.code_identity()
    finally:
        resume.code_identity.cache_clear()
    assert same == real  # the same source, wherever it lies
    assert changed["training_code"] != real["training_code"]


@pytest.mark.slow
def test_a_macro_f1_search_reuses_the_accuracy_searchs_fits_with_their_own_f1(tracked, digits):
    """The study's macro-F1 search after its accuracy search: the same fits, each with the score
    the F1 search would have computed; a scoring no fit was scored by refits."""
    import numpy as np
    from sklearn.metrics import make_scorer, matthews_corrcoef

    from mnist_mlp import GridSearchCV, make_pipeline
    from mnist_mlp.model_selection import TrainValidationSplit

    x_train, y_train, _, _ = digits
    X, y = x_train[:600], y_train[:600]

    def search(scoring, return_train_score=False):
        return GridSearchCV(make_pipeline(hidden_layer_sizes=(8,), epochs=2, random_state=0, shuffle=False),
                            {"classifier__learning_rate_init": [1e-3, 3e-2]}, cv=TrainValidationSplit(0.2),
                            scoring=scoring, refit=False, return_train_score=return_train_score).fit(X, y)

    by_accuracy = search("accuracy", return_train_score=True)
    by_f1 = search("f1_macro", return_train_score=True)  # reused: scored as F1 beside the accuracy
    search(make_scorer(matthews_corrcoef))  # no fit was scored so: refitted
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MNIST_MLP_TRACKING", "0")
        plain = search("f1_macro", return_train_score=True)
    for key in ("mean_test_score", "mean_train_score"):
        np.testing.assert_allclose(by_f1.cv_results_[key], plain.cv_results_[key])
    assert not np.allclose(by_f1.cv_results_["mean_test_score"], by_accuracy.cv_results_["mean_test_score"])
    runs = tracked.search_runs(["0"], max_results=100)
    folds = [r for r in runs if r.data.tags.get("role") == "fold"]
    assert len(folds) == 4 and {r.info.status for r in folds} == {"FINISHED"}  # 2 fits + 2 refitted for MCC
    reused = [r for r in folds if "reused_by" in r.data.tags]
    assert len(reused) == 2 and {r.data.tags["reused_by"] for r in reused} == {by_f1.run_id_}
    # Reused, the F1 search's fits report the accuracy search's fit times: they were not trained again.
    np.testing.assert_array_equal(by_f1.cv_results_["mean_fit_time"], by_accuracy.cv_results_["mean_fit_time"])
