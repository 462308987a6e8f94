"""The training loops' safe point for a stop request: :class:`StopCheck`.

Why: a Ctrl-C or a study worker's stop is recorded by :mod:`mnist_mlp.interrupts`
and raised where the main thread happens to be; code there may swallow the
exception, and the fit would train on to its last epoch, its run RUNNING all
the while. As a fit or an epoch begins nothing is half done, so that is where
every loop (compiled, XLA, Keras's own) looks at the request, as Keras looks
at ``stop_training``.
"""

from __future__ import annotations

from mnist_mlp import interrupts
from mnist_mlp._tensorflow import keras

__all__ = ["StopCheck"]


class StopCheck(keras.callbacks.Callback):
    """Raise the recorded stop request, if any, as the fit and each epoch begin."""

    #: Reads nothing of the model: the compiled loop need not copy weights back for it.
    reads_logs_only = True

    def on_train_begin(self, logs=None):
        interrupts.check()

    def on_epoch_begin(self, epoch, logs=None):
        interrupts.check()
