"""The store under concurrent writers: threads, processes, a SQLite file and a PostgreSQL-backed
``mlflow server``; every run FINISHED, nothing diverted to the local fallback folder."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_mlp.tracking import TrackingLostWarning, retrying
from tests.helpers import (BIN, MLFLOW_SERVER_ENV, all_runs, child_process, free_port, logged_models,
                           start_http_server)

ROOT = Path(__file__).resolve().parents[1]
ROWS = 200

# A writer process: the same fits as a writer thread (see write_runs).
_WRITER = "import sys; from tests.test_tracking_store import write_runs; write_runs(int(sys.argv[1]), int(sys.argv[2]))"


def write_runs(writer, fits):
    """``fits`` tracked fits, one after the other; the first on the rows every writer uses (the
    same dataset, logged by all at once), the others on rows of this writer's own."""
    from mnist_mlp import make_pipeline
    from mnist_mlp.data import load_embedded_mnist

    (x, y), _ = load_embedded_mnist()
    for fit in range(fits):
        start = 0 if fit == 0 else ROWS * (1 + writer * fits + fit)
        make_pipeline(hidden_layer_sizes=(8,), epochs=1, batch_size=64, random_state=writer).fit(
            x[start:start + ROWS], y[start:start + ROWS])


def _in_threads(writers, fits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrackingLostWarning)
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(write_runs, range(writers), [fits] * writers))
    return [w for w in caught if issubclass(w.category, TrackingLostWarning)]


