"""The MLflow store: reaching it, writing to it under contention, and the names of things in it.

One client per store and process (:func:`client`), a new SQLite store created
under a file lock and tuned for concurrent writers, every write retried while
another writer holds SQLite's write lock or collided with it (:func:`retrying`),
a fast reachability check for HTTP servers (:func:`check_reachable`), and what
tells a lost store from a refused write (:func:`reachable`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import sqlite3
import threading
from importlib import metadata
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from mnist_mlp._switch import TRACKING_ENV

logger = logging.getLogger(__name__)

__all__ = ["FALLBACK_DIR_ENV", "IncompleteStoreError", "STORE_ERRORS", "TrackingLostWarning",
           "TrackingRefusedWarning", "TrackingUnavailableError", "active_run_in_process", "check_reachable", "client",
           "current_experiment_id", "experiment_id_for", "library_versions", "mlflow_context_tags", "reachable",
           "remember_last_active_run", "resolve_tracking_uri", "retrying"]

_LOCK_RETRIES = 8



class TrackingUnavailableError(ConnectionError):
    """The tracking server cannot be reached when a fit starts; nothing was trained."""


class TrackingLostWarning(UserWarning):
    """The tracking store went away during a fit; what it missed was saved locally."""


class TrackingRefusedWarning(TrackingLostWarning):
    """The tracking store, still reachable, refused one write; that write was saved locally.

    The run goes on in the store and ends there; only the refused write's
    records are in the local folder. A subclass of :class:`TrackingLostWarning`:
    a filter for records kept outside the store sees both.
    """


#: Where a fit's records go when the store is lost mid-fit (a folder per run).
FALLBACK_DIR_ENV = "MNIST_MLP_FALLBACK_DIR"

try:  # what a lost store raises, beside MLflow's own wrapper
    from requests.exceptions import RequestException as _RequestException
except ImportError:  # pragma: no cover
    _RequestException = OSError
STORE_ERRORS = (MlflowException, OSError, sqlite3.Error, _RequestException)


def check_reachable(tracking_uri, timeout=5.0):
    """Raise :class:`TrackingUnavailableError` if an HTTP tracking server does not answer.

    Local stores (SQLite, files) need no check. Done before a fit opens its
    run, so an unreachable server fails fast and before any training, instead
    of after MLflow's minutes of retries.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answers: /health may be absent behind a proxy, the server is up
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailableError(
            f"MLflow tracking server {tracking_uri} is unreachable ({exc}). Start it, fix "
            f"MLFLOW_TRACKING_URI, or turn tracking off with {TRACKING_ENV}=0."
        ) from None



def _chain(exc):
    """``exc`` and the errors it was raised from (MLflow wraps the database's own)."""
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _is_locked_error(exc):
    text = str(exc).lower()
    return isinstance(exc, (MlflowException, sqlite3.OperationalError)) and (
        "database is locked" in text or "database table is locked" in text)


#: What a database says when two writers collide (SQLite, PostgreSQL, MySQL), also in
#: the text of an HTTP server's error: the write can simply be made again. SQLAlchemy
#: names the driver's error class too ("psycopg2.errors.UniqueViolation"), whatever
#: language the database server speaks.
_CONFLICT_TEXTS = ("unique constraint failed", "duplicate key value violates unique constraint",
                   "uniqueviolation", "duplicate entry", "could not serialize access", "serializationfailure",
                   "deadlock detected", "deadlockdetected", "deadlock found")


def _is_conflict(exc):
    """Whether ``exc`` is two writers colliding, not a store gone.

    MLflow inserts some rows shared between runs (the dataset of two fits of
    the same data) by looking first and inserting after: a second writer in
    between gets a uniqueness violation. Its transaction is rolled back
    whole, and made again it finds the row the other writer inserted. MLflow's
    own "already exists" (a second ``create_experiment``) is an answer, not a
    conflict: the caller handles it.
    """
    if getattr(exc, "error_code", None) == "RESOURCE_ALREADY_EXISTS":
        return False
    # Uniqueness only: another writer explains it; a NOT NULL or foreign key violation it does not.
    return any(text in str(err).lower() for err in _chain(exc) for text in _CONFLICT_TEXTS)


def _is_pool_exhausted(exc):
    """All of SQLAlchemy's pooled connections to a database store taken by this process's other
    writers (MLflow's ``log_inputs`` holds two at once): busy, not lost."""
    return "queuepool limit" in str(exc).lower()


