"""The whole training epoch as one XLA program (JAX): the loop ``training_loop="xla"`` runs.

Every mini-batch of an epoch, forward and backward pass and optimizer update,
and the validation pass after it, is one ``jax.jit``-compiled program (a
``jax.lax.scan`` over the batches): the host launches it once an epoch and
reads back four numbers (the epoch's logs). The data are put on the device
once per fit and stay there; parameters and optimizer slots stay there across
epochs (their buffers donated to each epoch's program, so updated in place),
and come back to the host only when the caller reads them.

The mathematics is that of :mod:`mnist_mlp.training.kernels` (Keras's): the
same softmax cross-entropy from the logits, penalty on the hidden kernels,
inverted dropout (on the inputs too), max-norm after each update, and the same update rules, given in the same form (an
optimizer ``code`` and its ``hyper`` vector, as
:class:`mnist_mlp.training.keras_adapter.OptimizerState` reads them from
Keras; parameters flat, layer by layer, kernel then bias; slots ``(3,
n_params)``). Matrix products run at JAX's default precision: float32 on a
CPU; on NVIDIA GPUs that have it (Ampere and later), TensorFloat-32, as
TensorFlow, and so Keras, computes them there by default. For float32 products
there too, set ``jax.config.update("jax_default_matmul_precision", "highest")``
(the program is compiled for the precision in force). Shuffling and dropout masks
come from ``jax.random`` on the device, seeded per fit, so they differ from
the compiled loop's NumPy draws (as two seeds do).

This module needs NumPy and JAX only (no TensorFlow, Keras or Numba), so that
it runs, and ``benchmarks/xla_loop.py`` measures it, on a machine with JAX
alone.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

# TensorFlow may share the process (and the GPU) with JAX: JAX's default is to
# take 75 % of the GPU's memory at its first use, which would leave TensorFlow
# (and other fits' programs) short. Allocate on demand instead, unless the user chose.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from mnist_mlp.training.codes import (  # noqa: E402
    ACT_RELU, ACT_SIGMOID, ACT_TANH, OPT_ADAM, OPT_RMSPROP, PENALTY_L1, PENALTY_L2, PENALTY_NONE,
)

__all__ = ["EpochProgram", "Rule", "device_name", "gpu_names"]

# Validation rows per pass: one pass on any realistic split; larger splits go in chunks.
_VALIDATION_CHUNK = 65536


def gpu_names():
    """Names of the GPUs JAX sees (empty without one, or where JAX has no GPU backend)."""
    try:
        return [d.device_kind for d in jax.devices("gpu")]
    except RuntimeError:  # no GPU backend installed or no GPU visible
        return []


def device_name():
    """The device the XLA program runs on, e.g. ``"NVIDIA H200"`` or ``"cpu"``."""
    return jax.devices()[0].device_kind


@dataclasses.dataclass(frozen=True)
class Rule:
    """An optimizer's update rule, in the kernels' form.

    Parameters
    ----------
    code : int
        ``OPT_ADAM``, ``OPT_RMSPROP`` or ``OPT_SGD`` (:mod:`mnist_mlp.training.codes`).
    hyper : tuple of float
        Adam ``(lr, 1-beta_1, 1-beta_2, epsilon, beta_1, beta_2, amsgrad)``;
        RMSprop ``(lr, rho, epsilon, momentum, centered)``; SGD ``(lr, momentum, nesterov)``.
    """

    code: int
    hyper: tuple

    def slot_rows(self):
        """Which rows of the ``(3, n_params)`` slots the rule uses (the others stay 0)."""
        h = self.hyper
        if self.code == OPT_ADAM:
            return (True, True, h[6] > 0)
        if self.code == OPT_RMSPROP:
            return (True, h[4] > 0, h[3] > 0)
        return (h[1] != 0, False, False)

    def variant(self):
        """The options that change the program's structure (the rest are numbers it takes)."""
        h = self.hyper
        if self.code == OPT_ADAM:
            return (bool(h[6] > 0),)
        if self.code == OPT_RMSPROP:
            return (bool(h[4] > 0), bool(h[3] > 0))
        return (bool(h[1] != 0), bool(h[2] > 0))


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What one compiled program is specialised for (hashable: jit's static argument)."""

    dims: tuple
    activation: int
    dropout: bool
    penalty: int
    code: int
    variant: tuple
    batch_size: int
    n_train: int
    n_val: int
    shuffle: bool
    input_dropout: bool = False
    max_norm: bool = False


# -- the mathematics ---------------------------------------------------------

def _activate(z, code):
    if code == ACT_RELU:
        # Not jnp.maximum(z, 0): JAX differentiates max at a tie as 1/2 to each side, so a
        # pre-activation of exactly 0 (an all-zero input row through zero intercepts, as a new
        # Keras layer has) would pass half its gradient on. jax.nn.relu's is 0 there, as
        # tf.nn.relu's (and the compiled loop's) is.
        return jax.nn.relu(z)
    if code == ACT_TANH:
        return jnp.tanh(z)
    if code == ACT_SIGMOID:
        # jax.nn.sigmoid (XLA's logistic op), as Keras's tf.nn.sigmoid: its gradient is s * (1 - s),
        # TensorFlow's SigmoidGrad. Not 1 / (1 + exp(-z)) differentiated term by term: jaxlib 0.4.30's
        # XLA (CPU) compiled that gradient wrong in the first hidden layer from 128 rows on (jitted
        # up to 1.8x the eager value, deterministically; an AMSGrad sigmoid step 0.73 off Keras's).
        return jax.nn.sigmoid(z)
    return z


def _logits(params, x, activation, masks=None, precision=None):
    """Forward pass; ``masks[l]`` (scale or 0 per unit) is hidden layer ``l``'s inverted dropout;
    ``precision`` that of the products (None: JAX's default)."""
    h = x
    last = len(params) - 1
    for layer, (w, b) in enumerate(params):
        z = jnp.dot(h, w, precision=precision) + b
        if layer < last:
            z = _activate(z, activation)
            if masks is not None:
                z = z * masks[layer]
        h = z
    return h


def _cross_entropy(z, y):
    """Per-row softmax cross-entropy from the logits, and whether each row's prediction is right."""
    lse = jax.nn.logsumexp(z, axis=1)
    picked = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
    return lse - picked, jnp.argmax(z, axis=1) == y


def _penalty_value(params, penalty, alpha):
    """The weight penalty of the hidden kernels (what Keras adds to the loss)."""
    if penalty == PENALTY_NONE:
        return jnp.float32(0.0)
    kernels = [w for w, _ in params[:-1]]
    if penalty == PENALTY_L1:
        return alpha * sum(jnp.sum(jnp.abs(w)) for w in kernels)
    return alpha * sum(jnp.sum(w * w) for w in kernels)


def _penalty_grad(w, penalty, alpha):
    if penalty == PENALTY_L1:
        return alpha * jnp.sign(w)
    return (2.0 * alpha) * w


def _update(code, variant, hyper, step, w, g, s0, s1, s2):
    """Keras's update of one variable ``w`` with gradient ``g`` and slots ``s0, s1, s2`` (the rows
    of :meth:`Rule.slot_rows`): the new ``(w, s0, s1, s2)``; slots the rule does not use pass through.
    ``step`` is the step's learning rate (:func:`_step_size`)."""
    if code == OPT_ADAM:
        one_minus_beta_1, one_minus_beta_2, epsilon = hyper[1], hyper[2], hyper[3]
        m = s0 + (g - s0) * one_minus_beta_1
        v = s1 + (g * g - s1) * one_minus_beta_2
        v_hat = s2
        if variant[0]:  # AMSGrad: divide by the largest v so far
            v_hat = jnp.maximum(s2, v)
            return w - (m * step) / (jnp.sqrt(v_hat) + epsilon), m, v, v_hat
        return w - (m * step) / (jnp.sqrt(v) + epsilon), m, v, v_hat
    if code == OPT_RMSPROP:
        rho, epsilon, momentum = hyper[1], hyper[2], hyper[3]
        centered, with_momentum = variant
        velocity = rho * s0 + (1.0 - rho) * (g * g)
        average_gradient = s1
        if centered:
            average_gradient = rho * s1 + (1.0 - rho) * g
            denominator = velocity - average_gradient * average_gradient + epsilon
        else:
            denominator = velocity + epsilon
        increment = (step * g) / jnp.sqrt(denominator)
        if with_momentum:
            momentum_slot = momentum * s2 + increment
            return w - momentum_slot, velocity, average_gradient, momentum_slot
        return w - increment, velocity, average_gradient, s2
    momentum = hyper[1]
    with_momentum, nesterov = variant
    if not with_momentum:
        return w - g * step, s0, s1, s2
    velocity = s0 * momentum - g * step
    if nesterov:
        return w + (velocity * momentum - g * step), velocity, s1, s2
    return w + velocity, velocity, s1, s2


def _step_size(code, hyper, t):
    """The step's learning rate: Adam's bias-corrected one, else ``lr`` (``t``: the step, from 1)."""
    learning_rate = hyper[0]
    if code == OPT_ADAM:
        beta_1, beta_2, t = hyper[4], hyper[5], t.astype(jnp.float32)
        return learning_rate * jnp.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
    return learning_rate


def _dropout_masks(key, rows, widths, rate):
    """Inverted dropout's masks for hidden layers of ``widths``: ``1 / (1 - rate)`` where a unit is
    kept (a uniform draw at least ``rate``, as Keras keeps it), 0 where dropped."""
    scale = 1.0 / (1.0 - rate)
    return [jnp.where(jax.random.uniform(k, (rows, width)) >= rate, scale, 0.0)
            for k, width in zip(jax.random.split(key, len(widths)), widths)]


def _max_norm(w, max_value):
    """Keras's ``MaxNorm(max_value, axis=0)``: each unit's incoming weights (a column of the kernel)
    times ``min(norm, max_value) / (epsilon + norm)``, ``epsilon`` being ``keras.backend.epsilon()``."""
    norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True))
    return w * (jnp.clip(norms, 0.0, max_value) / (1e-7 + norms))


