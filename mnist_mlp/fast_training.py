"""The default training loop: Keras's mathematics, compiled into one loop.

``keras.Model.fit`` pays for its generality on every step: a ``tf.data``
pipeline, a graph-executor call, callback hooks, metric bookkeeping. For the
small dense networks this package trains, that overhead is most of the time
(at batch size 1, nearly all of it). :func:`fit` trains the same Keras model
with the same mathematics in a Numba-compiled loop (:mod:`mnist_mlp._kernels`)
and hands the result back to Keras:

- the same initial weights (Keras initialises the model, as before);
- the same update per step: Keras's Adam, RMSprop and SGD rules on float32,
  the same softmax cross-entropy (from the logits, as Keras computes it for a
  softmax output), the same L1/L2 penalty on the hidden kernels, inverted
  dropout with the same rate;
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

:func:`unsupported_reason` says when the loop does not apply; the estimator
then falls back to ``keras.Model.fit`` by itself. It does not apply to: a
callback that overrides a per-batch hook; sample or class weights; optimizers
other than Adam, RMSprop and SGD, or with gradient clipping, weight decay,
EMA, loss scaling, gradient accumulation or a learning-rate schedule;
activations other than relu, tanh, sigmoid and linear; layers other than
Dense and Dropout; ``fit`` arguments other than the estimator's own.

Optimizers are accepted, not rejected: every option in an optimizer's config
must be one the kernels implement or one at its neutral value, so an option a
later Keras adds makes the fit fall back rather than be silently ignored. The
loop reads Keras's private slot lists (``_momentums``, ``_velocities``, ...)
in :func:`_optimizer_rule` and :class:`OptimizerState` only, after
:func:`_keras_internals_reason` has checked they are where it expects; if not,
the fit falls back with the reason.

``tests/test_kernels.py`` proves the mathematics step by step against Keras;
``scripts/mutation_check.py`` shows those tests catch deliberate bugs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading

import numpy as np

from mnist_mlp import _kernels
from mnist_mlp._tensorflow import keras, tf

__all__ = ["fit", "unsupported_reason", "compiled_network", "predict_proba", "overrides_hooks", "OptimizerState"]

#: Callback hooks the compiled loop never calls: a callback that overrides
#: one of them makes fit fall back to keras.Model.fit.
PER_BATCH_HOOKS = (
    "on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
    "on_test_batch_begin", "on_test_batch_end", "on_test_begin", "on_test_end",
)
#: The same for the compiled forward pass of predict.
PREDICT_HOOKS = ("on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")
# fit() arguments the loop understands (anything else goes to Keras).
_FIT_ARGS = frozenset(
    {"batch_size", "epochs", "initial_epoch", "validation_split", "shuffle", "verbose",
     "callbacks", "sample_weight", "validation_batch_size"}
)
_ACTIVATIONS = {"linear": _kernels.ACT_LINEAR, "relu": _kernels.ACT_RELU, "tanh": _kernels.ACT_TANH,
                "sigmoid": _kernels.ACT_SIGMOID}
_EVAL_CHUNK = 4096


class _Network:
    """A dense softmax MLP's structure and flat float32 parameters."""

    def __init__(self, dense, activation, dropout, penalty, alpha):
        self.dense = dense
        self.dims = np.array([dense[0].kernel.shape[0], *(d.units for d in dense)], np.int64)
        sizes = [int(a) * int(b) + int(b) for a, b in zip(self.dims[:-1], self.dims[1:])]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.n_params = int(sum(sizes))
        self.activation, self.dropout = activation, dropout
        self.penalty, self.alpha = penalty, alpha

    def read(self):
        """The model's current weights, flat."""
        parts = []
        for layer in self.dense:
            parts += [np.asarray(layer.kernel.numpy()).ravel(), np.asarray(layer.bias.numpy()).ravel()]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def slices(self):
        """``(variable, flat slice)`` of every kernel and bias, in ``read`` order."""
        out, start = [], 0
        for layer in self.dense:
            for var in (layer.kernel, layer.bias):
                size = int(np.prod(var.shape))
                out.append((var, slice(start, start + size)))
                start += size
        return out

    def write(self, theta):
        for var, part in self.slices():
            var.assign(theta[part].reshape(var.shape))


