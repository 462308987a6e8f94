"""Running a search's fits on a Dask cluster, tracked in a shared MLflow server.

Inside :func:`on_cluster`, every search (any ``GridSearchCV`` or
``HalvingGridSearchCV``, ours or scikit-learn's) sends its fits through
joblib's Dask backend to the cluster's workers. Each fit carries its
tracking URI, experiment and parent run (see :mod:`mnist_mlp.tracking`), so
the workers log their child runs to the tracking server the user names. A
local SQLite or file store cannot be shared by workers on other machines: it
is refused before any work starts.

Needs the ``dask`` extra: ``pip install 'mnist-mlp[dask]'``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading

__all__ = ["TensorFlowThreads", "on_cluster", "scattered"]

logger = logging.getLogger(__name__)

# The client of the innermost on_cluster block (searches read it to broadcast their data).
_CLIENT = contextvars.ContextVar("mnist_mlp_dask_client", default=None)

#: Threads each fit's TensorFlow may use on a worker (default: the worker's
#: cores divided by its threads, so concurrent fits do not oversubscribe).
TF_THREADS_ENV = "MNIST_MLP_TF_THREADS"


def _require_shared_store(tracking_uri):
    if not tracking_uri.startswith(("http://", "https://")):
        raise ValueError(
            f"tracking URI {tracking_uri!r} is a local store, which workers on other machines "
            "cannot share: start a tracking server (mlflow server --backend-store-uri ... "
            "--artifacts-destination ...) and set MLFLOW_TRACKING_URI=http://host:port, or turn "
            "tracking off with MNIST_MLP_TRACKING=0"
        )


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # the dask extra is not installed: on_cluster says so
    _WorkerPlugin = object


class TensorFlowThreads(_WorkerPlugin):
    """Worker plugin: size TensorFlow's thread pools to the worker, once, at start.

    A worker running ``nthreads`` fits at once on ``cores`` cores gives each
    fit ``cores // nthreads`` intra-op threads (``MNIST_MLP_TF_THREADS``
    overrides) and one inter-op thread: one fit per worker thread, no
    oversubscription.
    """

    name = "mnist-mlp-tensorflow-threads"

    def setup(self, worker):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = int(os.environ.get(TF_THREADS_ENV) or max(1, cores // max(1, worker.state.nthreads)))
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
        from mnist_mlp._tensorflow import tf

        with contextlib.suppress(RuntimeError):  # already initialised: the env vars stand
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        worker.mnist_mlp_tf_threads = threads


_BACKEND = "mnist-mlp-dask"


def _register_backend():
    """joblib's Dask backend, minus its scattering of arguments to single workers.

    joblib sends every argument over 1 kB (the estimator, the fold's row
    indices) to ONE worker and lets tasks elsewhere depend on it; when that
    worker dies the data is gone and every task that needs it is cancelled,
    which fails the whole search. Sending such small arguments with each
    task instead costs little; the data itself is broadcast by
    :func:`scattered`.
    """
    import joblib
    from joblib._dask import DaskDistributedBackend

    class ResilientDaskBackend(DaskDistributedBackend):
        def start_call(self):
            super().start_call()
            self.call_data_futures = None  # no auto-scatter

        def stop_call(self):
            self.call_data_futures = {}
            super().stop_call()

    joblib.register_parallel_backend(_BACKEND, ResilientDaskBackend)


@contextlib.contextmanager
def scattered(*arrays):
    """Inside :func:`on_cluster`, broadcast ``arrays`` to every worker for the block.

    joblib otherwise scatters a search's data to one worker and lets the
    others fetch it; if that worker dies, the data dies with it and the
    search fails. A copy on every worker survives the loss of any of them;
    the scheduler's Active Memory Manager, which would drop the extra copies
    a few seconds later, is paused for the block. Outside a cluster block it
    does nothing.
    """
    client = _CLIENT.get()
    if client is None:
        yield
        return
    import joblib

    with _replicas_kept(client), joblib.parallel_backend(_BACKEND, n_jobs=-1, scatter=list(arrays)):
        yield


# Blocks on each scheduler that currently need every replica kept (see _replicas_kept).
_KEEPING = {}
_KEEPING_LOCK = threading.Lock()


@contextlib.contextmanager
def _replicas_kept(client):
    """Pause the scheduler's Active Memory Manager while broadcast data must stay broadcast.

    Its default ``ReduceReplicas`` policy drops every replica of a key but one
    as soon as no task is waiting for it, a few seconds after a broadcast. The
    worker left holding the only copy then takes the search's data with it
    when it dies, and every fit submitted afterwards is cancelled ("already
    forgotten"). The manager is restarted when the last such block on that
    scheduler ends, if it was running before; meanwhile the cluster only keeps
    more copies than it needs, which costs memory, never correctness.
    """
    key = client.scheduler.address
    with _KEEPING_LOCK:
        count, was_running = _KEEPING.get(key, (0, False))
        if count == 0:
            try:
                was_running = bool(client.amm.running())
                if was_running:
                    client.amm.stop()
            except Exception as exc:  # noqa: BLE001 - a scheduler without an AMM drops nothing
                logger.debug("could not pause the Active Memory Manager (%r): replicas stay as they are", exc)
                was_running = False
        _KEEPING[key] = (count + 1, was_running)
    try:
        yield
    finally:
        with _KEEPING_LOCK:
            count, was_running = _KEEPING.pop(key)
            if count > 1:
                _KEEPING[key] = (count - 1, was_running)
            elif was_running:
                with contextlib.suppress(Exception):  # the cluster may be gone by now
                    client.amm.start()


@contextlib.contextmanager
def on_cluster(scheduler_address, *, tracking_uri=None):
    """Run the fits of searches in this block on the Dask cluster at ``scheduler_address``.

    Parameters
    ----------
    scheduler_address : str
        E.g. ``"tcp://10.0.0.5:8786"``.
    tracking_uri : str, default=None
        The MLflow tracking server the workers log to (default: the current
        tracking URI). Must be an ``http(s)://`` server when tracking is on.

    Yields
    ------
    distributed.Client

    Raises
    ------
    ValueError
        If tracking is on and the tracking URI is a local store.
    ImportError
        If the ``dask`` extra is not installed.

    Examples
    --------
    >>> from mnist_mlp.model_selection import on_cluster
    >>> with on_cluster("tcp://scheduler:8786"):  # doctest: +SKIP
    ...     search.fit(x_train, y_train)
    """
    import mlflow

    from mnist_mlp._switch import tracking_enabled
    from mnist_mlp.tracking import check_reachable, resolve_tracking_uri

    if tracking_enabled():
        uri = tracking_uri or resolve_tracking_uri()
        _require_shared_store(uri)
        check_reachable(uri)
    try:
        import joblib
        from distributed import Client
    except ImportError as exc:
        raise ImportError("running on a Dask cluster needs: pip install 'mnist-mlp[dask]'") from exc
    previous = mlflow.get_tracking_uri()
    if tracking_uri:  # only an explicit argument changes the process's tracking URI, for the block
        mlflow.set_tracking_uri(tracking_uri)
    try:
        with Client(scheduler_address) as client:
            client.register_plugin(TensorFlowThreads())
            _register_backend()
            token = _CLIENT.set(client)
            try:
                with joblib.parallel_backend(_BACKEND, n_jobs=-1):
                    yield client
            finally:
                _CLIENT.reset(token)
    finally:
        if tracking_uri:
            mlflow.set_tracking_uri(previous)