def _in_processes(writers, fits):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with contextlib.ExitStack() as stack:  # every writer ended however the test ends
        procs = [stack.enter_context(child_process([sys.executable, "-c", _WRITER, writer, fits], env=env, cwd=ROOT,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
                 for writer in range(writers)]
        errors = [proc.communicate(timeout=600)[1] for proc in procs]
    for proc, err in zip(procs, errors):
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "was lost" not in err and "refused" not in err, err[-3000:]


def _same_dataset_at_once(client, writers=8):
    """``writers`` runs log the same dataset at the same instant: MLflow's insert of a dataset
    looks first and inserts after, so all but one collide. Every run must end FINISHED, its
    inputs recorded, nothing lost."""
    import threading

    from mnist_mlp.data import load_embedded_mnist
    from mnist_mlp.tracking import FitRun
    from mnist_mlp.tracking.fit_logging import dataset_inputs

    (x, y), _ = load_embedded_mnist()
    inputs = dataset_inputs(x[:ROWS], y[:ROWS], ROWS - 20, "digits")
    runs = [FitRun.open(run_name=f"writer {i}", experiment_name="same dataset at once") for i in range(writers)]
    barrier = threading.Barrier(writers)

    def write(run):
        barrier.wait()
        with run:
            run.log_inputs(inputs)
        return run.lost or run.fallback is not None

    with ThreadPoolExecutor(writers) as pool:
        diverted = sum(pool.map(write, runs))
    ended = [client.get_run(run.run_id) for run in runs]
    print(f"{writers} writers, one dataset at once: {sum(r.info.status == 'FINISHED' for r in ended)} FINISHED, "
          f"{diverted} diverted")
    assert diverted == 0 and {r.info.status for r in ended} == {"FINISHED"}
    assert all(len(r.inputs.dataset_inputs) == 2 for r in ended)


def _assert_all_recorded(client, expected, fallback):
    """``expected`` runs, each FINISHED with its params, epoch metrics, datasets and model; none diverted."""
    runs = all_runs(client)
    statuses = sorted(r.info.status for r in runs)
    diverted = sorted(p.name for p in fallback.iterdir()) if fallback.exists() else []
    print(f"{len(runs)} runs: {statuses.count('FINISHED')} FINISHED, {len(diverted)} diverted")
    assert len(runs) == expected and statuses == ["FINISHED"] * expected, statuses
    assert diverted == []
    for run in runs:
        assert run.data.params["n_train"] and "loss" in run.data.metrics
        assert len(run.inputs.dataset_inputs) == 2  # training and validation rows
        assert "model" in logged_models(client, run.info.run_id)


@pytest.fixture
def fallback(monkeypatch, tmp_path):
    """Where diverted records would go (inherited by writer processes)."""
    folder = tmp_path / "unlogged"
    monkeypatch.setenv("MNIST_MLP_FALLBACK_DIR", str(folder))
    return folder


# -- the store's retries ---------------------------------------------------------------------


def _from_database(message):
    """An ``MlflowException`` wrapping SQLite's ``IntegrityError``, as MLflow's SQLAlchemy store raises it."""
    try:
        raise sqlite3.IntegrityError(message)
    except sqlite3.IntegrityError as exc:
        return MlflowException(exc)


def _conflict():
    raise _from_database("UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest")


@pytest.mark.parametrize("busy", [
    _conflict,
    # Sixteen threads writing straight to PostgreSQL: MLflow's log_inputs holds two pooled
    # connections at once, and SQLAlchemy's pool (5 + 10) runs dry for 30 s.
    lambda: _raise(MlflowException("QueuePool limit of size 5 overflow 10 reached, connection timed out, "
                                   "timeout 30.00 (Background on this error at: https://sqlalche.me/e/21/3o7r)")),
], ids=["unique-conflict", "pool-exhausted"])
def test_a_write_that_collided_with_another_writer_is_made_again(busy):
    calls = []

    def write():
        calls.append(1)
        if len(calls) < 3:
            busy()
        return "written"

    assert retrying(write) == "written" and len(calls) == 3


def _raise(error):
    raise error


@pytest.mark.parametrize("error", [
    MlflowException("Experiment(name=x) already exists", error_code="RESOURCE_ALREADY_EXISTS"),
    MlflowException("Invalid value for param", error_code="INVALID_PARAMETER_VALUE"),
    _from_database("NOT NULL constraint failed: runs.name"),  # no other writer explains it
], ids=["already-exists", "invalid", "not-null"])
def test_an_answer_from_the_store_is_not_retried(error):
    calls = []

    def write():
        calls.append(1)
        raise error

    with pytest.raises(MlflowException):
        retrying(write)
    assert len(calls) == 1


def test_a_write_refused_by_a_reachable_store_stays_in_the_run_which_ends_finished(tracked, fallback, digits,
                                                                                monkeypatch):
    """Only an unreachable store is lost: a refused write alone is kept locally, and the run goes on."""
    from mnist_mlp import make_pipeline
    from mnist_mlp.tracking import TrackingRefusedWarning

    def refuse(*args, **kwargs):
        raise MlflowException("refused on purpose", error_code="INVALID_PARAMETER_VALUE")

    monkeypatch.setattr(MlflowClient, "log_inputs", refuse)
    x, y, _, _ = digits
    with pytest.warns(TrackingRefusedWarning, match="refused a write.*the run goes on in the store"):
        pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(x[:ROWS], y[:ROWS])
    run = tracked.get_run(pipe.run_id_)
    assert run.info.status == "FINISHED" and "loss" in run.data.metrics and run.data.params["n_train"]
    assert "model" in logged_models(tracked, pipe.run_id_)
    kept = fallback / pipe.run_id_
    assert sorted(p.name for p in kept.iterdir()) == ["info.json", "inputs.json"]  # that write, nothing else


# -- threads and processes into one SQLite file ------------------------------------------------


@pytest.mark.slow
def test_fits_in_threads_of_one_process_into_one_sqlite_store(tracked, fallback):
    """Two fits at once on the same data used to leave one run RUNNING and divert it: MLflow's
    dataset insert raced, and the conflict was taken for a lost store."""
    _same_dataset_at_once(tracked)
    assert _in_threads(4, 2) == []
    _assert_all_recorded(tracked, 4 * 2, fallback)


@pytest.mark.slow
def test_fits_in_processes_into_one_sqlite_store(tracked, fallback):
    _in_processes(3, 2)
    _assert_all_recorded(tracked, 3 * 2, fallback)


# -- the user's active run, seen from other threads ------------------------------------------


def test_fits_in_threads_inside_the_users_run_become_its_children(tracked, fallback):
    with mlflow.start_run(run_name="user") as user:
        assert _in_threads(2, 1) == []
    runs = [r for r in all_runs(tracked) if r.info.run_id != user.info.run_id]
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags.get("mlflow.parentRunId") for r in runs} == {user.info.run_id}


def test_with_runs_active_in_two_threads_each_threads_fits_are_its_own_runs_children(tracked, fallback, digits):
    """The one run active in the process is the rule; with two, a thread's own run decides, and a
    thread with none cannot tell which was meant: its fit is a run of its own."""
    import threading

    from mnist_mlp import make_pipeline

    x, y, _, _ = digits
    started, done, parents = threading.Barrier(3), threading.Event(), {}

    def user_thread(name):
        with mlflow.start_run(run_name=name) as run:
            parents[name] = run.info.run_id
            started.wait()
            pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(x[:ROWS], y[:ROWS])
            parents[f"{name} fit"] = pipe.run_id_
            done.wait(timeout=300)

    threads = [threading.Thread(target=user_thread, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    try:
        started.wait()
        orphan = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(x[:ROWS], y[:ROWS])
    finally:
        done.set()
        for thread in threads:
            thread.join()
    tag = lambda run_id: tracked.get_run(run_id).data.tags.get("mlflow.parentRunId")  # noqa: E731
    assert tag(parents["a fit"]) == parents["a"] and tag(parents["b fit"]) == parents["b"]
    assert tag(orphan.run_id_) is None


def test_a_thread_that_ended_with_its_run_open_no_longer_parents_fits(tracked, fallback, digits):
    import threading

    from mnist_mlp import make_pipeline

    x, y, _, _ = digits
    left = []
    thread = threading.Thread(target=lambda: left.append(mlflow.start_run(run_name="left open")))
    thread.start()
    thread.join()
    pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(x[:ROWS], y[:ROWS])
    assert "mlflow.parentRunId" not in tracked.get_run(pipe.run_id_).data.tags
    tracked.set_terminated(left[0].info.run_id)


def test_a_pool_thread_with_a_run_of_its_own_files_its_fit_there(tracked, fallback, digits):
    """What docs/concurrency.md advises when several runs are active: each thread its own run."""
    from mnist_mlp import make_pipeline

    x, y, _, _ = digits

    def fit_under(parent_id, seed):
        with mlflow.start_run(run_name=f"seed {seed}", parent_run_id=parent_id) as own:
            pipe = make_pipeline(hidden_layer_sizes=(8,), epochs=1, random_state=seed).fit(x[:ROWS], y[:ROWS])
        return own.info.run_id, pipe.run_id_

    with mlflow.start_run(run_name="user") as user, ThreadPoolExecutor(2) as pool:
        pairs = list(pool.map(fit_under, [user.info.run_id] * 2, [0, 1]))
    for own, fit in pairs:
        assert tracked.get_run(own).data.tags["mlflow.parentRunId"] == user.info.run_id
        assert tracked.get_run(fit).data.tags["mlflow.parentRunId"] == own


# -- a PostgreSQL-backed mlflow server --------------------------------------------------------


def _postgres_bin():
    """The folder of PostgreSQL's server programs (Debian keeps them off PATH), or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return installed[-1].parent if installed else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port; stopped and deleted after the test.

    Run as the ``postgres`` user when this process is root (PostgreSQL refuses root), in a folder
    of its own under the system's temporary directory (pytest's is closed to other users).
    """
    programs = _postgres_bin()
    if programs is None or not (programs / "initdb").exists():
        pytest.skip("PostgreSQL's server programs are not installed (Debian: apt-get install postgresql)")
    user = {}
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run PostgreSQL as")
        user = {"user": "postgres", "group": "postgres"}
    folder = Path(tempfile.mkdtemp(prefix="mnist-mlp-postgres-"))
    data = folder / "data"
    if user:
        shutil.chown(folder, "postgres", "postgres")

    def pg(*args, check=True):
        return subprocess.run([str(programs / args[0]), *map(str, args[1:])], capture_output=True, text=True,
                              timeout=120, check=check, cwd=folder, **user)

    try:
        pg("initdb", "-D", data, "-U", "mlflow", "--auth=trust", "-E", "UTF8", "--no-sync")
        for attempt in range(5):  # the port was free when chosen; another may take it first
            port = free_port()
            started = pg("pg_ctl", "-D", data, "-l", folder / "server.log", "-w", "-t", "120", "-o",
                         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start", check=False)
            if started.returncode == 0:
                break
            log = (folder / "server.log").read_text(errors="replace")
            assert "in use" in log.lower() and attempt < 4, started.stderr + log
        pg("createdb", "-h", "127.0.0.1", "-p", port, "-U", "mlflow", "mlflow")
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        if (data / "postmaster.pid").exists():
            pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_server(postgres, tmp_path, monkeypatch):
    """``mlflow server`` on the PostgreSQL store, two workers, artifacts proxied; tracking pointed at it."""
    pytest.importorskip("psycopg2", reason="psycopg2 (the test extra's psycopg2-binary) reaches PostgreSQL")
    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                      "--backend-store-uri", postgres, "--artifacts-destination", str(tmp_path / "artifacts"),
                      "--workers", "2"],
        tmp_path / "server.log", "/health", env=MLFLOW_SERVER_ENV,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)
        yield MlflowClient(uri)
    finally:
        server.stop()


@pytest.mark.slow
def test_concurrent_writers_on_a_postgresql_backed_server_lose_nothing(postgres_server, fallback):
    """The documented cluster path (docs/cluster.md): threads and processes writing at once."""
    _same_dataset_at_once(postgres_server)
    assert _in_threads(4, 2) == []
    _in_processes(3, 2)
    _assert_all_recorded(postgres_server, 4 * 2 + 3 * 2, fallback)


def test_a_creation_cut_short_leaves_nothing_at_the_stores_path(tmp_path, monkeypatch):
    """Ctrl-C while a new SQLite store's schema is half made (a first fit's first seconds): the
    store is made aside, so its path stays free (plain MLflow, or the next fit, makes it whole)."""
    from alembic import op

    from mnist_mlp.tracking import client

    real_create_table = op.create_table

    def interrupted_after_a_table(*args, **kwargs):  # SQLite commits each DDL statement at once
        real_create_table(*args, **kwargs)
        raise KeyboardInterrupt

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setattr(op, "create_table", interrupted_after_a_table)
    with pytest.raises(KeyboardInterrupt):
        client(uri)
    monkeypatch.setattr(op, "create_table", real_create_table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db.lock"]  # no store, half-made or aside

    made = client(uri)
    run = made.create_run(made.create_experiment("after"))
    made.set_terminated(run.info.run_id)
    assert made.get_run(run.info.run_id).info.status == "FINISHED"
    assert sqlite3.connect(tmp_path / "mlflow.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert client(uri) is made  # one client per store, as before


def test_a_half_made_store_holding_runs_is_refused_and_left_untouched(tmp_path):
    """An older version's interrupted creation left ``mlflow.db.creating``; the user logged runs
    there since, with plain MLflow. Nothing is dropped: an error names the file and its runs."""
    from mnist_mlp.tracking import IncompleteStoreError, client

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    user = MlflowClient(uri)
    for _ in range(3):
        user.set_terminated(user.create_run("0").info.run_id)
    (tmp_path / "mlflow.db.creating").touch()
    before = db.read_bytes()
    with pytest.raises(IncompleteStoreError, match=rf"{db} holds 3 run\(s\).*mlflow db upgrade {uri}"):
        client(uri)
    assert db.read_bytes() == before and (tmp_path / "mlflow.db.creating").exists()
    assert len(user.search_runs(["0"])) == 3


def test_a_half_made_store_holding_no_run_is_made_again(tmp_path):
    """What an older version's interrupted creation left, nothing logged since: made anew, whole."""
    from mnist_mlp.tracking import client

    db = tmp_path / "mlflow.db"
    with contextlib.closing(sqlite3.connect(db)) as half:  # the first of MLflow's tables, no runs table yet
        half.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name VARCHAR(256))")
        half.commit()
    (tmp_path / "mlflow.db.creating").touch()
    made = client(f"sqlite:///{db}")
    run = made.create_run(made.create_experiment("after"))
    made.set_terminated(run.info.run_id)
    assert made.get_run(run.info.run_id).info.status == "FINISHED"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("mlflow.db-")) == [
        "mlflow.db", "mlflow.db.lock"]  # marker gone; WAL files aside


@pytest.mark.slow
def test_a_lock_retried_away_is_not_reported_by_mlflow_on_the_terminal(tmp_path):
    """MLflow logs a locked SQLite store with its whole statement (kilobytes) before raising;
    while it is retried here, that report is dropped. MLflow's other reports still show."""
    import logging

    from mnist_mlp.tracking import client

    reports = []
    handler = logging.Handler()
    handler.emit = lambda record: reports.append(record.getMessage())
    mlflow_db = logging.getLogger("mlflow.store.db.utils")
    mlflow_db.addHandler(handler)
    store = client(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = store.create_run("0").info.run_id
    holder = sqlite3.connect(tmp_path / "mlflow.db", timeout=0)
    try:
        # The real thing, not retried: MLflow reports it (after its 20 s busy timeout) under this logger.
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(MlflowException, match="database is locked"):
            store.log_param(run_id, "beta", "1")
        holder.rollback()
        assert len(reports) == 1 and "database is locked" in reports[0]
        locked, attempts = reports.pop(), []

        def write():  # locked twice, as MLflow reports and raises it, then written
            attempts.append(1)
            if len(attempts) < 3:
                try:
                    raise sqlite3.OperationalError("database is locked")
                except sqlite3.OperationalError as exc:
                    mlflow_db.exception(locked)
                    raise MlflowException(str(exc)) from exc
            mlflow_db.error("another report")  # not a lock: shown
            return "written"

        assert retrying(write) == "written" and len(attempts) == 3
        assert reports == ["another report"]
    finally:
        holder.close()
        mlflow_db.removeHandler(handler)