def _activation_name(fn):
    for name in _ACTIVATIONS:
        if fn is keras.activations.get(name):
            return name
    return None


def compiled_network(model):
    """Describe ``model`` for the compiled loop, or return the reason it can't be.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    _Network or str
        The network, or why it is not a supported dense softmax MLP.
    """
    if not isinstance(model, keras.Sequential):
        return "the model is not a keras.Sequential"
    dense, dropouts = [], []  # dropouts: (index of the Dense layer it follows, rate)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            if layer.noise_shape is not None or not dense:
                return "a Dropout layer with a noise shape or before the first Dense layer"
            dropouts.append((len(dense) - 1, float(layer.rate)))
            continue
        if type(layer) is not keras.layers.Dense:
            return f"layer {layer.name!r} is a {type(layer).__name__}, not Dense or Dropout"
        if not layer.use_bias or layer.bias_regularizer or layer.activity_regularizer \
                or layer.kernel_constraint or layer.bias_constraint or layer.lora_enabled:
            return f"layer {layer.name!r} has no bias, a constraint, LoRA or a non-kernel regularizer"
        if layer.dtype_policy.name != "float32":
            return f"layer {layer.name!r} computes in {layer.dtype_policy.name}, not float32"
        dense.append(layer)
    hidden = dense[:-1]
    if not hidden:
        return "the model has no hidden Dense layer"
    if dense[-1].activation is not keras.activations.softmax:
        return "the output layer is not a softmax"
    if dense[-1].kernel_regularizer is not None:
        return "the output layer's kernel is regularized"
    activations = {_activation_name(layer.activation) for layer in hidden}
    if len(activations) != 1 or None in activations:
        return f"hidden activations must be one of {sorted(_ACTIVATIONS)}, the same in every layer"
    rates = {rate for _, rate in dropouts}
    if dropouts and (len(rates) != 1 or [i for i, _ in dropouts] != list(range(len(hidden)))):
        return "dropout must follow every hidden layer, and only those, with one rate"
    regularizers = {None if layer.kernel_regularizer is None else
                    (type(layer.kernel_regularizer), tuple(sorted(layer.kernel_regularizer.get_config().items())))
                    for layer in hidden}
    if len(regularizers) != 1:
        return "every hidden kernel must have the same regularizer"
    reg = hidden[0].kernel_regularizer
    if reg is None:
        penalty, alpha = _kernels.PENALTY_NONE, 0.0
    elif type(reg) is keras.regularizers.L1:
        penalty, alpha = _kernels.PENALTY_L1, float(reg.l1)
    elif type(reg) is keras.regularizers.L2:
        penalty, alpha = _kernels.PENALTY_L2, float(reg.l2)
    else:
        return f"kernel regularizer {type(reg).__name__} is not L1 or L2"
    return _Network(dense, _ACTIVATIONS[activations.pop()], rates.pop() if rates else 0.0, penalty, alpha)


# Options every Keras optimizer has, and the values at which they leave the
# update alone; any other value means Keras must train.
_NEUTRAL_OPTIONS = {
    "weight_decay": (None, 0, 0.0), "clipnorm": (None,), "global_clipnorm": (None,), "clipvalue": (None,),
    "use_ema": (False,), "loss_scale_factor": (None,), "gradient_accumulation_steps": (None, 1),
}
# Options that do not change the update (EMA settings matter only with use_ema).
_INERT_OPTIONS = {"name", "ema_momentum", "ema_overwrite_frequency"}
# Per rule: the options the kernels implement, and the Keras attributes (its
# private slot lists) the loop reads the slots from. Anything else in an
# optimizer's config makes the fit fall back, so a Keras release that adds an
# option cannot be silently ignored.
_RULES = {
    "Adam": ({"learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"},
             ("_momentums", "_velocities", "_velocity_hats")),
    "RMSprop": ({"learning_rate", "rho", "momentum", "epsilon", "centered"},
                ("_velocities", "_average_gradients", "_momentums")),
    "SGD": ({"learning_rate", "momentum", "nesterov"}, ("momentums",)),
}


