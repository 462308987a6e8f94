"""Helpers shared by the tests: child processes that always end, real servers, a store's runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


BIN = Path(sys.executable).parent


def free_port():
    """A port that was free a moment ago: start servers on it with :func:`start_http_server`,
    which retries on another port if something took this one in between."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def refused_port():
    """A port that refuses connections for the whole block: bound here, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def wait_for_http(url, process, timeout=120, poll_s=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(poll_s)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


# Runs the rest of its command line with SIGINT and SIGQUIT at their defaults. A background
# job (`pytest ... &`, a CI step) starts with both ignored, an ignored signal stays ignored
# across exec, and a Python started so never turns Ctrl-C into KeyboardInterrupt: a test's
# child would then outlive the SIGINT meant to stop it. Done by exec from a tiny Python rather
# than with preexec_fn, which may deadlock in a parent with threads (TensorFlow's, MLflow's).
_WITH_DEFAULT_SIGNALS = ("import os, signal, sys; "
                         "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGQUIT)]; "
                         "os.execvp(sys.argv[1], sys.argv[1:])")


def stop_group(process, grace=20):
    """End ``process`` and everything in its process group: SIGTERM, then SIGKILL after ``grace`` s.

    Also when ``process`` has ended already and left children (workers, a server) behind.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM if process.poll() is None else signal.SIGKILL)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):  # what ignored SIGTERM, or outlived its parent
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def child_process(args, **popen_kwargs):
    """``subprocess.Popen(args)`` for the block: default SIGINT whatever this process ignores,
    in a process group of its own that is ended, children and all, when the block ends."""
    process = subprocess.Popen([sys.executable, "-c", _WITH_DEFAULT_SIGNALS, *map(str, args)],
                               start_new_session=True, **popen_kwargs)
    try:
        yield process
    finally:
        stop_group(process, grace=0 if process.poll() is not None else 20)


def run_child(args, *, timeout=600, check=False, **popen_kwargs):
    """Like ``subprocess.run(args, capture_output=True, text=True)``, through :func:`child_process`:
    on a timeout or an error in the test, the child and its own children are ended too."""
    with child_process(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen_kwargs) as process:
        out, err = process.communicate(timeout=timeout)
    done = subprocess.CompletedProcess(process.args[3:], process.returncode, out, err)
    if check:
        done.check_returncode()
    return done


# Whether servers may start now: tests/conftest.py sets it, before each test's fixtures, to whether
# the test is marked slow, so that a server started from the fast tier fails at once instead of
# slowing it unnoticed. Benchmarks that use these helpers outside pytest keep the default.
servers_allowed = True


class ServerProcess:
    """A real server on 127.0.0.1, stopped (and its log kept) when the test ends."""

    def __init__(self, args, log_path, env=None):
        if not servers_allowed:
            raise RuntimeError(f"{Path(args[0]).name} started by a test not marked slow: servers belong in the "
                               "slow tier (@pytest.mark.slow, docs/development.md)")
        self.log_path = log_path
        self.log = open(log_path, "wb")
        full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
        self.process = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )

    def stop(self):
        stop_group(self.process)
        self.log.close()

    def output(self):
        return Path(self.log_path).read_text(errors="replace")


def start_http_server(args_for_port, log_path, probe, env=None, attempts=5):
    """Start ``args_for_port(port)`` on a free port and wait until ``probe`` answers 200.

    The port is free when chosen but may be taken before the server binds it:
    a server that exits saying its address is in use is started again on
    another port. Returns ``(server, port)``.
    """
    for attempt in range(attempts):
        port = free_port()
        server = ServerProcess(args_for_port(port), log_path, env=env)
        try:
            wait_for_http(f"http://127.0.0.1:{port}{probe}", server.process)
            return server, port
        except RuntimeError:
            server.stop()
            if "in use" not in server.output().lower() or attempt == attempts - 1:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


# MLflow 3's server also starts a job runner (a Huey consumer per job queue: seven more Pythons
# importing MLflow) for its GenAI jobs, which nothing here uses; without it a server was ready in
# 42 s instead of 74 s on the busy 2-core machine (benchmarks/results/server_start.json).
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_mlflow_server(tmp_path):
    """A real ``mlflow server`` (SQLite backend, local artifacts) on 127.0.0.1; returns (server, uri)."""
    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                      "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                      "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        tmp_path / "server.log", "/health", env=MLFLOW_SERVER_ENV,
    )
    return server, f"http://127.0.0.1:{port}"


def copy_of_store(empty_store, folder):
    """``folder/mlflow.db``, a copy of the empty store ``empty_store``, as its URI.

    The copy's Default experiment keeps its artifacts under ``folder/mlruns``, as a store made
    there would: MLflow wrote the template's own folder into it, and no public API moves it.
    """
    import shutil
    import sqlite3

    path = Path(folder) / "mlflow.db"
    shutil.copyfile(empty_store, path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   [str(Path(folder).resolve() / "mlruns" / "0")])
    return f"sqlite:///{path}"


def all_runs(client, experiment_ids=("0",)):
    return client.search_runs(list(experiment_ids), max_results=1000)


def logged_models(client, run_id):
    """The run's READY MLflow 3 logged models (its outputs), by name."""
    run = client.get_run(run_id)
    models = {}
    for output in (run.outputs.model_outputs if run.outputs else []):
        model = client.get_logged_model(output.model_id)
        if str(model.status) in ("READY", "LoggedModelStatus.READY"):
            models[model.name] = model
    return models


def artifact_paths(client, run_id, path=None):
    """The run's artifacts under ``path``, with its logged models as if they were folders
    (``model``, ``model/MLmodel``, ...)."""
    found = [] if path and path.split("/")[0] in logged_models(client, run_id) else \
        [a.path for a in client.list_artifacts(run_id, path)]
    for name, model in logged_models(client, run_id).items():
        if path is None:
            found.append(name)
        elif path == name or path.startswith(name + "/"):
            inner = path[len(name) + 1:] or None
            found += [f"{name}/{a.path}" for a in client.list_logged_model_artifacts(model.model_id, inner)]
    return sorted(found)


def error_lines(err):
    """A command's stderr lines, less the note that this environment differs from the committed
    report's (mnist_mlp.study.environment): on a machine whose BLAS kernel or versions differ
    from the report's, every ``study`` prints it, rightly, before its own lines."""
    return [line for line in err.strip().splitlines()
            if "differs from the one the committed study report came from" not in line]
