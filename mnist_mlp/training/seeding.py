"""Seeded sections that take turns across threads.

scikeras makes ``random_state`` work by seeding Python's, NumPy's and
TensorFlow's *global* generators around a model's build and fit. Two fits in
threads of one process (a Dask worker's, joblib's threading backend) would
then draw from each other's seeds: the same ``random_state``, other weights.
So seeded sections take turns (:func:`seeded`), and the compiled loop, which
draws its own seed once and then uses no global generator, lets the others in
while it trains (:func:`released`). Code that only checks a parameter by
building what it names (a Keras initializer draws its seed from Python's
generator as it is made) runs in :func:`undisturbed`, which puts the
generators back: otherwise a check in one thread moves the stream another
thread's build has just seeded (the same ``random_state``, other weights).
"""

from __future__ import annotations

import contextlib
import random
import threading

import numpy as np

__all__ = ["released", "seeded", "undisturbed"]

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


@contextlib.contextmanager
def undisturbed():
    """A seeded section that leaves Python's and NumPy's global generators as it found them."""
    with _GLOBAL_SEEDS:
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
