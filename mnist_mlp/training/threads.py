"""Threads and floating-point mode of the compiled loop.

Matrix products are split across Numba's threads (on a layer that is safe to
enter from several threads at once), BLAS runs single-threaded inside the
loop, and denormals are flushed in the calling thread (see
:mod:`mnist_mlp.training.kernels` for why).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

import numpy as np

from mnist_mlp._tensorflow import tf
from mnist_mlp.training import kernels

__all__ = ["compiled_section", "n_threads", "threading_layer"]


def n_threads():
    """Threads for the compiled matrix products: TensorFlow's intra-op setting
    (cluster workers set it) or every core; 1 where Numba's threads can't be
    shared safely."""
    import numba

    layer = threading_layer()
    if layer is None or (layer == "workqueue" and threading.current_thread() is not threading.main_thread()):
        return 1
    wanted = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
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
