"""Searches on a real local Dask cluster (scheduler + 2 workers) logging to a real MLflow server."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("distributed")
from mlflow.tracking import MlflowClient  # noqa: E402

from mnist_mlp import GridSearchCV, make_pipeline  # noqa: E402
from mnist_mlp.model_selection import on_cluster  # noqa: E402
from mnist_mlp.model_selection.cluster import scattered  # noqa: E402
from mnist_mlp._tensorflow import keras  # noqa: E402
from tests.helpers import BIN, ServerProcess, start_mlflow_server  # noqa: E402

GRID = {"classifier__learning_rate_init": [1e-3, 1e-2], "classifier__hidden_layer_sizes": [(16,), (32,)]}


def _wait_for_workers(address, n, timeout=60):
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)


@contextlib.contextmanager
def _cluster(tmp_path):
    """A dask scheduler, two single-thread workers and an mlflow server on 127.0.0.1, tracking
    pointed at the server, for the block."""
    env = {"MNIST_MLP_TF_THREADS": "1"}
    mlflow_server, uri = start_mlflow_server(tmp_path)
    # Port 0: the scheduler binds a port itself and writes its address into the
    # scheduler file (no race for a port chosen beforehand).
    scheduler_file = tmp_path / "scheduler.json"
    servers, workers = [mlflow_server], []
    try:  # every process started so far is stopped, however the fixture or the test ends
        servers.insert(0, ServerProcess([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                         "--scheduler-file", str(scheduler_file), "--no-dashboard"],
                                        tmp_path / "scheduler.log", env=env))
        deadline = time.monotonic() + 60
        while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline and servers[0].process.poll() is None, servers[0].output()
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            workers.append(ServerProcess([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                          "--host", "127.0.0.1"], tmp_path / f"worker{i}.log", env=env))
        _wait_for_workers(address, 2)
        with pytest.MonkeyPatch.context() as tracking:
            tracking.delenv("MNIST_MLP_TRACKING", raising=False)
            tracking.setenv("MLFLOW_TRACKING_URI", uri)
            tracking.chdir(tmp_path)
            yield {"address": address, "uri": uri, "workers": workers}
    finally:
        for server in workers + servers:
            server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the tests that only use it (starting one is most of such a test's time)."""
    with _cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def cluster_to_break(tmp_path):
    """A cluster of the test's own, for a test that kills one of its workers."""
    with _cluster(tmp_path) as started:
        yield started


def _runs(uri, parent_id):
    client = MlflowClient(uri)
    return client.search_runs(["0"], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              max_results=500)


@pytest.mark.slow
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
    local.set_params(resume=False)  # really fit again, locally
    local.fit(x_train[:1000], y_train[:1000])
    np.testing.assert_allclose(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])


def test_a_local_store_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/local.db")
    with pytest.raises(ValueError, match="start a tracking server"):
        with on_cluster("tcp://127.0.0.1:1"):  # never contacted
            pass


@pytest.mark.slow
def test_broadcast_data_stays_on_every_worker_for_the_block(cluster):
    """Dask's Active Memory Manager drops all replicas but one of idle data within seconds;
    the worker holding the last copy would then take the search's data with it when it dies
    (every fit after that: FutureCancelledError "already forgotten")."""
    from joblib.parallel import get_active_backend

    data = np.arange(50_000, dtype=np.float64)
    with on_cluster(cluster["address"]) as client:
        assert client.amm.running()  # dask's default: the test means something
        with scattered(data):
            (future,) = get_active_backend()[0].data_futures.values()
            assert not client.amm.running()
            time.sleep(6)  # three of the AMM's 2 s rounds, had it been running
            holders = client.who_has([future])[future.key]
            assert len(holders) == 2, holders
        assert client.amm.running()  # restarted: it was running before


class PauseOnce(keras.callbacks.Callback):
    """The first fit anywhere to reach ``epoch`` writes its process id into
    ``marker`` and waits there to be killed; every other fit goes on.

    The kill then lands mid-fit, at a known epoch, whatever the timing."""

    reads_logs_only = True

    def __init__(self, marker, epoch):
        super().__init__()
        self.marker, self.epoch = str(marker), epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # another fit already paused: this one carries on
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(600)  # killed long before this ends


def _error(result):
    """The search's exception with its traceback (a dask FutureCancelledError's repr is empty)."""
    import traceback

    exc = result.get("error")
    return "no error" if exc is None else "".join(traceback.format_exception(exc))


@pytest.mark.slow
def test_a_killed_worker_does_not_stop_the_search(cluster_to_break, digits, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests/
    x_train, y_train, _, _ = digits
    marker = tmp_path / "paused.pid"
    result = {}

    def search():
        try:
            with on_cluster(cluster_to_break["address"]):
                pipe = make_pipeline(epochs=6, random_state=0, callbacks=[PauseOnce(marker, epoch=2)])
                s = GridSearchCV(pipe, GRID, cv=2)
                result["search"] = s.fit(x_train[:1500], y_train[:1500])
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=search)
    thread.start()
    deadline = time.monotonic() + 300
    while not (marker.is_file() and marker.read_text()):  # a fit is paused at its third epoch
        assert time.monotonic() < deadline and thread.is_alive(), _error(result)
        time.sleep(0.1)
    paused = int(marker.read_text())
    (victim,) = [w for w in cluster_to_break["workers"] if os.getpgid(paused) == w.process.pid]
    os.killpg(victim.process.pid, signal.SIGKILL)
    thread.join(timeout=400)
    assert not thread.is_alive() and "search" in result, _error(result)

    children = _runs(cluster_to_break["uri"], result["search"].run_id_)
    folds = [r for r in children if r.data.tags["role"] == "fold"]
    finished = sorted((r.data.tags["candidate"], r.data.tags["fold"]) for r in folds
                      if r.info.status == "FINISHED")
    assert finished == sorted({(str(c), str(f)) for c in range(4) for f in range(2)})  # one each
    interrupted = [r for r in folds if r.info.status != "FINISHED"]
    assert [r.info.status for r in interrupted] == ["KILLED"]  # the paused fit, and only it
    assert not [r for r in children if r.info.status == "RUNNING"]
    print(f"fold runs: {len(finished)} FINISHED, {len(interrupted)} interrupted "
          f"({sorted(r.info.status for r in interrupted)})")
