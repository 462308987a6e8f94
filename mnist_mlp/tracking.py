"""MLflow runs for fits: where a fit logs, what it logs, and how its run ends.

A fit logs into, in this order of precedence:

1. the run of the enclosing tracked estimator (a ``TrackedPipeline`` opens the
   run and its ``MLPClassifier`` logs into it);
2. a child of a search's parent run, described by a :class:`FitContext` that
   travels with the fit to whatever process runs it (``n_jobs=2``);
3. a child of the user's active MLflow run;
4. a new top-level run in the current experiment.

Runs are written through an explicit ``MlflowClient`` rather than MLflow's
fluent, process-global active-run stack, so fits in worker processes and
threads file their runs correctly. A run this module opens always ends:
FINISHED, FAILED (with the error recorded) or KILLED on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import functools
import json
import logging
import math
import os
import platform
import shutil
import sqlite3
import tempfile
import time
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_mlp._switch import FIT_CONTEXT, TRACKING_ENV, tracking_enabled

__all__ = [
    "FALLBACK_DIR_ENV",
    "TRACKING_ENV",
    "FitContext",
    "FitRun",
    "TrackingLostWarning",
    "TrackingUnavailableError",
    "check_reachable",
    "dataset",
    "tracking_enabled",
]

logger = logging.getLogger(__name__)

_PARENT_TAG = "mlflow.parentRunId"
_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
_LOCK_RETRIES = 8


@dataclasses.dataclass(frozen=True)
class FitContext:
    """Where a fit inside a search logs: travels, pickled, to worker processes.

    Attributes
    ----------
    tracking_uri : str
    experiment_id : str
    parent_run_id : str
    tags : dict
        Tags of the fit's run (candidate index, fold, iteration, ...).
    log_model : bool
        Whether the fit logs its model (the refit does, fold fits do not).
    run_name : str or None
        Name of the fit's run.
    test_data : tuple (X_test, y_test) or None
        A test set each fitted pipeline scores itself on, logged in its run.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tags: dict
    log_model: bool = False
    run_name: str | None = None
    test_data: tuple | None = None

    def with_tags(self, **tags):
        return dataclasses.replace(self, tags={**self.tags, **tags})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


_FIT_CONTEXT = FIT_CONTEXT
_CURRENT_RUN: contextvars.ContextVar[FitRun | None] = contextvars.ContextVar(
    "mnist_mlp_current_run", default=None
)
_DATASET: contextvars.ContextVar[str | None] = contextvars.ContextVar("mnist_mlp_dataset", default=None)
_TEST_DATA: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("mnist_mlp_test_data", default=None)


@contextlib.contextmanager
def _bound(var, value):
    """Set a context variable for the block, then restore it."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def fit_context(context):
    """Make every fit in the block log as ``context`` describes."""
    return _bound(_FIT_CONTEXT, context)


def dataset(name):
    """Record ``name`` as the ``dataset`` param of every fit in the block.

    Examples
    --------
    >>> from mnist_mlp.tracking import dataset
    >>> with dataset("fashion-mnist"):
    ...     pass  # pipe.fit(x_train, y_train) logs dataset=fashion-mnist
    """
    return _bound(_DATASET, name)


def test_set(X_test, y_test):
    """Have every tracked pipeline fitted in the block score itself on this test set.

    Its test metrics and confusion matrix go into its own run (see
    :func:`mnist_mlp.evaluate`); fits in a search's worker processes get the
    test set through their :class:`FitContext`.
    """
    return _bound(_TEST_DATA, (X_test, y_test))


def current_test_set():
    """The test set registered by :func:`test_set` for this fit, if any."""
    context = _FIT_CONTEXT.get()
    if context is not None and context.test_data is not None:
        return context.test_data
    return _TEST_DATA.get()


def current_run():
    """The run an enclosing tracked estimator opened for this fit, if any."""
    return _CURRENT_RUN.get()


# -- the store -----------------------------------------------------------------


class TrackingUnavailableError(ConnectionError):
    """The tracking server cannot be reached when a fit starts; nothing was trained."""


class TrackingLostWarning(UserWarning):
    """The tracking store went away during a fit; what it missed was saved locally."""


#: Where a fit's records go when the store is lost mid-fit (a folder per run).
FALLBACK_DIR_ENV = "MNIST_MLP_FALLBACK_DIR"

try:  # what a lost store raises, beside MLflow's own wrapper
    from requests.exceptions import RequestException as _RequestException
except ImportError:  # pragma: no cover
    _RequestException = OSError
_STORE_ERRORS = (MlflowException, OSError, sqlite3.Error, _RequestException)


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



def _is_locked_error(exc):
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def _retrying(call, *args, **kwargs):
    """Call the store, retrying while another process holds SQLite's write lock."""
    for attempt in range(_LOCK_RETRIES):
        try:
            return call(*args, **kwargs)
        except (MlflowException, sqlite3.OperationalError) as exc:
            if attempt == _LOCK_RETRIES - 1 or not _is_locked_error(exc):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


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
def _client(tracking_uri):
    """One client per store and process; a new SQLite store is created under a lock.

    Several processes opening a fresh SQLite store at once race on creating
    its schema. The first to take the file lock creates it; the rest find it made.
    """
    path = _sqlite_path(tracking_uri)
    if path is None:
        return MlflowClient(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    _TUNED_STORES.add(path.resolve())
    _install_sqlite_tuning()
    with open(f"{path}.lock", "w") as lock, _quiet_schema_setup():
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri)
            _retrying(client.search_experiments, max_results=1)  # creates the schema
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return client


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


