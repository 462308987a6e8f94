"""Epoch-level rules of a fit: the learning-rate schedule and early stopping, as scikit-learn's MLP has them.

Every loop runs them through one Keras callback, :class:`EpochRules`, called at
the same points by the compiled and XLA loops (:func:`mnist_mlp.training.loop.fit`,
which reads the optimizer's learning rate as each epoch begins) and by
``keras.Model.fit``: before an epoch it sets the optimizer's learning rate;
after it, it records that rate in the epoch's logs (``learning_rate``: so in
``history_`` and the run's per-epoch metrics) and applies scikit-learn's rules
for a plateau (:class:`Plateau`): the adaptive schedule's division by 5, and
early stopping, which keeps the best epoch's weights and puts them back at the
end.

Schedules (``learning_rate_init`` is :math:`\\eta_0`, epoch :math:`k` from 0):

- ``"constant"``: :math:`\\eta_0`;
- ``"invscaling"``: :math:`\\eta_0 / (t + 1)^{power\\_t}`, :math:`t` the training samples seen
  before the epoch (scikit-learn's ``t_``: :math:`k \\cdot n_{train}`), so the first epoch runs at
  :math:`\\eta_0`;
- ``"adaptive"``: :math:`\\eta_0`, divided by 5 each time more than ``n_iter_no_change`` epochs
  in a row fail to improve by ``tol`` (the training loss, or the validation accuracy with early
  stopping); the fit stops once the rate is at most 1e-6 and would be divided again;
- ``"cosine"``: :math:`\\eta_0 (1 + \\cos(\\pi k / K)) / 2` over the fit's :math:`K` epochs, decaying
  towards 0 after the last.
"""

from __future__ import annotations

import math

from mnist_mlp._tensorflow import keras

__all__ = ["EpochRules", "Plateau", "scheduled_rate"]

# scikit-learn's SGDOptimizer: the adaptive schedule's factor and the rate at which it stops instead.
_ADAPTIVE_FACTOR = 5.0
_ADAPTIVE_FLOOR = 1e-6


def scheduled_rate(schedule, initial, epoch, epochs, n_train, power_t=0.5):
    """The learning rate of epoch ``epoch`` (from 0 in this fit) of ``epochs``, before any adaptive division.

    >>> scheduled_rate("cosine", 0.1, 0, 4, 100), scheduled_rate("cosine", 0.1, 2, 4, 100)
    (0.1, 0.05)
    >>> scheduled_rate("invscaling", 1.0, 1, 4, 99, power_t=0.5)
    0.1
    """
    if schedule == "invscaling":
        return initial / (epoch * n_train + 1) ** power_t
    if schedule == "cosine":
        return initial * (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0
    return initial


class Plateau:
    """scikit-learn's count of epochs without improvement (``MLPClassifier._update_no_improvement_count``).

    An epoch fails to improve when its value is not better than the best so far by ``tol``;
    :meth:`update` counts those in a row and says when more than ``n_iter_no_change`` did.

    Parameters
    ----------
    tol : float
    n_iter_no_change : int
    higher_is_better : bool
        A score (validation accuracy) rather than a loss.
    """

    def __init__(self, tol, n_iter_no_change, higher_is_better):
        self.tol, self.n_iter_no_change, self.sign = tol, n_iter_no_change, 1.0 if higher_is_better else -1.0
        self.best = -math.inf
        self.count = 0

    def update(self, value):
        """Count the epoch's ``value``; return ``(best, stalled)``: whether it is the best so far,
        and whether more than ``n_iter_no_change`` epochs in a row have now failed to improve."""
        signed = self.sign * value
        self.count = self.count + 1 if signed < self.best + self.tol else 0
        best = signed > self.best
        if best:
            self.best = signed
        return best, self.count > self.n_iter_no_change

    def reset(self):
        """Start counting again (after the adaptive schedule divided the rate)."""
        self.count = 0


class EpochRules(keras.callbacks.Callback):
    """The learning-rate schedule and early stopping of one fit, as a Keras callback.

    Parameters
    ----------
    schedule : {"constant", "invscaling", "adaptive", "cosine"}
    learning_rate_init : float
    epochs : int
        Epochs of this fit (the cosine's length).
    n_train : int
        Training rows (``invscaling`` counts samples seen).
    power_t : float
    early_stopping : bool
        Stop when the validation accuracy stalls; restore the best epoch's weights.
    n_iter_no_change : int
    tol : float

    Attributes
    ----------
    best_score : float or None
        The best validation accuracy (with early stopping) or training loss.
    stopped_early : bool
        Whether a rule ended the fit before its last epoch.
    """

    def __init__(self, schedule, learning_rate_init, epochs, n_train, *, power_t=0.5, early_stopping=False,
                 n_iter_no_change=10, tol=1e-4):
        super().__init__()
        self.schedule, self.learning_rate_init, self.epochs, self.n_train = (
            schedule, learning_rate_init, epochs, n_train)
        self.power_t, self.early_stopping = power_t, early_stopping
        self.n_iter_no_change, self.tol = n_iter_no_change, tol
        # Reads the logs; the best epoch's weights come from weights_snapshot where a loop sets it (the
        # compiled and XLA loops, from their own arrays), else from the Keras model (keras.Model.fit).
        self.reads_logs_only = True
        self.weights_snapshot = None

    def on_train_begin(self, logs=None):
        self._epoch, self._divisor, self._best_weights = 0, 1.0, None
        self._plateau = Plateau(self.tol, self.n_iter_no_change, higher_is_better=self.early_stopping)
        self.best_score, self.stopped_early = None, False

    def _rate(self):
        return scheduled_rate(self.schedule, self.learning_rate_init, self._epoch, self.epochs, self.n_train,
                              self.power_t) / self._divisor

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self._rate()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self._rate())
        self._epoch += 1
        if not (self.early_stopping or self.schedule == "adaptive"):
            return
        value = logs.get("val_accuracy") if self.early_stopping else logs.get("loss")
        best, stalled = self._plateau.update(value)
        if best:
            self.best_score = value
            if self.early_stopping:
                self._best_weights = (self.weights_snapshot or self.model.get_weights)()
        if stalled:
            if self.schedule == "adaptive" and self._rate() > _ADAPTIVE_FLOOR:
                self._divisor *= _ADAPTIVE_FACTOR
                self._plateau.reset()
            else:
                self.stopped_early = self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)
