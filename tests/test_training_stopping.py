"""mnist_mlp.training.stopping: a stop request that something swallowed still ends the fit, at the next epoch."""

from __future__ import annotations

import gc
import os
import signal
import time

import pytest

from mnist_mlp import MLPClassifier, interrupts
from mnist_mlp._tensorflow import keras
from tests.helpers import all_runs


class _Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler runs here; Python reports what it raises as unraisable, and drops it


class _StopSwallowedAtEpoch(keras.callbacks.Callback):
    """Sends this process SIGTERM as epoch ``at`` ends, and swallows what its handler raises:
    as a library's ``except BaseException`` would, or as Python does in a finalizer or gc callback."""

    def __init__(self, at, how):
        super().__init__()
        self.at, self.how, self.ended, self.swallowed = at, how, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.ended.append(epoch)
        if epoch != self.at:
            return
        if self.how == "finalizer":
            finalized = _Finalized()
            del finalized
            gc.collect()
            self.swallowed.append(interrupts.requested())
            return
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here, and raises
        except BaseException as exc:  # noqa: BLE001 - the hazard being guarded
            self.swallowed.append(exc)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the finalizer case, on purpose
@pytest.mark.parametrize("how", ["except", "finalizer"])
@pytest.mark.parametrize("training_loop", ["auto", "keras"])
def test_a_swallowed_stop_ends_the_fit_at_the_next_epoch_and_its_run_killed(
        flat_digits, tracked, training_loop, how):
    X, y = flat_digits[0][:300], flat_digits[1][:300]
    swallower = _StopSwallowedAtEpoch(at=1, how=how)
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=50, random_state=0, training_loop=training_loop,
                        callbacks=[swallower])
    with pytest.raises(interrupts.Stopped, match="stopped by SIGTERM"):
        with interrupts.handled():
            clf.fit(X, y)
    assert [type(e) for e in swallower.swallowed] == [interrupts.Stopped]  # it was swallowed once
    assert swallower.ended == [0, 1]  # and the fit stopped as epoch 2 began
    [run] = all_runs(tracked)
    assert run.info.status == "KILLED"
    assert "SIGTERM" in run.data.tags["error"]


def test_a_fit_asked_to_stop_before_it_begins_trains_no_epoch(flat_digits):
    X, y = flat_digits[0][:300], flat_digits[1][:300]
    swallower = _StopSwallowedAtEpoch(at=-1, how="except")
    with interrupts.handled():
        try:
            signal.raise_signal(signal.SIGTERM)
        except interrupts.Stopped:  # swallowed between two fits
            pass
        with pytest.raises(interrupts.Stopped):
            MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False,
                          callbacks=[swallower]).fit(X, y)
    assert swallower.ended == []


def test_once_the_block_is_left_a_stop_it_saw_is_not_raised_again(flat_digits):
    X, y = flat_digits[0][:300], flat_digits[1][:300]
    swallower = _StopSwallowedAtEpoch(at=0, how="except")
    with pytest.raises(interrupts.Stopped):
        with interrupts.handled():
            MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False,
                          callbacks=[swallower]).fit(X, y)
    # The stop was seen and the block left: later fits in this process train to the end.
    clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False).fit(X, y)
    assert clf.n_iter_ == 3
    with interrupts.handled():
        clf = MLPClassifier(hidden_layer_sizes=(16,), epochs=3, random_state=0, tracking=False).fit(X, y)
    assert clf.n_iter_ == 3
