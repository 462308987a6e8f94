"""The default training loop: Keras's mathematics, compiled into one loop.

``keras.Model.fit`` pays for its generality on every step: a ``tf.data``
pipeline, a graph-executor call, callback hooks, metric bookkeeping. For the
small dense networks this package trains, that overhead is most of the time
(at batch size 1, nearly all of it). :func:`fit` trains the same Keras model
with the same mathematics in a Numba-compiled loop (:mod:`mnist_mlp.training.kernels`)
and hands the result back to Keras:

- the same initial weights (Keras initialises the model, as before);
- the same update per step: Keras's Adam, RMSprop and SGD rules on float32,
  the same softmax cross-entropy (from the logits, as Keras computes it for a
  softmax output), the same L1/L2 penalty on the hidden kernels, inverted
  dropout with the same rate (on the inputs too), Keras's ``MaxNorm(axis=0)``
  on the hidden kernels after each update, and the learning rate a callback
  sets as an epoch begins (:mod:`mnist_mlp.training.schedules`);
- the same batches: the training rows in order (or reshuffled each epoch
  with ``shuffle=True``), validation on the last ``validation_split`` of the
  data, split where Keras splits it;
- the same per-epoch logs (``loss``, ``accuracy``, ``val_loss``,
  ``val_accuracy``), callbacks called at the same points (train and epoch
  begin/end; ``model.stop_training`` honoured), a ``keras.callbacks.History``
  returned, and the trained weights and optimizer slots written back into the
  Keras model and optimizer, so ``warm_start`` and saving work as before.

Denormal floats are flushed to zero during the loop, as TensorFlow does.
Dropout masks and shuffling come from NumPy's generator, seeded from
``random_state``, so they differ from TensorFlow's draws (as any two seeds do).

:func:`mnist_mlp.training.keras_adapter.unsupported_reason` says when the
loop does not apply (the caller then uses ``keras.Model.fit``).

``tests/test_training_kernels.py`` proves the mathematics step by step
against Keras; ``scripts/mutation_check.py`` shows those tests catch
deliberate bugs.
"""

from __future__ import annotations

import math

import numpy as np

from mnist_mlp._tensorflow import keras
from mnist_mlp.training import kernels
from mnist_mlp.training.keras_adapter import OptimizerState, compiled_network
from mnist_mlp.training.threads import compiled_section, n_threads

__all__ = ["ENGINES", "fit", "predict_proba"]

_EVAL_CHUNK = 4096


def _writable_float32(X):
    # One compiled signature: C-contiguous, writable float32 (a read-only
    # memmap is copied rather than compiled for separately).
    return np.require(X, dtype=np.float32, requirements=["C", "W"])


def _validation_split(n, validation_split):
    # keras.utils's train_validation_split: the last fraction, floor-rounded.
    split_at = int(math.floor(n * (1.0 - validation_split))) if validation_split else n
    return split_at


class _CompiledEpochs:
    """Epochs in the Numba kernels, in place on the host arrays ``theta`` and ``opt_state``."""

    def __init__(self, network, opt_state, X, labels, split_at, batch_size, shuffle, rng, threads=None):
        self.network, self.opt_state, self.rng = network, opt_state, rng
        self.X_train, self.y_train = X[:split_at], labels[:split_at]
        self.X_val, self.y_val = X[split_at:], labels[split_at:]
        self.batch_size, self.shuffle = batch_size, shuffle
        self.theta = network.read()
        self.grad = np.zeros_like(self.theta)
        # Threads of the products: as asked, else the cores other programs leave idle.
        self.threads = threads or n_threads(measure=True)

    def run(self, epoch):
        network, opt, n = self.network, self.opt_state, len(self.X_train)
        order = self.rng.permutation(n).astype(np.int64) if self.shuffle else np.empty(0, np.int64)
        with compiled_section():
            loss_sum, correct = kernels.train_epoch(
                self.theta, self.grad, opt.slots, opt.iterations, self.X_train, self.y_train, order,
                self.batch_size, network.offsets, network.dims, network.activation,
                np.float32(network.dropout), np.float32(network.input_dropout), np.float32(network.max_norm),
                network.penalty, np.float32(network.alpha),
                opt.code, opt.hyper, int(self.rng.integers(2**31 - 1)), self.threads,
            )
            logs = {"loss": loss_sum / n, "accuracy": correct / n}
            if len(self.X_val):
                val_loss, val_correct = kernels.evaluate(self.theta, network.offsets, network.dims,
                                                          network.activation, self.X_val, self.y_val,
                                                          _EVAL_CHUNK, self.threads)
                penalty = kernels.penalty_value(self.theta, network.offsets, network.dims,
                                                 network.penalty, np.float32(network.alpha))
                logs["val_loss"] = val_loss / len(self.X_val) + penalty
                logs["val_accuracy"] = val_correct / len(self.X_val)
        return logs

    def sync(self):
        """``theta`` and the optimizer's state are the host arrays the kernels update: nothing to copy."""

    def set_learning_rate(self, rate):
        self.opt_state.hyper[0] = rate


