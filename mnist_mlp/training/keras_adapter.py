"""The one place that reads Keras's internals for the compiled loop.

What the loop may train (:func:`unsupported_reason`), the network it trains
(:func:`compiled_network`: a dense softmax MLP's structure and flat float32
parameters, read from and written back to the Keras layers), and the
optimizer's rule and slots (:class:`OptimizerState`).

Optimizers are accepted, not rejected: every option in an optimizer's config
must be one the kernels implement or one at its neutral value, so an option a
later Keras adds makes the fit fall back rather than be silently ignored. The
loop reads Keras's private slot lists (``_momentums``, ``_velocities``, ...)
here only, after :func:`_keras_internals_reason` has checked that they are
where it expects; if not, the fit falls back to ``keras.Model.fit`` with the
reason, never crashes.
"""

from __future__ import annotations

import numpy as np

from mnist_mlp._tensorflow import keras
from mnist_mlp.training import kernels

__all__ = ["OptimizerState", "PER_BATCH_HOOKS", "PREDICT_HOOKS", "compiled_loop_reason", "compiled_network",
           "overrides_hooks", "unsupported_reason"]

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
_ACTIVATIONS = {"linear": kernels.ACT_LINEAR, "relu": kernels.ACT_RELU, "tanh": kernels.ACT_TANH,
                "sigmoid": kernels.ACT_SIGMOID}


class _Network:
    """A dense softmax MLP's structure and flat float32 parameters."""

    def __init__(self, dense, activation, dropout, penalty, alpha, input_dropout=0.0, max_norm=0.0):
        self.dense = dense
        self.dims = np.array([dense[0].kernel.shape[0], *(d.units for d in dense)], np.int64)
        sizes = [int(a) * int(b) + int(b) for a, b in zip(self.dims[:-1], self.dims[1:])]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.n_params = int(sum(sizes))
        self.activation, self.dropout = activation, dropout
        self.penalty, self.alpha = penalty, alpha
        # Dropout on the inputs (0: none); MaxNorm's bound on the hidden kernels' columns (0: none).
        self.input_dropout, self.max_norm = input_dropout, max_norm

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

    def weights(self, theta):
        """``theta`` as ``model.get_weights()`` lists them (copies): the Dense layers' kernels and biases."""
        return [theta[part].reshape(var.shape).copy() for var, part in self.slices()]


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
    dense, dropouts = [], []  # dropouts: (index of the Dense layer it follows, -1: the inputs; rate)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            if layer.noise_shape is not None:
                return "a Dropout layer with a noise shape"
            if dropouts and dropouts[-1][0] == len(dense) - 1:
                return "two Dropout layers in a row"
            dropouts.append((len(dense) - 1, float(layer.rate)))
            continue
        if type(layer) is not keras.layers.Dense:
            return f"layer {layer.name!r} is a {type(layer).__name__}, not Dense or Dropout"
        if not layer.use_bias or layer.bias_regularizer or layer.activity_regularizer \
                or layer.bias_constraint or layer.lora_enabled:
            return f"layer {layer.name!r} has no bias, a bias constraint, LoRA or a non-kernel regularizer"
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
    input_dropout = dropouts.pop(0)[1] if dropouts and dropouts[0][0] == -1 else 0.0
    rates = {rate for _, rate in dropouts}
    if dropouts and (len(rates) != 1 or [i for i, _ in dropouts] != list(range(len(hidden)))):
        return "dropout must follow every hidden layer, and only those, with one rate (and may precede the first)"
    max_norm = _max_norm(dense)
    if isinstance(max_norm, str):
        return max_norm
    regularizers = {None if layer.kernel_regularizer is None else
                    (type(layer.kernel_regularizer), tuple(sorted(layer.kernel_regularizer.get_config().items())))
                    for layer in hidden}
    if len(regularizers) != 1:
        return "every hidden kernel must have the same regularizer"
    reg = hidden[0].kernel_regularizer
    if reg is None:
        penalty, alpha = kernels.PENALTY_NONE, 0.0
    elif type(reg) is keras.regularizers.L1:
        penalty, alpha = kernels.PENALTY_L1, float(reg.l1)
    elif type(reg) is keras.regularizers.L2:
        penalty, alpha = kernels.PENALTY_L2, float(reg.l2)
    else:
        return f"kernel regularizer {type(reg).__name__} is not L1 or L2"
    return _Network(dense, _ACTIVATIONS[activations.pop()], rates.pop() if rates else 0.0, penalty, alpha,
                    input_dropout, max_norm)


def _max_norm(dense):
    """The bound of a ``MaxNorm(max_value, axis=0)`` on every hidden kernel (0.0: no constraint),
    or why the loops cannot apply the kernels' constraints."""
    *hidden, output = [layer.kernel_constraint for layer in dense]
    if output is not None:
        return "the output layer's kernel is constrained"
    if all(c is None for c in hidden):
        return 0.0
    if any(type(c) is not keras.constraints.MaxNorm for c in hidden) \
            or len({(repr(c.axis), float(c.max_value)) for c in hidden}) != 1:
        return "every hidden kernel must have the same constraint, a MaxNorm"
    axis, max_value = hidden[0].axis, float(hidden[0].max_value)
    if axis != 0:
        return f"MaxNorm on axis {axis!r}, not 0 (a unit's incoming weights)"
    return max_value


def compiled_loop_reason(network, batch_size):
    """Why the compiled loop (not the XLA loop) cannot train ``network`` at ``batch_size``, or None."""
    if int(batch_size) == 1 and (network.input_dropout or network.max_norm):
        return ("input dropout and max-norm are not implemented for online training (batch size 1) in the "
                "compiled loop, whose online steps update each kernel in cache blocks")
    return None


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
        code, hyper = kernels.OPT_ADAM, (lr, 1 - optimizer.beta_1, 1 - optimizer.beta_2, optimizer.epsilon,
                                         optimizer.beta_1, optimizer.beta_2, float(optimizer.amsgrad))
    elif kind == "RMSprop":
        code, hyper = kernels.OPT_RMSPROP, (lr, optimizer.rho, optimizer.epsilon, optimizer.momentum,
                                            float(optimizer.centered))
    else:
        code, hyper = kernels.OPT_SGD, (lr, optimizer.momentum, float(optimizer.nesterov))
    # Row r of the kernels' state is the r-th slot list of _RULES, where the option uses it.
    lists = [getattr(optimizer, name) if used else None for name, used in _slot_lists(optimizer)]
    return code, hyper, lambda i: [None if slots is None else slots[i] for slots in lists]


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



class OptimizerState:
    """A Keras optimizer's rule, step count and slots as the kernels take them.

    ``code`` and ``hyper`` name the update rule (see ``kernels._update``);
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
        if not optimizer.built:  # its slot lists exist once it is built
            optimizer.build(model.trainable_variables)
        self.code, hyper, self._slot_vars = _optimizer_rule(optimizer)
        self.hyper = np.asarray(hyper, np.float32)
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
