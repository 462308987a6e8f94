"""Runs whose worker or process stops before ending them end KILLED (mnist_mlp.tracking.ledger)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tests.helpers import child_process, run_child

# A worker process: opens a run under the pickled fit context, says its id, then waits on stdin:
# a line ends the run FINISHED.
_WORKER = textwrap.dedent("""
    import pickle, sys
    from mnist_mlp.tracking import FitRun, fit_context
    with open(sys.argv[1], "rb") as file:
        context = pickle.load(file)
    with fit_context(context):
        run = FitRun.open(run_name="worker's fit")
    print(run.run_id, flush=True)
    sys.stdin.readline()
    run.end("FINISHED")
    print("ended", flush=True)
    sys.stdin.readline()
""")


def _status(client, run_id):
    return client.get_run(run_id).info.status


@pytest.mark.slow
def test_a_killed_workers_run_ends_killed_and_a_live_or_finished_one_is_left_alone(tracked, tmp_path):
    from mnist_mlp.tracking import FitRun, ledger

    with FitRun.open(run_name="search") as parent:
        context = parent.fit_context(role="fold")
        assert context.ledger is not None
        (tmp_path / "context.pkl").write_bytes(pickle.dumps(context))
        with child_process([sys.executable, "-c", _WORKER, tmp_path / "context.pkl"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True) as killed, \
                child_process([sys.executable, "-c", _WORKER, tmp_path / "context.pkl"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as alive:
            killed_id, alive_id = killed.stdout.readline().strip(), alive.stdout.readline().strip()
            assert ledger.reap() == []  # both alive: their runs are theirs
            os.kill(killed.pid, signal.SIGKILL)
            killed.wait()
            # This call ends it, unless the reaping thread (ledger.watch: an earlier test's scikit-learn
            # search started it in this process) did a moment before; either way once, KILLED, below.
            watched = any(thread.name == "mnist-mlp-ledger" for thread in threading.enumerate())
            assert ledger.end_runs_of_stopped_workers() in ([killed_id], [] if watched else [killed_id])
            run = tracked.get_run(killed_id)
            assert run.info.status == "KILLED"
            assert run.data.tags["error"] == ledger.WORKER_GONE
            assert run.data.tags["mlflow.parentRunId"] == parent.run_id
            assert _status(tracked, alive_id) == "RUNNING"
            alive.stdin.write("\n")
            alive.stdin.flush()
            assert alive.stdout.readline().strip() == "ended"
            assert ledger.reap() == []  # ended by its worker, which let go of its entry
            assert _status(tracked, alive_id) == "FINISHED"
    assert not any(os.scandir(context.ledger[1]))  # no entry left behind


@pytest.mark.slow
def test_a_run_a_thread_leaves_open_at_exit_ends_killed(tracked, tmp_path):
    script = textwrap.dedent("""
        import threading, time
        from mnist_mlp.tracking import FitRun
        opened = threading.Event()
        def fit():
            run = FitRun.open(run_name="a thread's fit")
            print(run.run_id, flush=True)
            opened.set()
            time.sleep(3600)
        threading.Thread(target=fit, daemon=True).start()
        opened.wait()
    """)
    done = run_child([sys.executable, "-c", script], timeout=120, env={**os.environ}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tracked.get_run(done.stdout.split()[0])
    assert run.info.status == "KILLED"
    assert "exited while the fit was running" in run.data.tags["error"]


_EXITS_BEFORE_ITS_WORKER = textwrap.dedent("""
    import pickle, subprocess, sys
    from mnist_mlp.tracking import FitRun
    worker_script, context_path = sys.argv[1], sys.argv[2]
    with FitRun.open(run_name="search") as parent:
        with open(context_path, "wb") as file:
            pickle.dump(parent.fit_context(role="fold"), file)
        worker = subprocess.Popen([sys.executable, "-c", worker_script, context_path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
        print(worker.pid, worker.stdout.readline().strip(), flush=True)
""")


@pytest.mark.slow
def test_runs_of_workers_that_outlive_the_process_end_killed_once_they_are_gone(tracked, tmp_path):
    # A local Dask cluster's workers are killed only after the client's atexit hooks have run.
    from mnist_mlp.tracking import ledger

    sleeper = _WORKER.replace("sys.stdin.readline()", "__import__('time').sleep(3600)", 1)
    done = run_child([sys.executable, "-c", _EXITS_BEFORE_ITS_WORKER, sleeper, tmp_path / "context.pkl"],
                     timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    worker_pid, run_id = done.stdout.split()
    try:
        time.sleep(ledger._EXIT_WAIT_S)
        assert _status(tracked, run_id) == "RUNNING"  # its worker is alive: its run is its own
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(worker_pid), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _status(tracked, run_id) == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _status(tracked, run_id) == "KILLED"
    assert tracked.get_run(run_id).data.tags["error"] == ledger.WORKER_GONE


# A search in the user's run, interrupted by Ctrl-C (SIGINT to the whole process group, as a
# terminal sends it) while its worker processes fit; prints the runs' statuses as the call
# returns, and, for scikit-learn's own search, again a second later, with the process alive.
_SEARCH = textwrap.dedent("""
    import json, sys, time, mlflow
    from mnist_mlp import MLPClassifier, load_embedded_mnist
    (x, y), _ = load_embedded_mnist()
    x, y = x[:600].reshape(600, -1) / 255.0, y[:600]
    if sys.argv[1] == "ours":
        from mnist_mlp import GridSearchCV
    else:
        from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(MLPClassifier(epochs=2000, batch_size=32, random_state=0),
                          {"hidden_layer_sizes": [(64,), (32,)]}, cv=2, n_jobs=2)
    client = mlflow.MlflowClient()
    def statuses():
        return sorted(r.info.status for r in client.search_runs(["0"]) if r.data.tags.get("role") != "search"
                      and r.info.run_name != "user's run")
    with mlflow.start_run(run_name="user's run"):
        try:
            search.fit(x, y)
        except KeyboardInterrupt:
            print(json.dumps({"returned": statuses()}), flush=True)
            time.sleep(1.5)
            print(json.dumps({"later": statuses()}), flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("search", ["ours", "sklearn"])
def test_an_interrupted_parallel_search_leaves_no_run_running(tracked, tmp_path, search):
    with child_process([sys.executable, "-c", _SEARCH, search], cwd=tmp_path, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True) as process:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            folds = [r for r in tracked.search_runs(["0"]) if r.info.status == "RUNNING"
                     and r.data.tags.get("mlflow.parentRunId") and r.data.tags.get("role") != "search"]
            if len(folds) >= 2:
                break
            time.sleep(0.3)
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(1.0)  # into their epochs
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines, err[-3000:]
    if search == "ours":  # by the time the interrupted call returns
        assert lines[0]["returned"] and "RUNNING" not in lines[0]["returned"], lines
    assert lines[-1]["later"] and "RUNNING" not in lines[-1]["later"], lines  # process still alive
    assert "KILLED" in lines[-1]["later"]
    everything = [r.info.status for r in tracked.search_runs(["0"])]
    assert "RUNNING" not in everything, everything
