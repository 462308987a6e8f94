"""Small Keras callbacks, one job each, used while a tracked fit trains."""

from __future__ import annotations

import time

from mnist_mlp._tensorflow import keras
from mnist_mlp.training import DIVERGENCE_THRESHOLD, diverged

__all__ = ["DivergenceMonitor", "EpochMetricsLogger"]


class EpochMetricsLogger(keras.callbacks.Callback):
    """Log each epoch's metrics to an MLflow run, with step = epoch.

    Epochs are buffered and written in one call at most every
    ``flush_interval`` seconds: the MLflow UI follows a long fit live, and a
    short fit pays for no write at all while it trains. What is still
    buffered at the end is handed over by :meth:`take_pending`, to be
    written with the fit's other end-of-fit records in one call.

    Parameters
    ----------
    run : mnist_mlp.tracking.FitRun
        The run to log into.
    flush_interval : float, default=5.0
        Seconds between writes while training.
    """

    #: Reads only the epoch logs, never the model: the compiled training loop
    #: need not copy the weights into Keras after each epoch for it.
    reads_logs_only = True

    def __init__(self, run, flush_interval=5.0):
        super().__init__()
        self.run = run
        self.flush_interval = flush_interval
        self._pending = []
        self._last_flush = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self._pending.append((epoch, {k: float(v) for k, v in (logs or {}).items()}))
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def take_pending(self):
        """Epochs not yet written, as ``[(epoch, {name: value})]``; clears the buffer."""
        pending, self._pending = self._pending, []
        return pending

    def flush(self):
        # FitRun falls back to a local folder if the store is lost: training goes on.
        if self._pending:
            self.run.log_metric_series(self._pending)
            self._pending = []
        self._last_flush = time.monotonic()


class DivergenceMonitor(keras.callbacks.Callback):
    """Note whether training diverged, without stopping it.

    The study's mean-10 initialisations are meant to fail; they must run to
    the end and be reported honestly. A loss that is NaN, infinite or above
    ``threshold`` marks the fit as diverged.

    Parameters
    ----------
    threshold : float, default=1e3
        A categorical cross-entropy over 10 classes stays below about 16
        (Keras clips probabilities at 1e-7); a larger loss is the penalty
        term exploding.

    Attributes
    ----------
    diverged : bool
    first_epoch : int or None
        First epoch (0-based) whose loss crossed the line.
    """

    #: Reads only the epoch logs, never the model: the compiled training loop
    #: need not copy the weights into Keras after each epoch for it.
    reads_logs_only = True

    def __init__(self, threshold=DIVERGENCE_THRESHOLD):
        super().__init__()
        self.threshold = threshold
        self.diverged = False
        self.first_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not self.diverged and diverged(loss, self.threshold):
            self.diverged = True
            self.first_epoch = epoch
