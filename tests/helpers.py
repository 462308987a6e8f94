"""Helpers shared by the tracking tests: a temporary store and real server processes."""

from __future__ import annotations

import contextlib
import os
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


def wait_for_http(url, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


class ServerProcess:
    """A real server on 127.0.0.1, stopped (and its log kept) when the test ends."""

    def __init__(self, args, log_path, env=None):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
        self.process = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
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


def start_mlflow_server(tmp_path):
    """A real ``mlflow server`` (SQLite backend, local artifacts) on 127.0.0.1; returns (server, uri)."""
    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                      "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                      "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        tmp_path / "server.log", "/health",
    )
    return server, f"http://127.0.0.1:{port}"


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
