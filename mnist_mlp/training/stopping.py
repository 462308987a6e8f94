"""An epoch boundary honours a stop that was swallowed: :class:`StopCheck`.

Why: a Ctrl-C or a study worker's stop is an exception raised wherever the
main thread happens to be. Code there may swallow it (see
:mod:`mnist_mlp.interrupts`), and the fit would train on to its last epoch,
its run RUNNING all the while. Between two epochs nothing is half done, so
that is where :func:`mnist_mlp.interrupts.checkpoint` raises it again.
"""

from __future__ import annotations

from mnist_mlp import interrupts
from mnist_mlp._tensorflow import keras

__all__ = ["StopCheck"]


class StopCheck(keras.callbacks.Callback):
    """Raise, as an epoch begins, the interrupt a stop signal raised and something swallowed."""

    #: Reads nothing of the model: the compiled loop need not copy weights back for it.
    reads_logs_only = True

    def on_epoch_begin(self, epoch, logs=None):
        interrupts.checkpoint()