def _constrained(params, max_value):
    """The parameters with the hidden kernels' max-norm applied (after an update, as Keras applies it)."""
    last = len(params) - 1
    return tuple((_max_norm(w, max_value), b) if layer < last else (w, b) for layer, (w, b) in enumerate(params))


def _gradients(spec, params, x, y, alpha, masks=None):
    """The batch's loss (mean cross-entropy plus the penalty), correct count, and Keras's gradient
    of the loss (the penalty's on the hidden kernels added as Keras's regularizers give it)."""

    def data_loss(p):
        losses, right = _cross_entropy(_logits(p, x, spec.activation, masks), y)
        return jnp.mean(losses), right

    (loss, right), grads = jax.value_and_grad(data_loss, has_aux=True)(params)
    grads = _with_penalty(spec, params, grads, alpha)
    return loss + _penalty_value(params, spec.penalty, alpha), jnp.sum(right, dtype=jnp.int32), grads


def _with_penalty(spec, params, grads, alpha):
    """The data term's gradients plus the penalty's, on the hidden kernels only."""
    if spec.penalty == PENALTY_NONE:
        return grads
    return [(gw + _penalty_grad(w, spec.penalty, alpha), gb) if layer < len(params) - 1 else (gw, gb)
            for layer, ((w, _), (gw, gb)) in enumerate(zip(params, grads))]


