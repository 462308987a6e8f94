"""How many threads the compiled loop uses: the estimator's n_jobs, MNIST_MLP_THREADS, or the idle cores."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mnist_mlp import MLPClassifier
from mnist_mlp.training import THREADS_ENV, threads

X = np.random.RandomState(0).rand(300, 8).astype("float32")
Y = (X[:, 0] > 0.5).astype(int)
FAST = dict(hidden_layer_sizes=(8,), epochs=1, random_state=0, tracking=False)


@pytest.fixture
def busy_cores():
    """A busy program on every core, ended however the test ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_with_every_core_busy_a_fit_takes_one_thread(busy_cores, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert threads.idle_cores(window=0.3) == 1
    assert MLPClassifier(**FAST).fit(X, Y).n_threads_ == 1


def test_the_setting_comes_from_n_jobs_then_the_environment(monkeypatch):
    import numba

    most = min(os.cpu_count(), numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setenv(THREADS_ENV, "1")
    assert MLPClassifier(**FAST).fit(X, Y).n_threads_ == 1
    assert MLPClassifier(**FAST, n_jobs=-1).fit(X, Y).n_threads_ == most  # the parameter wins
    monkeypatch.setenv(THREADS_ENV, "-1")
    assert MLPClassifier(**FAST).fit(X, Y).n_threads_ == most
    with threads.requested(64):
        assert threads.n_threads() == numba.config.NUMBA_NUM_THREADS  # never more than Numba has
    monkeypatch.setenv(THREADS_ENV, "auto")
    with threads.requested(None):
        assert 1 <= threads.n_threads(measure=True) <= os.cpu_count()


def test_threads_never_change_the_result(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    X_big = np.random.RandomState(1).rand(2000, 64).astype("float32")
    y_big = np.random.RandomState(2).randint(0, 3, 2000)
    params = dict(hidden_layer_sizes=(300,), epochs=2, batch_size=1024, random_state=0, tracking=False)
    one = MLPClassifier(**params, n_jobs=1).fit(X_big, y_big)
    every = MLPClassifier(**params, n_jobs=-1).fit(X_big, y_big)
    assert all(np.array_equal(a, b) for a, b in zip(one.coefs_, every.coefs_))


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_environment_setting_is_refused_by_name(value, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ValueError, match=THREADS_ENV):
        MLPClassifier(**FAST).fit(X, Y)


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5])
def test_a_bad_n_jobs_is_refused_before_training(n_jobs):
    with pytest.raises(ValueError, match="n_jobs"):
        MLPClassifier(**FAST, n_jobs=n_jobs).fit(X, Y)
