"""Ctrl-C in the middle of a parallel search: which runs are left RUNNING?

Starts a search in a child process of its own process group (as a terminal
would), waits until its worker fits are training (fold runs RUNNING in the
store), then sends SIGINT to the whole group, as Ctrl-C does. Once the child
has exited, and every process of its group is gone, counts the store's runs by
status, and again a few seconds later (a run that ends late is not ended).

Scenarios (``--scenario``):

- ``ours``: ``mnist_mlp.GridSearchCV(MLPClassifier, n_jobs=2)`` inside the user's run;
- ``sklearn``: scikit-learn's own ``GridSearchCV(MLPClassifier, n_jobs=2)`` inside the user's run;
- ``sklearn-threads``: the same on joblib's threading backend;
- ``sklearn-dask``: the same on joblib's Dask backend, a local cluster of 2 worker processes;
- ``cli``: ``mnist-mlp study 2.2 --n-jobs 2`` (quick fidelity).

Usage::

    python benchmarks/interrupted_search.py --scenario sklearn --repeats 3 [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

_SEARCH = textwrap.dedent("""
    import sys, mlflow, numpy as np
    from mnist_mlp import MLPClassifier, load_mnist
    (x, y), _ = load_mnist()
    x = x[:1200].reshape(1200, -1) / 255.0; y = y[:1200]
    scenario = sys.argv[1]
    if scenario == "ours":
        from mnist_mlp import GridSearchCV
    else:
        from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(MLPClassifier(epochs=400, batch_size=32, random_state=0),
                          {"hidden_layer_sizes": [(64,), (32,)]}, cv=2, n_jobs=2)
    if scenario == "sklearn-dask":
        from dask.distributed import Client, LocalCluster
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True))
    with mlflow.start_run(run_name="user's run"):
        if scenario in ("sklearn-threads", "sklearn-dask"):
            from joblib import parallel_backend
            with parallel_backend({"sklearn-threads": "threading", "sklearn-dask": "dask"}[scenario], n_jobs=2):
                search.fit(x, y)
        else:
            search.fit(x, y)
""")


def statuses(db):
    """Runs of the store by status (read with sqlite3: no MLflow in this process)."""
    if not Path(db).exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        try:
            rows = connection.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        except sqlite3.OperationalError:  # schema not made yet
            return {}
    return dict(rows)


def run_table(db):
    """(name, status) of every run."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        return sorted(connection.execute("SELECT name, status FROM runs").fetchall())


def running_folds(db):
    if not Path(db).exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
        try:
            return connection.execute(
                "SELECT COUNT(*) FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE runs.status = 'RUNNING' AND tags.key = 'mlflow.parentRunId' AND NOT EXISTS ("
                "SELECT 1 FROM tags AS role WHERE role.run_uuid = runs.run_uuid AND role.key = 'role' "
                "AND role.value = 'search')").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def group_members(pgid):
    members = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process.pid)
        except (ProcessLookupError, psutil.Error, OSError):
            pass
    return members


def kill_group(child):
    """SIGKILL ``child``'s process group (a session of its own), whatever is left of it."""
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    for pid in group_members(child.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def once(scenario, folder, rng):
    db = Path(folder) / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "PYTHONUNBUFFERED": "1"}
    if scenario == "cli":
        command = [sys.executable, "-m", "mnist_mlp", "study", "2.2", "--n-jobs", "2", "--epochs", "400",
                   "--n-train", "1200"]
    else:
        command = [sys.executable, "-c", _SEARCH, scenario]
    child = subprocess.Popen(command, cwd=folder, env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgid = child.pid
    try:
        deadline = time.monotonic() + 300
        while running_folds(db) < 1 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.5, 3.0))  # somewhere in the fits' epochs
        if child.poll() is not None:  # it ended (or failed) before the interrupt: nothing to measure
            return {"scenario": scenario, "rc": child.returncode, "ended_before_interrupt": True,
                    "runs": run_table(db), "tail": child.stdout.read().strip().splitlines()[-5:]}
        started = time.monotonic()
        os.killpg(pgid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        try:
            rc = child.wait(timeout=120)
        except subprocess.TimeoutExpired:  # hung: show where, then give up on it
            spy = Path(sys.executable).with_name("py-spy")
            if spy.exists():
                for pid in group_members(pgid):
                    subprocess.run([spy, "dump", "--pid", str(pid)], check=False)
            raise
        exited_s = time.monotonic() - started
        while group_members(pgid) and time.monotonic() - started < 120:
            time.sleep(0.2)
        left = group_members(pgid)
        at_exit = statuses(db)
        time.sleep(5)
        later = statuses(db)
        table = run_table(db)
        output = child.stdout.read()
    finally:
        kill_group(child)
    return {"scenario": scenario, "rc": rc, "exit_s": round(exited_s, 2), "processes_left": len(left),
            "runs_at_exit": at_exit, "runs_5s_later": later, "runs": table, "tail": output.strip().splitlines()[-3:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["ours", "sklearn", "sklearn-threads", "sklearn-dask", "cli"], action="append")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = []
    for scenario in args.scenario or ["ours", "sklearn", "sklearn-threads", "cli"]:
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                result = once(scenario, folder, rng)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
