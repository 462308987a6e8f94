"""Seeded sections that take turns across threads.

scikeras makes ``random_state`` work by seeding Python's, NumPy's and
TensorFlow's *global* generators around a model's build and fit. Two fits in
threads of one process (a Dask worker's, joblib's threading backend) would
then draw from each other's seeds: the same ``random_state``, other weights.
So seeded sections take turns (:func:`seeded`), and the compiled loop, which
draws its own seed once and then uses no global generator, lets the others in
while it trains (:func:`released`).
"""

from __future__ import annotations

import contextlib
import threading

__all__ = ["released", "seeded"]

_GLOBAL_SEEDS = threading.RLock()


def seeded():
    """A section that may seed or draw from the global generators; one thread at a time."""
    return _GLOBAL_SEEDS


@contextlib.contextmanager
def released():
    """Let other threads into their seeded sections for the block (held once by this one)."""
    _GLOBAL_SEEDS.release()
    try:
        yield
    finally:
        _GLOBAL_SEEDS.acquire()
