"""mnist_mlp.training.stopping: a stop that something swallowed still ends the fit, at the next epoch."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mnist_mlp import MLPClassifier, interrupts
from mnist_mlp._tensorflow import keras
from tests.helpers import all_runs


class _StopSwallowedAtEpoch(keras.callbacks.Callback):
    """Sends this process SIGTERM as epoch ``at`` ends, and swallows what its handler raises,
    as a library's ``except BaseException`` (or C code calling back into Python) would."""

    def __init__(self, at):
        super().__init__()
        self.at, self.ended, self.swallowed = at, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.ended.append(epoch)
        if epoch == self.at:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)  # the handler runs here, and raises
            except BaseException as exc:  # noqa: BLE001 - the hazard being guarded
                self.swallowed.append(exc)


class _Stopped(KeyboardInterrupt):
    pass


@pytest.fixture
def stop_handler():
    """SIGTERM raises _Stopped, as a study worker's stop does."""

    def stop(signum, frame):
        raise _Stopped("stopped by the process that started it")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("training_loop", ["auto", "keras"])
def test_a_swallowed_stop_ends_the_fit_at_the_next_epoch_and_its_run_killed(
        flat_digits, tracked, stop_handler, training_loop):
    X, y = flat_digits[0][:300], flat_digits[1][:300]
    swallower = _StopSwallowedAtEpoch(at=1)
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=50, random_state=0, training_loop=training_loop,
                        callbacks=[swallower])
    with pytest.raises(_Stopped, match="stopped by the process"):
        with interrupts.redelivered():
            clf.fit(X, y)
    assert [type(e) for e in swallower.swallowed] == [_Stopped]  # it was swallowed once
    assert swallower.ended == [0, 1]  # and raised again as epoch 2 began
    [run] = all_runs(tracked)
    assert run.info.status == "KILLED"


def test_once_the_block_is_left_a_stop_it_saw_is_not_raised_again(flat_digits, stop_handler):
    X, y = flat_digits[0][:300], flat_digits[1][:300]
    swallower = _StopSwallowedAtEpoch(at=0)
    with pytest.raises(_Stopped):
        with interrupts.redelivered():
            MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False,
                          callbacks=[swallower]).fit(X, y)
    # The stop was seen and the block left: later fits in this process train to the end.
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False).fit(X, y)
    assert clf.n_iter_ == 3
    with interrupts.redelivered():
        clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False).fit(X, y)
    assert clf.n_iter_ == 3
