"""Searches on a real local Dask cluster (scheduler + 2 workers) logging to a real MLflow server."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("distributed")
from mlflow.tracking import MlflowClient  # noqa: E402

from mnist_mlp import GridSearchCV, make_pipeline  # noqa: E402
from mnist_mlp.cluster import on_cluster  # noqa: E402
from tests.helpers import BIN, ServerProcess, free_port, start_mlflow_server  # noqa: E402

GRID = {"classifier__learning_rate_init": [1e-3, 1e-2], "classifier__hidden_layer_sizes": [(16,), (32,)]}


def _wait_for_workers(address, n, timeout=60):
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A dask scheduler, two single-thread workers and an mlflow server on 127.0.0.1."""
    sched_port = free_port()
    env = {"MNIST_MLP_TF_THREADS": "1"}
    mlflow_server, uri = start_mlflow_server(tmp_path)
    servers = [
        ServerProcess([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(sched_port),
                       "--no-dashboard"], tmp_path / "scheduler.log", env=env),
        mlflow_server,
    ]
    address = f"tcp://127.0.0.1:{sched_port}"
    workers = [
        ServerProcess([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                       "--host", "127.0.0.1"], tmp_path / f"worker{i}.log", env=env)
        for i in range(2)
    ]
    try:
        _wait_for_workers(address, 2)
        monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)
        yield {"address": address, "uri": uri, "workers": workers}
    finally:
        for server in workers + servers:
            server.stop()


def _runs(uri, parent_id):
    client = MlflowClient(uri)
    return client.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              max_results=500)


def test_search_on_the_cluster_matches_local_and_files_every_run(cluster, digits):
    x_train, y_train, _, _ = digits
    with on_cluster(cluster["address"]):
        remote = GridSearchCV(make_pipeline(epochs=2, random_state=0), GRID, cv=2)
        remote.fit(x_train[:1000], y_train[:1000])
    children = _runs(cluster["uri"], remote.run_id_)
    folds = sorted((int(r.data.tags["candidate"]), int(r.data.tags["fold"]))
                   for r in children if r.data.tags["role"] == "fold")
    assert folds == [(c, f) for c in range(4) for f in range(2)]
    assert [r.data.tags["role"] for r in children].count("refit") == 1
    assert {r.info.status for r in children} == {"FINISHED"}

    local = GridSearchCV(make_pipeline(epochs=2, random_state=0), GRID, cv=2)
    local.resume = False  # really fit again, locally
    local.fit(x_train[:1000], y_train[:1000])
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])


def test_a_local_store_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/local.db")
    with pytest.raises(ValueError, match="start a tracking server"):
        with on_cluster("tcp://127.0.0.1:1"):  # never contacted
            pass


def test_a_killed_worker_does_not_stop_the_search(cluster, digits):
    x_train, y_train, _, _ = digits
    client = MlflowClient(cluster["uri"])
    result = {}

    def search():
        try:
            with on_cluster(cluster["address"]):
                s = GridSearchCV(make_pipeline(epochs=6, random_state=0), GRID, cv=2)
                result["search"] = s.fit(x_train[:1500], y_train[:1500])
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=search)
    thread.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # kill a worker while fits are running on it
        runs = client.search_runs(["0"], filter_string="tags.role = 'fold'")
        if any(r.info.status == "FINISHED" for r in runs) and \
                sum(r.info.status == "RUNNING" for r in runs) >= 2:
            break
        time.sleep(0.2)
    victim = cluster["workers"][0].process
    os.killpg(victim.pid, signal.SIGKILL)
    thread.join(timeout=400)
    assert not thread.is_alive() and "search" in result, repr(result.get("error"))

    children = _runs(cluster["uri"], result["search"].run_id_)
    folds = [r for r in children if r.data.tags["role"] == "fold"]
    finished = sorted((r.data.tags["candidate"], r.data.tags["fold"]) for r in folds
                      if r.info.status == "FINISHED")
    assert finished == sorted({(str(c), str(f)) for c in range(4) for f in range(2)})  # one each
    interrupted = [r for r in folds if r.info.status != "FINISHED"]
    assert interrupted and {r.info.status for r in interrupted} <= {"KILLED", "FAILED"}
    assert not [r for r in children if r.info.status == "RUNNING"]
    print(f"fold runs: {len(finished)} FINISHED, {len(interrupted)} interrupted "
          f"({sorted(r.info.status for r in interrupted)})")