def resolve_tracking_uri():
    """The tracking URI in force: ``MLFLOW_TRACKING_URI``, ``set_tracking_uri`` or MLflow's default."""
    uri = mlflow.get_tracking_uri()
    path = _sqlite_path(uri)
    if path is not None and not path.is_absolute():
        uri = f"sqlite:///{path.resolve()}"  # workers may start elsewhere
    return uri


def _experiment_id(client, name):
    experiment = _retrying(client.get_experiment_by_name, name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return _retrying(client.create_experiment, name)
    except MlflowException:  # another process created it first
        return _retrying(client.get_experiment_by_name, name).experiment_id


def _current_experiment_id(client):
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        return _experiment_id(client, name)
    from mlflow.tracking.fluent import _get_experiment_id

    return _get_experiment_id() or "0"


@functools.lru_cache(maxsize=1)
def library_versions():
    """Versions of the libraries a fit depends on, as run tags."""
    tags = {"python": platform.python_version()}
    for dist in ("mnist-mlp", "tensorflow", "tensorflow-cpu", "keras", "scikeras",
                 "scikit-learn", "mlflow", "numpy"):
        try:
            tags[f"version.{dist}"] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return tags


# -- a run -----------------------------------------------------------------------


def _param_value(value):
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_MAX_PARAM_LENGTH]


def _finite(value):
    # MLflow stores NaN but not +-inf portably; a diverged loss stays visible as huge.
    value = float(value)
    if math.isinf(value):
        return math.copysign(1.7976931348623157e308, value)
    return value