def _apply(spec, hyper, params, slots, t, grads):
    """One optimizer step on every variable: the new ``(params, slots, t)``."""
    t = t + 1
    step = _step_size(spec.code, hyper, t)
    new_params, new_slots = [], [[], [], []]
    for layer, (pair, grad_pair) in enumerate(zip(params, grads)):
        updated = []
        for i, (v, g) in enumerate(zip(pair, grad_pair)):
            s = [None if row is None else row[layer][i] for row in slots]
            v, *s = _update(spec.code, spec.variant, hyper, step, v, g, *s)
            updated.append(v)
            for row, value in zip(new_slots, s):
                row.append(value)
        new_params.append(tuple(updated))
    new_slots = tuple(None if slots[r] is None else tuple(zip(new_slots[r][0::2], new_slots[r][1::2]))
                      for r in range(3))
    return tuple(new_params), new_slots, t


def _train_step(spec, hyper, rate, alpha, state, x, y, key, input_rate=0.0, max_norm=0.0):
    """One mini-batch: Keras's forward pass (``input_rate``: dropout on the inputs, from a key split
    off ``key``), gradient, update and (``spec.max_norm``) max-norm constraint. Returns the new state,
    the batch's loss (mean cross-entropy plus the penalty before the update) and its correct count."""
    params, slots, t = state
    if spec.input_dropout:
        input_key, key = jax.random.split(key)
        x = x * _dropout_masks(input_key, x.shape[0], [x.shape[1]], input_rate)[0]
    masks = _dropout_masks(key, x.shape[0], [w.shape[1] for w, _ in params[:-1]], rate) if spec.dropout else None
    loss, right, grads = _gradients(spec, params, x, y, alpha, masks)
    params, slots, t = _apply(spec, hyper, params, slots, t, grads)
    if spec.max_norm:
        params = _constrained(params, max_norm)
    return (params, slots, t), loss, right


