"""Threads and floating-point mode of the compiled loop.

Matrix products are split across Numba's threads (on a layer that is safe to
enter from several threads at once), BLAS runs single-threaded inside the
loop, and denormals are flushed in the calling thread (see
:mod:`mnist_mlp.training.kernels` for why).

How many threads, first that applies: the estimator's ``n_jobs``
(:func:`requested`), the ``MNIST_MLP_THREADS`` environment variable (what
``mnist-mlp --threads`` sets), TensorFlow's intra-op setting (Dask workers
set it), else, for a fit, the cores other programs leave idle, measured as the
fit starts (:func:`idle_cores`): on 2 cores with another program busy, a
second thread waits on the busy core at every product and makes the fit
slower, not faster. Predictions do not measure (no 50 ms per request): they
use every core. The count never changes the results: products are split in
blocks sized by their shape alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
import time

import numpy as np

from mnist_mlp._tensorflow import tf
from mnist_mlp.training import kernels
from mnist_mlp.training.codes import THREADS_ENV

__all__ = ["THREADS_ENV", "compiled_section", "idle_cores", "n_threads", "requested", "threading_layer"]

# An estimator's n_jobs, for the fit or prediction in the block (None: not set).
_REQUESTED = contextvars.ContextVar("mnist_mlp_threads", default=None)

# How long idle_cores watches the machine: 5 ticks of the kernel's 100 Hz clock per core.
_WINDOW_S = 0.05


@contextlib.contextmanager
def requested(n_jobs):
    """Use ``n_jobs`` threads (-1: every core; None: the default) in the block."""
    token = _REQUESTED.set(n_jobs)
    try:
        yield
    finally:
        _REQUESTED.reset(token)


def _from_environment():
    """``MNIST_MLP_THREADS`` as a count (-1 for every core), or None for ``auto`` or unset."""
    text = os.environ.get(THREADS_ENV, "").strip().lower()
    if text in ("", "auto"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value == 0 or value < -1:
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads >= 1, -1 (every core) or 'auto'; "
                         f"got {os.environ[THREADS_ENV]!r}")
    return value


def idle_cores(window=_WINDOW_S):
    """Cores that other programs leave idle, measured over ``window`` seconds (at least 1).

    The machine's busy CPU time over the window, less this process's own,
    is what other programs use.
    """
    import psutil

    cores = os.cpu_count() or 1
    me = psutil.Process()

    def busy():
        times = psutil.cpu_times()
        mine = me.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        return sum(times) - idle, mine.user + mine.system

    start, (machine, own) = time.perf_counter(), busy()
    time.sleep(window)
    elapsed, (machine_after, own_after) = time.perf_counter() - start, busy()
    others = max(0.0, (machine_after - machine) - (own_after - own)) / elapsed
    return max(1, min(cores, int(cores - others + 0.5)))


def n_threads(*, measure=False):
    """Threads for the compiled matrix products (see the module docstring for which).

    Parameters
    ----------
    measure : bool, default=False
        With nothing set, use the idle cores (:func:`idle_cores`, 50 ms)
        rather than every core: what a fit does as it starts.

    Returns
    -------
    int
        1 where Numba's threads can't be shared safely; never more than
        ``NUMBA_NUM_THREADS``.
    """
    import numba

    layer = threading_layer()
    if layer is None or (layer == "workqueue" and threading.current_thread() is not threading.main_thread()):
        return 1
    cores = os.cpu_count() or 1
    wanted = _REQUESTED.get()
    if wanted is None:
        wanted = _from_environment()
    if wanted is None:
        wanted = tf.config.threading.get_intra_op_parallelism_threads() or None
    if wanted is None:
        wanted = idle_cores() if measure else cores
    if wanted == -1:
        wanted = cores
    return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))


@functools.lru_cache(maxsize=1)
def threading_layer():
    """Start Numba's threads once, on a layer that is safe to call from several
    threads at once (TBB or OpenMP) unless the user chose one; None if none starts.

    Numba's fallback layer, workqueue, aborts the process when two threads
    (say, two fits on one Dask worker) enter it together.
    """
    import numba

    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "threadsafe"
    try:
        kernels.matmul(np.ones((2 * kernels.MIN_BLOCK_ROWS, 2), np.float32),
                         np.ones((2, 2), np.float32), 2)
        return numba.threading_layer()
    except Exception:  # no threadsafe layer here: products stay on the calling thread
        return None


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # scans the loaded libraries once


# BLAS's thread count is one setting for the whole process. Compiled sections
# running at once in several threads (a Dask worker's fits) share one
# limit, set by the first to enter and restored by the last to leave: with a
# limit per section, one section's exit restored BLAS's threads under another
# still computing, whose products then split differently and changed in their
# last bits (fits in threads differed from the same fit alone).
_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter = None


@contextlib.contextmanager
def _single_threaded_blas():
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


@contextlib.contextmanager
def compiled_section():
    """Flush denormals in this thread and keep BLAS on it: the compiled loop
    splits products across its own threads (see mnist_mlp.training.kernels)."""
    with kernels.flush_denormals(), _single_threaded_blas():
        yield