def _is_transient(exc):
    return _is_locked_error(exc) or _is_conflict(exc) or _is_pool_exhausted(exc)


_retry_while_locked = retry(
    retry=retry_if_exception(_is_transient), stop=stop_after_attempt(_LOCK_RETRIES),
    # Random waits: writers that collided once do not collide again in step.
    wait=wait_random_exponential(multiplier=0.05, max=3.2), reraise=True,
)


# Depth of retrying() calls in this thread: MLflow's own report of a lock is dropped inside one.
_RETRYING = threading.local()


class _LockReportDropped(logging.Filter):
    """Drop MLflow's ERROR report of a locked SQLite store while :func:`retrying` makes the write again.

    MLflow logs every ``OperationalError`` with its whole statement (hundreds
    of bound metric rows: kilobytes on the user's terminal) before raising it.
    A lock is retried here, and if it outlasts the retries the error raised
    carries the same text; anything else MLflow reports still shows.
    """

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        # SQLAlchemy's OperationalError, raised from the driver's: the lock is read where retrying reads it.
        return not (getattr(_RETRYING, "depth", 0) and exc is not None
                    and any(_is_locked_error(err) for err in _chain(exc)))


_LOCK_REPORT_DROPPED = _LockReportDropped()


def retrying(call, *args, **kwargs):
    """Call the store, making the write again while another writer holds the lock or collided with it.

    SQLite's write lock held by another process, and a uniqueness conflict
    between concurrent writers (a database's ``IntegrityError``, a
    serialization failure or deadlock), are retried with random exponential
    waits; anything else, or the same error after the last attempt, is raised.
    MLflow's own log of a lock, made while it is retried here, is dropped.
    """
    logging.getLogger("mlflow.store.db.utils").addFilter(_LOCK_REPORT_DROPPED)  # idempotent
    _RETRYING.depth = getattr(_RETRYING, "depth", 0) + 1
    try:
        return _retry_while_locked(call)(*args, **kwargs)
    finally:
        _RETRYING.depth -= 1


def reachable(client):
    """Whether the store of ``client`` answers now.

    What tells a lost store (unreachable: a stopped server, a deleted or
    unreadable database) from one that refused a single write: an HTTP
    server's ``/health``, a local store's cheapest read.
    """
    uri = client.tracking_uri
    try:
        if uri.startswith(("http://", "https://")):
            check_reachable(uri)
        else:
            retrying(client.search_experiments, max_results=1)
    except (TrackingUnavailableError, *STORE_ERRORS):
        return False
    return True


def _sqlite_path(uri):
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


_TUNED_STORES = set()


def _tune_sqlite(dbapi_connection, connection_record):
    """WAL journal, NORMAL sync: readers stop blocking writers, commits stop fsyncing.

    Safe for a local store (a crash loses at most the last commits, never
    corrupts it); MLflow's own engine leaves SQLite's rollback journal and
    full sync on, which makes every small write wait for the disk.
    """
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    files = {Path(row[2]).resolve() for row in cursor.execute("PRAGMA database_list") if row[2]}
    if files & _TUNED_STORES:  # only MLflow stores we opened, never a user's own database
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@functools.lru_cache(maxsize=None)
def _install_sqlite_tuning():
    import sqlalchemy
    from sqlalchemy.engine import Engine

    sqlalchemy.event.listen(Engine, "connect", _tune_sqlite)