def _step_key(key, epoch, step):
    """The key of an epoch's step (its dropout masks), and (``step=-1``) of the epoch's shuffle."""
    return jax.random.fold_in(jax.random.fold_in(key, epoch), step + 1)


def _epoch(spec, hyper, rate, alpha, state, data, key, input_rate=0.0, max_norm=0.0):
    """One epoch and its validation pass: the new state and the epoch's figures, one float32 array
    ``(training loss sum, validation cross-entropy sum + penalty * rows, training correct,
    validation correct)`` (the counts bit-cast, so that one transfer brings all four back).

    ``state`` carries the epoch's index (its shuffle's and masks' key), advanced here, so
    that the host sends nothing to the device between epochs.
    """
    params_slots_t, epoch = state[:3], state[3]
    X, y, X_val, y_val = data
    n, batch = spec.n_train, spec.batch_size
    full, rest = divmod(n, batch)
    order = jax.random.permutation(_step_key(key, epoch, -1), n) if spec.shuffle else None

    def rows(start, size):
        if order is None:
            return (lax.dynamic_slice_in_dim(X, start, size), lax.dynamic_slice_in_dim(y, start, size))
        index = lax.dynamic_slice_in_dim(order, start, size)
        return jnp.take(X, index, axis=0), jnp.take(y, index, axis=0)

    def body(carry, i):
        xb, yb = rows(i * batch, batch)
        carry, loss, right = _train_step(spec, hyper, rate, alpha, carry, xb, yb, _step_key(key, epoch, i),
                                         input_rate, max_norm)
        return carry, (loss, right)

    carry = params_slots_t
    loss_sum, correct = jnp.float32(0.0), jnp.int32(0)
    if full:
        carry, (losses, rights) = lax.scan(body, carry, jnp.arange(full, dtype=jnp.int32))
        loss_sum, correct = jnp.sum(losses) * batch, jnp.sum(rights)
    if rest:  # the last, smaller batch: the same step at its own shape
        xb, yb = rows(full * batch, rest)
        carry, loss, right = _train_step(spec, hyper, rate, alpha, carry, xb, yb, _step_key(key, epoch, full),
                                         input_rate, max_norm)
        loss_sum, correct = loss_sum + loss * rest, correct + right
    val_sum, val_correct = jnp.float32(0.0), jnp.int32(0)
    params = carry[0]
    # Validation's products at float32 precision, whatever the training's: the logs are exact, and on
    # an H200 this pass ran 7x faster so than at JAX's default (benchmarks/results/xla_loop_gpu_run1.md).
    for start in range(0, spec.n_val, _VALIDATION_CHUNK):
        stop = min(start + _VALIDATION_CHUNK, spec.n_val)
        losses, right = _cross_entropy(_logits(params, X_val[start:stop], spec.activation,
                                               precision=lax.Precision.HIGHEST), y_val[start:stop])
        val_sum, val_correct = val_sum + jnp.sum(losses), val_correct + jnp.sum(right, dtype=jnp.int32)
    if spec.n_val:
        val_sum = val_sum + _penalty_value(params, spec.penalty, alpha) * spec.n_val
    counts = lax.bitcast_convert_type(jnp.stack([correct, val_correct]), jnp.float32)
    return (*carry, epoch + 1), jnp.concatenate([jnp.stack([loss_sum, val_sum]), counts])