def _rule_reason(optimizer):
    """Why the kernels cannot apply ``optimizer``'s update, or None."""
    kind = type(optimizer).__name__
    if kind not in _RULES or type(optimizer) is not getattr(keras.optimizers, kind):
        return f"optimizer {kind} is not Adam, RMSprop or SGD"
    options, _ = _RULES[kind]
    for key, value in optimizer.get_config().items():
        if key in _INERT_OPTIONS or key in options and key != "learning_rate":
            continue
        if key == "learning_rate":
            if not isinstance(value, (int, float)):
                return "the learning rate is a schedule"
        elif key not in _NEUTRAL_OPTIONS:
            return f"optimizer option {key!r} is not one the compiled loop implements"
        elif value not in _NEUTRAL_OPTIONS[key]:
            what = {"clipnorm": "clips gradients", "global_clipnorm": "clips gradients",
                    "clipvalue": "clips gradients", "weight_decay": "uses weight decay",
                    "use_ema": "uses EMA", "loss_scale_factor": "uses loss scaling",
                    "gradient_accumulation_steps": "uses gradient accumulation"}[key]
            return f"the optimizer {what} ({key}={value!r})"
    return None


def _optimizer_rule(optimizer):
    """``(code, hyper, slot variables per weight index)`` for the kernels.

    The one place that reads Keras's private optimizer state; call it only for
    an optimizer :func:`_rule_reason` accepts and that is built.
    """
    lr = float(np.asarray(optimizer.learning_rate))
    kind = type(optimizer).__name__
    if kind == "Adam":
        hyper = (lr, 1 - optimizer.beta_1, 1 - optimizer.beta_2, optimizer.epsilon,
                 optimizer.beta_1, optimizer.beta_2, float(optimizer.amsgrad))
        slots = lambda i: [optimizer._momentums[i], optimizer._velocities[i]] + (  # noqa: E731
            [optimizer._velocity_hats[i]] if optimizer.amsgrad else [])
        return _kernels.OPT_ADAM, hyper, slots
    if kind == "RMSprop":
        hyper = (lr, optimizer.rho, optimizer.epsilon, optimizer.momentum, float(optimizer.centered))

        def slots(i):
            return [optimizer._velocities[i],
                    optimizer._average_gradients[i] if optimizer.centered else None,
                    optimizer._momentums[i] if optimizer.momentum > 0 else None]

        return _kernels.OPT_RMSPROP, hyper, slots
    hyper = (lr, optimizer.momentum, float(optimizer.nesterov))
    return _kernels.OPT_SGD, hyper, lambda i: [optimizer.momentums[i] if optimizer.momentum != 0 else None]


def _slot_lists(optimizer):
    """``(attribute, used)`` for each of the rule's slot lists: Keras creates
    some only with the option that needs them (AMSGrad, centered, momentum)."""
    kind = type(optimizer).__name__
    used = {"_velocity_hats": kind == "Adam" and optimizer.amsgrad,
            "_average_gradients": kind == "RMSprop" and optimizer.centered,
            "_momentums": kind != "RMSprop" or optimizer.momentum > 0,
            "momentums": kind == "SGD" and optimizer.momentum != 0}
    return [(name, used.get(name, True)) for name in _RULES[kind][1]]


def _keras_internals_reason(model):
    """Why Keras's private optimizer state is not where the loop reads it, or None.

    Builds the optimizer (``fit`` would build it anyway) so that its slot
    lists exist, then checks every attribute the loop touches: a Keras release
    that renames one makes the fit fall back instead of crashing.
    """
    optimizer = model.optimizer
    try:
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        slot_lists = [name for name, used in _slot_lists(optimizer) if used]
        missing = [name for name in ["_get_variable_index", "iterations", *slot_lists]
                   if not hasattr(optimizer, name)]
        if missing:
            return f"this Keras ({keras.__version__}) has no optimizer attribute {missing[0]!r} the loop reads"
        for name in slot_lists:
            if len(getattr(optimizer, name)) != len(model.trainable_variables):
                return f"this Keras ({keras.__version__}) keeps optimizer slots in {name!r} differently"
        for variable in model.trainable_variables:
            optimizer._get_variable_index(variable)
    except Exception as exc:  # any surprise in Keras's internals: Keras trains
        return f"this Keras ({keras.__version__}) optimizer state is not as the loop expects: {exc!r}"
    return None