@functools.lru_cache(maxsize=None)
def client(tracking_uri):
    """One client per store and process; a new SQLite store is made whole, under a lock.

    Several processes opening a fresh SQLite store at once race on creating
    its schema: the first to take the file lock makes it, the rest find it
    made. It is made aside and moved into place complete (:func:`_create`),
    so a creation cut short (Ctrl-C in a first fit's first seconds) leaves
    nothing at the store's path. A store that an older version left half made
    (a ``.creating`` marker beside it) is made again only while it holds no
    run; one holding runs raises :class:`IncompleteStoreError`, untouched.
    """
    path = _sqlite_path(tracking_uri)
    if path is None:
        return MlflowClient(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    _TUNED_STORES.add(path.resolve())
    _install_sqlite_tuning()
    marker = path.with_name(f"{path.name}.creating")
    with FileLock(f"{path}.lock"), _quiet_schema_setup():
        if marker.exists() and path.exists():
            _discard_half_made(path, marker)
        if path.exists() and path.stat().st_size == 0:  # not a store yet: nothing in it to lose
            path.unlink()
        if not path.exists():
            _create(path)
        marker.unlink(missing_ok=True)
        made = MlflowClient(tracking_uri)
        retrying(made.search_experiments, max_results=1)
    return made


class IncompleteStoreError(RuntimeError):
    """A SQLite store left half made by an interrupted creation holds runs: it is left as it is."""


def _discard_half_made(path, marker):
    """Delete a store whose creation by an older version was cut short, if it holds no run.

    Such a store may lack tables or columns. Runs logged into it since (with
    plain MLflow) are the user's: then nothing is touched and
    :class:`IncompleteStoreError` says what to do.
    """
    with contextlib.closing(sqlite3.connect(path)) as connection:
        try:
            runs = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
        except sqlite3.OperationalError:  # no runs table: the creation stopped before it
            runs = 0
    if runs:
        raise IncompleteStoreError(
            f"{path} holds {runs} run(s), but its creation by an earlier mnist-mlp was cut short "
            f"({marker.name} beside it), so its schema may be incomplete; it was left untouched. Back it up, "
            f"complete it with `mlflow db upgrade sqlite:///{path}`, then delete {marker}.")
    _remove(path)
    logger.info("%s: its creation was interrupted and it holds no run; making it again", path)


def _create(path):
    """Make a new store aside with MLflow's own schema set-up, then link it into place whole.

    Aside: in a temporary file of the same folder, so an interrupted creation
    leaves nothing at ``path``. Its engine is disposed before the move (no
    connection of this process left on the file). Linked, not replaced: a
    store made meanwhile by MLflow itself, outside our lock, is never
    overwritten; it stands and ours is dropped.
    """
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables  # MLflow's own creation of a new store

    aside = path.with_name(f".{path.name}.{os.getpid()}.new").resolve()  # one creation per process: the lock
    _remove(aside)  # left by a killed process that had this pid
    _TUNED_STORES.add(aside)  # made in WAL mode too: several times faster
    try:
        engine = sqlalchemy.create_engine(f"sqlite:///{aside}")
        try:
            _initialize_tables(engine)
        finally:
            engine.dispose()
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        _remove(aside)
        _TUNED_STORES.discard(aside)


def _remove(path):
    """Delete a SQLite file and its journals: a stale journal would be replayed into a new file of that name."""
    for name in (path.name, *(path.name + end for end in ("-wal", "-shm", "-journal"))):
        path.with_name(name).unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_schema_setup():
    """Hide MLflow's INFO lines on creating a store ("Creating initial MLflow database tables...").

    A first fit into a new store is routine here, not news; warnings still show.
    """
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic.runtime.migration")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def active_run_in_process():
    """The MLflow run active in this thread; else the one run active in any live thread; else None.

    MLflow keeps its active run per thread: a fit in a thread of the user's
    ``ThreadPoolExecutor``, or a joblib process pool pickling a fit's
    estimator in its feeder thread, sees ``mlflow.active_run()`` None even
    inside the user's ``with mlflow.start_run():``. This is the one place that
    reads MLflow's private per-thread stacks; if they change, it answers from
    this thread only (the fit then becomes a top-level run, as before). Two
    threads with different active runs: ambiguous, None. A thread that ended
    with a run still on its stack no longer counts.
    """
    run = mlflow.active_run()
    if run is not None:
        return run
    try:
        from mlflow.tracking import fluent

        stacks = fluent._active_run_stack.get_all_thread_values()
    except Exception as exc:  # noqa: BLE001 - MLflow moved its internals: this thread only
        logger.debug("MLflow's per-thread active runs are not readable (%r); using this thread's", exc)
        return None
    live = {thread.ident for thread in threading.enumerate()}
    tops = {stack[-1].info.run_id: stack[-1] for ident, stack in stacks.items() if stack and ident in live}
    return next(iter(tops.values())) if len(tops) == 1 else None


def resolve_tracking_uri():
    """The tracking URI in force: ``MLFLOW_TRACKING_URI``, ``set_tracking_uri`` or MLflow's default."""
    uri = mlflow.get_tracking_uri()
    path = _sqlite_path(uri)
    if path is not None and not path.is_absolute():
        uri = f"sqlite:///{path.resolve()}"  # workers may start elsewhere
    return uri


def experiment_id_for(client, name):
    """The id of the experiment ``name``, created if needed (by whichever process comes first)."""
    experiment = retrying(client.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return retrying(client.create_experiment, name)
    except MlflowException:  # another process created it first
        return retrying(client.get_experiment_by_name, name).experiment_id


def current_experiment_id(client):
    """The experiment a new top-level run goes into: ``MLFLOW_EXPERIMENT_NAME``, the active one, or Default."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        return experiment_id_for(client, name)
    from mlflow.tracking import fluent

    # MLflow's own choice for fluent runs (set_experiment, MLFLOW_EXPERIMENT_ID, a
    # Databricks notebook): private, so read defensively and default to "0".
    get = getattr(fluent, "_get_experiment_id", None)
    return (get() if get else None) or "0"


@functools.lru_cache(maxsize=1)
def library_versions():
    """Versions of the libraries a fit depends on, as run tags."""
    tags = {"python": platform.python_version()}
    # Those whose release can move a figure (the loops' arithmetic, the splits, Keras), and MLflow.
    for dist in ("mnist-mlp", "tensorflow", "tensorflow-cpu", "keras", "scikeras", "scikit-learn", "scipy",
                 "mlflow", "numpy", "numba", "llvmlite", "jax", "jaxlib"):
        try:
            tags[f"version.{dist}"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    # The same releases can give other figures on another CPU: the compiled loop is built for the
    # host CPU (LLVM's name for it), and NumPy's BLAS picks its kernel by CPU (both change sum orders).
    tags.update(_machine())
    return tags


def _machine():
    found = {}
    try:
        import llvmlite.binding

        found["cpu"] = llvmlite.binding.get_host_cpu_name()
    except Exception as exc:  # noqa: BLE001 - a tag, never a reason to fail a fit
        logger.debug("host CPU name not read: %r", exc)
    try:
        import numpy as np
        from threadpoolctl import threadpool_info

        np.ones((2, 2)) @ np.ones((2, 2))  # loads the BLAS, so that threadpoolctl sees it
        blas = [f"{i['internal_api']} {i.get('architecture') or ''}".strip()
                for i in threadpool_info() if i.get("user_api") == "blas"]
        if blas:
            found["blas"] = ", ".join(sorted(set(blas)))
    except Exception as exc:  # noqa: BLE001
        logger.debug("BLAS kernel not read: %r", exc)
    return found


@functools.lru_cache(maxsize=1)
def mlflow_context_tags():
    """The tags ``mlflow.start_run`` gives a new run about where it was started, resolved once per process.

    ``mlflow.user``, ``mlflow.source.name`` and ``mlflow.source.type`` (the
    MLflow UI's User and Source), ``mlflow.source.git.commit`` where the source
    is in a git repository, and whatever else MLflow's run context providers
    add (Databricks, Docker, plugins): from ``mlflow.tracking.context.registry
    .resolve_tags``, what ``start_run`` itself calls (its providers are MLflow's
    plugin interface). Resolving git costs tenths of a second: once per
    process, not per fit. Should MLflow move it, the user and the command
    stand in, and a warning says why.
    """
    try:
        from mlflow.tracking.context.registry import resolve_tags

        return {k: str(v) for k, v in resolve_tags().items()}
    except Exception as exc:  # MLflow moved it, or a provider failed: its nearest equivalent
        import getpass
        import sys

        logger.warning("MLflow's run context (mlflow.tracking.context.registry.resolve_tags) is unavailable "
                       "(%s: %s); runs get mlflow.user and mlflow.source.name from this process instead",
                       type(exc).__name__, exc)
        tags = {"mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "<console>",
                "mlflow.source.type": "LOCAL"}
        with contextlib.suppress(Exception):
            tags["mlflow.user"] = getpass.getuser()
        return tags


def remember_last_active_run(run_id, tracking_uri):
    """Make ``mlflow.last_active_run()`` in this thread find ``run_id``, a run this package just ended.

    MLflow sets it only in its own ``end_run``, and offers no setter: this
    writes its private ``mlflow.tracking.fluent._last_active_run_id`` (a
    thread-local variable in MLflow 3), the one place the package does.
    Only for a run in the store in force, which ``last_active_run`` reads.
    Should MLflow change it, nothing is written (a debug line says so), and
    ``tests/test_tracking_runs.py`` fails.
    """
    from mlflow.tracking import fluent

    if tracking_uri != resolve_tracking_uri():
        return
    last = getattr(fluent, "_last_active_run_id", None)
    if callable(getattr(last, "set", None)):
        last.set(run_id)
    else:
        logger.debug("mlflow.tracking.fluent._last_active_run_id is gone or has no set(): "
                     "mlflow.last_active_run() will not find run %s", run_id)