_epoch_program = jax.jit(_epoch, static_argnums=0, donate_argnums=4)


@functools.partial(jax.jit, static_argnums=2)
def _probabilities(params, x, activation):
    return jax.nn.softmax(_logits(params, x, activation), axis=1)


# -- the host side -------------------------------------------------------------

def _layers(flat, dims):
    """Flat parameters (kernel then bias, layer by layer) as ``((kernel, bias), ...)`` NumPy views."""
    out, start = [], 0
    for n_in, n_out in zip(dims[:-1], dims[1:]):
        kernel = flat[start:start + n_in * n_out].reshape(n_in, n_out)
        start += n_in * n_out
        out.append((kernel, flat[start:start + n_out]))
        start += n_out
    return out


def _flat(layers):
    return np.concatenate([np.asarray(a, np.float32).ravel() for pair in layers for a in pair])


def _device_state(theta, slots, iterations, dims, rule):
    """``(params, slots, t)`` on the device from the host's flat form; slot rows the rule does not use are None."""
    params = tuple((jnp.asarray(k), jnp.asarray(b)) for k, b in _layers(np.asarray(theta, np.float32), dims))
    rows = rule.slot_rows()
    state_slots = tuple(tuple((jnp.asarray(k), jnp.asarray(b)) for k, b in _layers(slots[r], dims))
                        if rows[r] else None for r in range(3))
    return params, state_slots, jnp.int32(int(iterations))


def _host_state(state):
    """``(theta, slots, iterations)``: the inverse of :func:`_device_state`."""
    params, state_slots, t = jax.device_get(state[:3])
    theta = _flat(params)
    slots = np.zeros((3, theta.size), np.float32)
    for r, row in enumerate(state_slots):
        if row is not None:
            slots[r] = _flat(row)
    return theta, slots, int(t)