def overrides_hooks(callback, hooks):
    """Whether ``callback``'s class overrides any of the Keras callback ``hooks``."""
    base = keras.callbacks.Callback
    return any(getattr(type(callback), hook, None) is not getattr(base, hook) for hook in hooks)


def unsupported_reason(model, callbacks, fit_args):
    """Why the compiled loop cannot train ``model`` this way, or None if it can.

    Parameters
    ----------
    model : keras.Model
        A compiled model.
    callbacks : list of keras.callbacks.Callback
    fit_args : dict
        The arguments ``keras.Model.fit`` would get (besides ``x`` and ``y``).

    Returns
    -------
    str or None
    """
    extra = sorted(k for k, v in fit_args.items() if k not in _FIT_ARGS and v is not None)
    if extra:
        return f"fit arguments {extra}"
    if fit_args.get("sample_weight") is not None:
        return "sample or class weights"
    if fit_args.get("shuffle", True) not in (True, False):
        return f"shuffle={fit_args['shuffle']!r}"
    if model.run_eagerly:
        return "run_eagerly=True"
    if model.loss != "categorical_crossentropy":
        return f"loss {model.loss!r} is not 'categorical_crossentropy'"
    network = compiled_network(model)
    if isinstance(network, str):
        return network
    reason = _rule_reason(model.optimizer) or _keras_internals_reason(model)
    if reason:
        return reason
    hooked = [type(cb).__name__ for cb in callbacks if overrides_hooks(cb, PER_BATCH_HOOKS)]
    if hooked:
        return f"callbacks with per-batch hooks: {hooked}"
    return None


def _threads():
    """Threads for the compiled matrix products: TensorFlow's intra-op setting
    (cluster workers set it) or every core; 1 where Numba's threads can't be
    shared safely."""
    import numba

    layer = _threading_layer()
    if layer is None or (layer == "workqueue" and threading.current_thread() is not threading.main_thread()):
        return 1
    wanted = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
    return max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))


@functools.lru_cache(maxsize=1)
def _threading_layer():
    """Start Numba's threads once, on a layer that is safe to call from several
    threads at once (TBB or OpenMP) unless the user chose one; None if none starts.

    Numba's fallback layer, workqueue, aborts the process when two threads
    (say, two fits on one Dask worker) enter it together.
    """
    import numba

    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "threadsafe"
    try:
        _kernels._matmul(np.ones((2 * _kernels._MIN_BLOCK_ROWS, 2), np.float32),
                         np.ones((2, 2), np.float32), 2)
        return numba.threading_layer()
    except Exception:  # no threadsafe layer here: products stay on the calling thread
        return None


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # scans the loaded libraries once


@contextlib.contextmanager
def _compiled_section():
    """Flush denormals in this thread and keep BLAS on it: the compiled loop
    splits products across its own threads (see mnist_mlp._kernels)."""
    with _kernels.flush_denormals(), _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _writable_float32(X):
    # One compiled signature: C-contiguous, writable float32 (a read-only
    # memmap is copied rather than compiled for separately).
    return np.require(X, dtype=np.float32, requirements=["C", "W"])


def _validation_split(n, validation_split):
    # keras.utils's train_validation_split: the last fraction, floor-rounded.
    split_at = int(math.floor(n * (1.0 - validation_split))) if validation_split else n
    return split_at