class FitRun:
    """One MLflow run, written through an explicit client.

    Use :meth:`open` to create it where the current context says; as a
    context manager it ends the run it created: FINISHED, FAILED (error
    recorded in the ``error`` tag) or KILLED (KeyboardInterrupt).

    Parameters
    ----------
    client : mlflow.tracking.MlflowClient
    run_id : str
    experiment_id : str
    log_model : bool
        Whether the owner of this run should log its model.
    """

    def __init__(self, client, run_id, experiment_id, *, log_model=True, artifact_uri=None):
        self.client = client
        self.run_id = run_id
        #: Where the run's artifacts live; None: ask MLflow for each upload.
        self.artifact_uri = artifact_uri
        self.experiment_id = experiment_id
        self.log_model = log_model
        self.tracking_uri = client.tracking_uri
        #: Params and tags to write with the next ``log_params`` / at the end,
        #: saving the store a round trip each.
        self.pending_params = {}
        #: Metrics ``[(step, {name: value})]`` and tags written when the run ends.
        self.end_metrics = []
        self.end_tags = {}
        self._ended = False
        #: Set once the store failed mid-fit; from then on records go to ``fallback_dir``.
        self.lost = False
        self.fallback_dir = None

    def _store(self, call, *args, local, **kwargs):
        """Write through the store; if it is lost, write ``local()`` to the fallback folder."""
        if not self.lost:
            try:
                return _retrying(call, *args, **kwargs)
            except _STORE_ERRORS as exc:
                self._lose(exc)
        local()

    def _lose(self, exc):
        import warnings

        self.lost = True
        root = Path(os.environ.get(FALLBACK_DIR_ENV, "mlflow-unlogged"))
        self.fallback_dir = (root / self.run_id).resolve()
        self.fallback_dir.mkdir(parents=True, exist_ok=True)
        info = {"tracking_uri": self.tracking_uri, "run_id": self.run_id,
                "experiment_id": self.experiment_id, "lost_because": f"{type(exc).__name__}: {exc}"}
        path = self.fallback_dir / "info.json"
        known = json.loads(path.read_text()) if path.exists() else {}  # a second writer adds, never erases
        path.write_text(json.dumps({**info, **known}, indent=2))
        message = (f"MLflow tracking store {self.tracking_uri} was lost during run {self.run_id} "
                   f"({type(exc).__name__}); its params, metrics, artifacts and model are being "
                   f"saved in {self.fallback_dir} instead")
        logger.warning(message)
        warnings.warn(message, TrackingLostWarning, stacklevel=3)

    def _local_json(self, name, update):
        path = self.fallback_dir / name
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(update)
        path.write_text(json.dumps(data, indent=2, default=str))

    def _local_metrics(self, series):
        with open(self.fallback_dir / "metrics.jsonl", "a") as fh:
            for step, values in series:
                for key, value in values.items():
                    fh.write(json.dumps({"key": key, "value": float(value), "step": step}) + "\n")

    def _local_artifacts(self, path, artifact_path):
        target = self.fallback_dir / "artifacts" / (artifact_path or "")
        if Path(path).is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)

    @classmethod
    def open(cls, *, run_name, tags=None, experiment_name=None):
        """Create a run where the current context says (see the module docstring).

        Parameters
        ----------
        run_name : str
        tags : dict, default=None
        experiment_name : str, default=None
            Put the run in this experiment (created if needed) instead. If a
            run is active elsewhere, it is recorded in the ``launched_by`` tag
            rather than as the parent, which MLflow shows only within one
            experiment.

        Returns
        -------
        FitRun
        """
        tags = dict(tags or {})
        context = _FIT_CONTEXT.get()
        check_reachable(context.tracking_uri if context is not None else resolve_tracking_uri())
        if context is not None:
            client = _client(context.tracking_uri)
            experiment_id, log_model = context.experiment_id, context.log_model
            tags.update(context.tags)
            run_name = context.run_name or run_name
            tags[_PARENT_TAG] = context.parent_run_id
        else:
            client = _client(resolve_tracking_uri())
            active = mlflow.active_run()
            log_model = True
            experiment_id = (
                _experiment_id(client, experiment_name) if experiment_name
                else active.info.experiment_id if active is not None
                else _current_experiment_id(client)
            )
            if active is not None:
                same = active.info.experiment_id == experiment_id
                tags[_PARENT_TAG if same else "launched_by"] = active.info.run_id
        tags.update(library_versions())
        tags["mlflow.runName"] = run_name
        run = _retrying(
            client.create_run, experiment_id,
            tags={k: str(v) for k, v in tags.items()}, run_name=run_name,
        )
        return cls(client, run.info.run_id, experiment_id, log_model=log_model,
                   artifact_uri=run.info.artifact_uri)

    @classmethod
    def attach(cls, tracking_uri, run_id):
        """Log more into an existing run (e.g. test metrics after the fit). Never ends it."""
        client = _client(tracking_uri)
        try:
            info = _retrying(client.get_run, run_id).info
        except _STORE_ERRORS as exc:
            attached = cls(client, run_id, None, log_model=False)
            attached._lose(exc)
        else:
            attached = cls(client, run_id, info.experiment_id, log_model=False,
                           artifact_uri=info.artifact_uri)
        attached._ended = True  # not ours to end
        return attached

    def fit_context(self, *, log_model=False, run_name=None, **tags):
        """A :class:`FitContext` whose fits become children of this run."""
        return FitContext(
            self.tracking_uri, self.experiment_id, self.run_id, tags, log_model, run_name,
            test_data=_TEST_DATA.get(),
        )

    def children(self):
        """The runs whose parent is this run."""
        return _retrying(
            self.client.search_runs, [self.experiment_id],
            filter_string=f"tags.`{_PARENT_TAG}` = '{self.run_id}'", max_results=5000,
        )

    def as_current(self):
        """Make nested tracked estimators log into this run instead of opening their own."""
        return _bound(_CURRENT_RUN, self)

    # logging -------------------------------------------------------------------

    def log_params(self, params):
        params, self.pending_params = {**self.pending_params, **params}, {}
        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's per-batch param limit
            self._store(self.client.log_batch, self.run_id, params=items[start:start + 100],
                        local=lambda: self._local_json("params.json", params))

    def log_metrics(self, metrics, *, step=0):
        self.log_metric_series([(step, metrics)])

    def log_metric_series(self, series, tags=None):
        """Log ``[(step, {name: value})]`` and optional tags in as few calls as MLflow allows."""
        now = int(time.time() * 1000)
        batch = [Metric(k, _finite(v), now, step) for step, values in series for k, v in values.items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        def local():
            self._local_metrics(series)
            self._local_json("tags.json", tags or {})

        for start in range(0, max(len(batch), 1), 1000):  # MLflow's per-batch metric limit
            self._store(self.client.log_batch, self.run_id, metrics=batch[start:start + 1000],
                        tags=tag_list if start == 0 else [], local=local)
            local = lambda: None  # noqa: E731  (the first fallback wrote everything)

    def set_tags(self, tags):
        if tags:
            self.log_metric_series([], tags)

    def log_files(self, files, artifact_path=None, dpi=80):
        """Log several artifacts in one call: ``{name: str text or matplotlib Figure}``."""
        with self.staged_artifacts(artifact_path) as folder:
            for name, content in files.items():
                if isinstance(content, str):
                    (folder / name).write_text(content)
                else:  # fast zlib level: a few % larger PNG, a third of the encode time
                    content.savefig(folder / name, dpi=dpi, pil_kwargs={"compress_level": 1})

    def log_file(self, path, artifact_path=None):
        self._store(self.client.log_artifact, self.run_id, str(path), artifact_path,
                    local=lambda: self._local_artifacts(path, artifact_path))

    def log_dir(self, path, artifact_path):
        self._store(self.client.log_artifacts, self.run_id, str(path), artifact_path,
                    local=lambda: self._local_artifacts(path, artifact_path))

    def _local_artifact_root(self):
        """The run's artifact folder if it is on this machine's disk, else None."""
        uri = self.artifact_uri or ""
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme == "file":
            return Path(urllib.request.url2pathname(parsed.path))
        if parsed.scheme == "" and uri:
            return Path(uri)
        return None

    @contextlib.contextmanager
    def staged_artifacts(self, artifact_path=None):
        """A folder to write artifacts in; on leaving the block they join the run.

        When the run's artifacts are on local disk, the folder is made beside
        them and its entries are renamed into place: no second copy of a model,
        and never a half-written artifact (a failed block publishes nothing).
        Elsewhere (a tracking server), the folder is uploaded.
        """
        root = self._local_artifact_root()
        staging_parent = None
        if root is not None and not self.lost:
            with contextlib.suppress(OSError):
                root.mkdir(parents=True, exist_ok=True)
                staging_parent = root.parent
        try:
            folder = Path(tempfile.mkdtemp(prefix=".staging-", dir=staging_parent))
        except OSError:
            staging_parent, folder = None, Path(tempfile.mkdtemp(prefix="mnist_mlp-"))
        try:
            yield folder
            if staging_parent is not None:
                self._store(self._rename_into, folder, root / (artifact_path or ""),
                            local=lambda: self._local_artifacts(folder, artifact_path))
            else:
                self.log_dir(folder, artifact_path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def _rename_into(folder, target):
        target.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            destination = target / entry.name
            if entry.is_dir() and destination.exists():  # rename cannot merge folders
                shutil.copytree(entry, destination, dirs_exist_ok=True)
            else:
                os.replace(entry, destination)

    # ending --------------------------------------------------------------------

    def end(self, status="FINISHED", error=None):
        if self._ended:
            return
        self._ended = True
        tags = dict(self.end_tags)
        if error is not None:
            tags["error"] = f"{type(error).__name__}: {error}"[:5000]
        if self.end_metrics or tags:
            with contextlib.suppress(Exception):  # a logging error must not hide the fit's own
                self.log_metric_series(self.end_metrics, tags)
        self._store(self.client.set_terminated, self.run_id, status,
                    local=lambda: self._local_json("info.json", {"status": status}))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.end("FINISHED")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("KILLED", exc)
        else:
            self.end("FAILED", exc)
        return False


@contextlib.contextmanager
def owned_run(run_name, tags=None):
    """The run of the enclosing tracked estimator, or a new one this block owns.

    Yields ``(run, owned)``: ``owned`` is True when the block created the run
    (and so ends it and logs the model).
    """
    existing = current_run()
    if existing is not None:
        yield existing, False
        return
    with FitRun.open(run_name=run_name, tags=tags) as run, run.as_current():
        yield run, True