class EpochProgram:
    """Train a dense softmax MLP epoch by epoch on JAX's default device.

    Parameters
    ----------
    dims : sequence of int
        Layer widths, inputs first.
    activation : int
        The hidden activation (``ACT_*`` of :mod:`mnist_mlp.training.codes`).
    dropout : float
        Inverted dropout rate after every hidden layer (0: none).
    penalty : int
        ``PENALTY_NONE``, ``PENALTY_L1`` or ``PENALTY_L2`` on the hidden kernels.
    alpha : float
        The penalty's factor.
    rule : Rule
    batch_size : int
    shuffle : bool
        Reshuffle the training rows every epoch.
    seed : int
        Seeds shuffling and dropout masks.
    input_dropout : float, default=0.0
        Inverted dropout rate on the inputs (0: none).
    max_norm : float, default=0.0
        Keras's ``MaxNorm(max_norm, axis=0)`` on every hidden kernel after each update (0: none).

    Examples
    --------
    >>> import numpy as np
    >>> from mnist_mlp.training.codes import ACT_RELU, OPT_SGD, PENALTY_NONE
    >>> rng = np.random.default_rng(0)
    >>> dims = (4, 8, 3)
    >>> theta = rng.normal(0, 0.5, 4 * 8 + 8 + 8 * 3 + 3).astype(np.float32)
    >>> X, y = rng.random((40, 4), dtype=np.float32), rng.integers(0, 3, 40)
    >>> program = EpochProgram(dims, activation=ACT_RELU, dropout=0.0, penalty=PENALTY_NONE, alpha=0.0,
    ...                        rule=Rule(OPT_SGD, (0.1, 0.0, 0.0)), batch_size=8, shuffle=True, seed=0)
    >>> program.load(theta, np.zeros((3, theta.size), np.float32), 0, X, y, n_train=32)
    >>> logs = program.run_epoch(0)
    >>> sorted(logs)
    ['accuracy', 'loss', 'val_accuracy', 'val_loss']
    >>> program.read()[2]  # optimizer steps taken: 4 batches of 8
    4
    """

    def __init__(self, dims, *, activation, dropout, penalty, alpha, rule, batch_size, shuffle, seed,
                 input_dropout=0.0, max_norm=0.0):
        self.dims = tuple(int(d) for d in dims)
        self.activation, self.dropout = int(activation), float(dropout)
        self.penalty, self.alpha = int(penalty), float(alpha)
        self.rule, self.batch_size, self.shuffle = rule, int(batch_size), bool(shuffle)
        self._key = jax.random.key(int(seed) % (2**32))
        self._hyper = jnp.asarray(np.asarray(rule.hyper, np.float32))
        self.input_dropout, self.max_norm = float(input_dropout), float(max_norm)
        self._scalars = (jnp.float32(self.dropout), jnp.float32(self.alpha))
        self._knobs = (jnp.float32(self.input_dropout), jnp.float32(self.max_norm))
        self._state = self._data = self._spec = None
        self._epoch = 0

    def load(self, theta, slots, iterations, X, y, n_train):
        """Put the starting point and the data on the device.

        Parameters
        ----------
        theta : ndarray (n_params,), float32
            Flat parameters.
        slots : ndarray (3, n_params), float32
            The optimizer's slots, rows as :class:`Rule` uses them.
        iterations : int
            Optimizer steps taken so far.
        X : ndarray (n_samples, n_features), float32
        y : ndarray (n_samples,), int
            Class indices.
        n_train : int
            The first ``n_train`` rows train; the rest validate.
        """
        n_val = len(X) - int(n_train)
        self._spec = _Spec(self.dims, self.activation, self.dropout > 0, self.penalty, self.rule.code,
                           self.rule.variant(), self.batch_size, int(n_train), n_val, self.shuffle,
                           self.input_dropout > 0, self.max_norm > 0)
        X, y = np.asarray(X, np.float32), np.asarray(y, np.int32)
        self._data = tuple(jnp.asarray(a) for a in (X[:n_train], y[:n_train], X[n_train:], y[n_train:]))
        self._state = (*_device_state(theta, slots, iterations, self.dims, self.rule), None)

    def run_epoch(self, epoch):
        """Train one epoch (its index seeds its shuffle and masks); its logs, as ``keras.Model.fit``'s."""
        if self._state[3] is None or self._epoch != epoch:  # the device counts epochs on from here
            self._state = (*self._state[:3], jnp.int32(epoch))
        self._state, figures = _epoch_program(self._spec, self._hyper, *self._scalars, self._state, self._data,
                                              self._key, *self._knobs)
        self._epoch = epoch + 1
        figures = np.asarray(figures)
        sums, counts = figures[:2].astype(np.float64), figures[2:].view(np.int32)
        n, n_val = self._spec.n_train, self._spec.n_val
        logs = {"loss": float(sums[0]) / n, "accuracy": int(counts[0]) / n}
        if n_val:
            logs.update(val_loss=float(sums[1]) / n_val, val_accuracy=int(counts[1]) / n_val)
        return logs

    def set_learning_rate(self, rate):
        """Train the next epochs at learning rate ``rate`` (an argument of the program: no new compilation)."""
        hyper = np.asarray(self.rule.hyper, np.float32)
        hyper[0] = rate
        self._hyper = jnp.asarray(hyper)

    def read(self):
        """``(theta, slots, iterations)`` as :meth:`load` takes them, back on the host."""
        return _host_state(self._state)

    def predict_proba(self, X):
        """Softmax output for rows ``X`` with the current parameters."""
        return np.asarray(_probabilities(self._state[0], jnp.asarray(np.asarray(X, np.float32)), self.activation))