class _XlaEpochs:
    """Epochs as one XLA program each (:mod:`mnist_mlp.training.xla`), on JAX's default device;
    :meth:`sync` brings ``theta`` and the optimizer's state back to the host."""

    def __init__(self, network, opt_state, X, labels, split_at, batch_size, shuffle, rng, threads=None):
        from mnist_mlp.training import xla  # (``threads``: JAX schedules its own)

        self.network, self.opt_state = network, opt_state
        self.program = xla.EpochProgram(
            network.dims, activation=network.activation, dropout=network.dropout, penalty=network.penalty,
            alpha=network.alpha, input_dropout=network.input_dropout, max_norm=network.max_norm,
            rule=xla.Rule(opt_state.code, tuple(float(h) for h in opt_state.hyper)),
            batch_size=batch_size, shuffle=shuffle, seed=int(rng.integers(2**31 - 1)))
        self.theta = network.read()
        self.program.load(self.theta, opt_state.slots, int(opt_state.iterations[0]), X, labels, split_at)

    def run(self, epoch):
        return self.program.run_epoch(epoch)

    def sync(self):
        self.theta, self.opt_state.slots[:], self.opt_state.iterations[0] = self.program.read()

    def set_learning_rate(self, rate):
        self.opt_state.hyper[0] = rate
        self.program.set_learning_rate(rate)


ENGINES = {"compiled": _CompiledEpochs, "xla": _XlaEpochs}


def fit(model, X, y, *, batch_size, epochs, initial_epoch=0, validation_split=0.0,
        shuffle=True, verbose=0, callbacks=(), seed=None, engine="compiled", threads=None, **_ignored):
    """Train a compiled Keras MLP in the compiled (or XLA) loop; the same contract as ``model.fit``.

    Parameters
    ----------
    model : keras.Sequential
        A compiled model for which :func:`unsupported_reason` is None.
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples, n_classes)
        One-hot targets, as ``model.fit`` takes them.
    batch_size, epochs, initial_epoch, validation_split, shuffle, verbose, callbacks
        As for ``keras.Model.fit``.
    seed : int, numpy Generator or None
        Seeds dropout masks and shuffling.
    threads : int, default=None
        Threads of the matrix products; None: :func:`n_threads` decides, measuring idle cores.
    engine : {"compiled", "xla"}, default="compiled"
        Where the epochs run: the Numba kernels on the CPU, or one XLA program
        an epoch on JAX's default device (:mod:`mnist_mlp.training.xla`).

    Returns
    -------
    keras.callbacks.History
    """
    network = compiled_network(model)
    X = _writable_float32(X)
    labels = np.ascontiguousarray(np.argmax(y, axis=1), dtype=np.int64)
    split_at = _validation_split(len(X), validation_split)
    if validation_split and split_at in (0, len(X)):  # Keras's own check and message
        raise ValueError(
            f"Training data contains {len(X)} samples, which is not sufficient to split it "
            f"into a validation and training set as specified by "
            f"`validation_split={validation_split}`. Either provide more data, or a different "
            "value for the `validation_split` argument."
        )
    batch_size = int(batch_size or 32)
    opt_state = OptimizerState(model, network)
    trainer = ENGINES[engine](network, opt_state, X, labels, split_at, batch_size, shuffle,
                              np.random.default_rng(seed), threads=threads)
    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=-(-split_at // batch_size),
    )
    # Copying the weights back into Keras costs ~1 ms a variable: do it each
    # epoch only for callbacks that may look at the model.
    reads_model = any(not getattr(cb, "reads_logs_only", False) for cb in callbacks)
    # A callback that reads only logs but now and then the weights (early stopping's best epoch) gets
    # them from our arrays through its ``weights_snapshot``, as ``model.get_weights()`` would give them.
    snapshots = [cb for cb in callbacks if hasattr(cb, "weights_snapshot")]
    for cb in snapshots:
        cb.weights_snapshot = lambda: trainer.sync() or network.weights(trainer.theta)
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    try:
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            # A callback may have set the rate (a schedule, mnist_mlp.training.schedules): Keras reads it each step.
            rate = np.float32(np.asarray(model.optimizer.learning_rate))
            if rate != opt_state.hyper[0]:
                trainer.set_learning_rate(rate)
            logs = {k: float(v) for k, v in trainer.run(epoch).items()}
            if reads_model:  # the model holds each epoch's weights when its callbacks run
                trainer.sync()
                network.write(trainer.theta)
                opt_state.write(slots=False)
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:
        for cb in snapshots:
            cb.weights_snapshot = None
        trainer.sync()
        network.write(trainer.theta)
        opt_state.write()
    callback_list.on_train_end(logs)
    return model.history


def predict_proba(network, X):
    """Softmax output of a :func:`compiled_network` for float32 rows ``X``."""
    X = _writable_float32(X)
    with compiled_section():
        return kernels.predict_proba(network.read(), network.offsets, network.dims,
                                      network.activation, X, _EVAL_CHUNK, n_threads())
