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

SECTION = "2.4.1"  # 3 alphas x 2 seeds = 6 fits
ARGS = ["study", SECTION, "--epochs", "3", "--n-train", "1200", "--seeds", "0,1"]


def _study(uri, *extra):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    return subprocess.Popen([sys.executable, "-m", "mnist_mlp", *ARGS, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


@pytest.mark.timeout(900)
def test_sigkill_mid_study_then_rerun(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    proc = _study(uri)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill mid-fit, once two fits have finished
        counts, _ = _counts(client)
        if counts.get(("fold", "FINISHED"), 0) >= 2 and counts.get(("fold", "RUNNING"), 0):
            break
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before, _ = _counts(client)
    assert before[("search", "RUNNING")] == 1 and before[("fold", "RUNNING")] == 1
    finished_before = before[("fold", "FINISHED")]

    rerun = _study(uri)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-2000:]
    after, runs = _counts(client)
    assert after.get(("fold", "RUNNING"), 0) == 0 and after.get(("search", "RUNNING"), 0) == 0
    assert after[("fold", "FINISHED")] == 6  # exactly one per fit
    assert after[("search", "KILLED")] == 1 and after[("search", "FINISHED")] == 1
    assert after[("fold", "KILLED")] == 1  # the fit the kill interrupted
    reused = [r for r in runs if r.data.tags.get("reused_by")]
    assert len(reused) == finished_before

    # The same results as an uninterrupted run.
    fresh_uri = f"sqlite:///{tmp_path}/fresh.db"
    fresh = _study(fresh_uri)
    assert fresh.wait(timeout=600) == 0
    _, fresh_runs = _counts(MlflowClient(fresh_uri))
    assert _fold_results(runs) == _fold_results(fresh_runs)

    # --refit fits everything again.
    forced = _study(uri, "--refit")
    assert forced.wait(timeout=600) == 0
    again, _ = _counts(client)
    assert again[("fold", "FINISHED")] == 12
    print(f"counts before kill {before}, after rerun {after}")


def test_fingerprints_see_what_changes_a_fit_and_ignore_what_does_not():
    import numpy as np

    from mnist_mlp import make_pipeline
    from mnist_mlp._tensorflow import keras
    from mnist_mlp.progress import ProgressCallback
    from mnist_mlp.resume import fit_fingerprint

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