def fit(model, X, y, *, batch_size, epochs, initial_epoch=0, validation_split=0.0,
        shuffle=True, verbose=0, callbacks=(), seed=None, **_ignored):
    """Train a compiled Keras MLP in the compiled loop; the same contract as ``model.fit``.

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
    X_train, y_train = X[:split_at], labels[:split_at]
    X_val, y_val = X[split_at:], labels[split_at:]
    batch_size = int(batch_size or 32)
    rng = np.random.default_rng(seed)

    theta = network.read()
    grad = np.zeros_like(theta)
    opt_state = OptimizerState(model, network)
    state, iterations, code, hyper = opt_state.slots, opt_state.iterations, opt_state.code, opt_state.hyper
    steps = -(-len(X_train) // batch_size)

    callback_list = keras.callbacks.CallbackList(
        list(callbacks), add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps,
    )
    # Copying the weights back into Keras costs ~1 ms a variable: do it each
    # epoch only for callbacks that may look at the model.
    reads_model = any(not getattr(cb, "reads_logs_only", False) for cb in callbacks)
    model.stop_training = False
    empty_order = np.empty(0, np.int64)
    kernels_args = (network.offsets, network.dims, network.activation)
    n_threads = _threads()
    callback_list.on_train_begin()
    logs = {}
    try:
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            order = rng.permutation(len(X_train)).astype(np.int64) if shuffle else empty_order
            with _compiled_section():
                loss_sum, correct = _kernels.train_epoch(
                    theta, grad, state, iterations, X_train, y_train, order, batch_size,
                    network.offsets, network.dims, network.activation,
                    np.float32(network.dropout), network.penalty, np.float32(network.alpha),
                    code, hyper, int(rng.integers(2**31 - 1)), n_threads,
                )
                logs = {"loss": loss_sum / len(X_train), "accuracy": correct / len(X_train)}
                if len(X_val):
                    val_loss, val_correct = _kernels.evaluate(theta, *kernels_args, X_val, y_val,
                                                              _EVAL_CHUNK, n_threads)
                    penalty = _kernels.penalty_value(theta, network.offsets, network.dims,
                                                     network.penalty, np.float32(network.alpha))
                    logs["val_loss"] = val_loss / len(X_val) + penalty
                    logs["val_accuracy"] = val_correct / len(X_val)
            logs = {k: float(v) for k, v in logs.items()}
            if reads_model:  # the model holds each epoch's weights when its callbacks run
                network.write(theta)
                opt_state.write(slots=False)
            callback_list.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:
        network.write(theta)
        opt_state.write()
    callback_list.on_train_end(logs)
    return model.history


class OptimizerState:
    """A Keras optimizer's rule, step count and slots as the kernels take them.

    ``code`` and ``hyper`` name the update rule (see ``_kernels._update``);
    ``slots`` is a float32 array ``(3, n_params)`` laid out like the network's
    flat parameters (Adam: m, v, v_hat; RMSprop: velocity, average gradient,
    momentum; SGD: momentum; unused rows stay 0); ``iterations`` the step count.
    :meth:`write` puts them back into the optimizer.

    Parameters
    ----------
    model : keras.Model
        A compiled model whose optimizer :func:`unsupported_reason` accepts.
    network : _Network
        ``compiled_network(model)``.
    """

    def __init__(self, model, network):
        optimizer = model.optimizer
        self.code, hyper, self._slot_vars = _optimizer_rule(optimizer)
        self.hyper = np.asarray(hyper, np.float32)
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self._optimizer = optimizer
        self._weight_slices = network.slices()
        self.slots = np.zeros((3, network.n_params), np.float32)
        for (row, part), var in self._pairs():
            self.slots[row, part] = np.asarray(var.numpy()).ravel()
        self.iterations = np.array([int(optimizer.iterations.numpy())], np.int64)

    def _pairs(self):
        """``((row, flat slice), slot variable)`` for every optimizer slot in use."""
        for var, part in self._weight_slices:
            for row, slot_var in enumerate(self._slot_vars(self._optimizer._get_variable_index(var))):
                if slot_var is not None:
                    yield (row, part), slot_var

    def write(self, slots=True):
        """Put the step count (and the slots) back into the Keras optimizer."""
        self._optimizer.iterations.assign(self.iterations[0])
        if slots:
            for (row, part), var in self._pairs():
                var.assign(self.slots[row, part].reshape(var.shape))


def predict_proba(network, X):
    """Softmax output of a :func:`compiled_network` for float32 rows ``X``."""
    X = _writable_float32(X)
    with _compiled_section():
        return _kernels.predict_proba(network.read(), network.offsets, network.dims,
                                      network.activation, X, _EVAL_CHUNK, _threads())
