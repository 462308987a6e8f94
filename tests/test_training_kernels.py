"""One training step of the compiled loop against one step of Keras, from identical state.

Whole-fit comparisons are fragile (a ReLU pre-activation at +2e-7 in one loop
and -2e-7 in the other sends two fits apart) and loose (a tolerance wide enough
for that lets a halved L2 gradient through). So each case here starts two
copies of one network from the same weights, the same optimizer slots and the
same step count (a few Keras steps in, so every slot is non-zero and Adam's bias
correction is not at step 1), takes one step with ``keras.Model.train_on_batch``
on one copy and one step of :func:`mnist_mlp.training.loop.fit` on the other,
and compares every kernel, intercept, slot and the reported loss at float32
round-off.

The matrix covers every optimizer rule and variant the loop accepts, each
penalty with each of them, every hidden activation, one to three hidden layers,
and layer widths and batch sizes that take every product path of
:mod:`mnist_mlp.training.kernels` (unsplit, split in row or column blocks, and the
online outer-product update in cache blocks). Dropout, whose masks are NumPy's
and not TensorFlow's, is checked against a NumPy reference step with the same
mask, and that reference is itself checked against Keras without dropout.

``scripts/mutation_check.py`` breaks the kernels on purpose (a halved L2
gradient, no dropout scaling, no bias correction, ...) and shows each mutant
fails this module.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_mlp.training import keras_adapter, kernels, loop, threads
from mnist_mlp._tensorflow import keras

# the compiled loop's per-step proof against Keras (56 s of a 265 s fast tier): in the slow
# tier; run this module itself when you change training/.
pytestmark = pytest.mark.slow

# Float32 round-off allowed, as |ours - keras| (less one float32 rounding of
# the stored value) over a scale: the largest magnitude of the step's change for
# weights, of the quantity itself for slots and the loss.
# - A gradient, or an update rule given the same gradient: 1e-6 (measured: at
#   most 2e-7 and 1 float32 rounding).
# - A whole step: 1e-5 on the loss and the slots; 2e-4 on the weights, since
#   Adam and RMSprop divide by sqrt(v): where v is tiny, a gradient's last-bit
#   difference is magnified (measured: at most 1.1e-4, RMSprop online). The two
#   tests above it show where each part's difference comes from.
# - RMSprop's momentum slot is the step itself (the weights move by it), so it
#   is held to the weights' 2e-4, not to the accumulators' 1e-5: Keras against
#   itself, its oneDNN kernels against its Eigen ones from one state, differs
#   there by 8.6e-6 (centered, eps 1e-5, online; benchmarks/step_conditioning.py).
# A halved L2 gradient, a missing dropout scale or bias correction, a moved
# epsilon are off by 1e-3 to 1 (scripts/mutation_check.py).
TOL_PART = 1e-6
TOL_STEP = {"loss": 1e-5, "slots": 1e-5, "kernels": 2e-4, "intercepts": 2e-4, "step_slots": 2e-4}
# A ReLU pre-activation within float32 round-off of 0 is positive in one summation order and
# negative in another, and neither framework fixes the order: TensorFlow's and XLA's CPU
# kernels pick theirs by the CPU's instruction set at run time (oneDNN or Eigen; YNNPACK in
# jaxlib 0.10). One such unit takes a row's whole gradient through it or none of it (8e-3 of
# the step: benchmarks/step_conditioning.py). So the data of a comparison keeps every hidden
# ReLU pre-activation at least KINK_MARGIN roundings (2**-24 of the sum of its terms'
# magnitudes) from 0; two float32 sums of these sizes differ by a few such roundings at most.
KINK_MARGIN = 16

OPTIMIZERS = {
    "adam": lambda: keras.optimizers.Adam(1e-3),
    "adam-betas-eps": lambda: keras.optimizers.Adam(3e-3, beta_1=0.8, beta_2=0.95, epsilon=1e-4),
    "amsgrad": lambda: keras.optimizers.Adam(1e-3, amsgrad=True),
    "rmsprop-rho0.99": lambda: keras.optimizers.RMSprop(1e-3, rho=0.99),
    "rmsprop-rho0.01": lambda: keras.optimizers.RMSprop(1e-3, rho=0.01),
    "rmsprop-centered": lambda: keras.optimizers.RMSprop(1e-3, centered=True),
    "rmsprop-momentum": lambda: keras.optimizers.RMSprop(1e-3, momentum=0.5),
    "rmsprop-centered-momentum": lambda: keras.optimizers.RMSprop(1e-3, rho=0.8, momentum=0.9, centered=True,
                                                                  epsilon=1e-5),
    "sgd": lambda: keras.optimizers.SGD(0.1),
    "sgd-momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "sgd-nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
}
PENALTIES = {"none": (None, 0.0), "l1": ("l1", 1e-3), "l2": ("l2", 1e-2)}  # 1e-2: the study's 2.4.1
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
# (layer sizes from input to output, rows in the batch). The kernels split a
# product X @ W into row blocks above 128 rows, a gradient X.T @ D into column
# blocks when the batch has 64 rows or more and the layer more than 64 units,
# and apply a batch of one row as outer products in blocks of 16,384 parameters.
SHAPES = {
    "study-128-256-batch256": ((784, 128, 256, 10), 256),  # split rows and columns
    "one-hidden-32-batch32": ((784, 32, 10), 32),  # nothing split
    "three-hidden-batch200": ((784, 96, 48, 80, 10), 200),  # widths either side of 64
    "study-128-256-online": ((784, 128, 256, 10), 1),  # outer products, several cache blocks
}

# Each optimizer with each penalty, the activation and shape rotating; then
# each activation on each shape. Every row of the matrix names what it covers.
CASES = [
    (opt, pen, ACTIVATIONS[i % 4], list(SHAPES)[(i + j) % 4])
    for i, opt in enumerate(OPTIMIZERS) for j, pen in enumerate(PENALTIES)
] + [("adam", "l2", act, shape) for act in ACTIVATIONS for shape in SHAPES]
CASES = list(dict.fromkeys(CASES))  # one of the second list is already in the first


def _data(rng, rows, n_in, n_out):
    X = rng.random((rows, n_in), dtype=np.float32)
    X[:, : n_in // 8] = 0.0  # columns that are always 0 (MNIST's border pixels): zero gradients
    y = np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, rows)]
    return X, y


def kink_margin(weights, X, activation):
    """The smallest distance of a hidden ReLU pre-activation from 0, in float32 roundings of the
    sum of its terms' magnitudes (inf for other activations): in float64, from Keras's weights."""
    if activation != "relu":
        return np.inf
    h, margin = np.asarray(X, np.float64), np.inf
    for w, b in list(zip(weights[0::2], weights[1::2]))[:-1]:
        w, b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        z, size = h @ w + b, np.abs(h) @ np.abs(w) + np.abs(b)
        margin = min(margin, float(np.min(np.abs(z) / (np.spacing(np.float32(1)) / 2 * size))))
        h = np.maximum(z, 0.0)
    return margin


def _well_posed_data(rng, rows, dims, weights, activation, tries=20):
    """``_data``, drawn again until no ReLU unit lies within KINK_MARGIN roundings of 0."""
    for _ in range(tries):
        X, y = _data(rng, rows, dims[0], dims[-1])
        if kink_margin(weights, X, activation) >= KINK_MARGIN:
            return X, y
    raise AssertionError(f"no draw of {rows} rows keeps the ReLU units of {dims} off 0 in {tries} tries")


def _model(dims, activation, penalty, alpha, optimizer, dropout=0.0, input_dropout=0.0, max_norm=None):
    reg = {None: None, "l1": keras.regularizers.L1, "l2": keras.regularizers.L2}[penalty]
    layers = [keras.Input((dims[0],))]
    if input_dropout:
        layers.append(keras.layers.Dropout(input_dropout))
    for units in dims[1:-1]:
        layers.append(keras.layers.Dense(units, activation=activation,
                                         kernel_regularizer=reg(alpha) if reg else None,
                                         kernel_constraint=max_norm and keras.constraints.MaxNorm(max_norm, axis=0)))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(dims[-1], activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _twins(opt, pen, activation, dims, seed=0, warmup_rows=64, max_norm=None):
    """Two copies of one network in one state: weights, slots and step count."""
    keras.utils.set_random_seed(seed)
    penalty, alpha = PENALTIES[pen]
    keras_model = _model(dims, activation, penalty, alpha, OPTIMIZERS[opt](), max_norm=max_norm)
    rng = np.random.default_rng(seed)
    for _ in range(3):  # non-zero slots, non-zero intercepts, bias correction past step 1
        keras_model.train_on_batch(*_data(rng, warmup_rows, dims[0], dims[-1]))
    if max_norm:  # hidden columns 1.5 times their norm after the warm-up's constraint: the next step's binds
        keras_model.set_weights([w * 1.5 if i % 2 == 0 and i < len(dims) * 2 - 4 else w
                                 for i, w in enumerate(keras_model.get_weights())])
    ours = _model(dims, activation, penalty, alpha, OPTIMIZERS[opt](), max_norm=max_norm)
    ours.set_weights(keras_model.get_weights())
    ours.optimizer.build(ours.trainable_variables)
    assert len(ours.optimizer.variables) == len(keras_model.optimizer.variables)
    for mine, theirs in zip(ours.optimizer.variables, keras_model.optimizer.variables):
        mine.assign(theirs)
    return keras_model, ours, rng


def _compiled_step(model, X, y, engine="compiled"):
    assert keras_adapter.unsupported_reason(model, [], {"batch_size": len(X)}) is None
    history = loop.fit(model, X, y, batch_size=len(X), epochs=1, shuffle=False, seed=0, engine=engine)
    return history.history["loss"][0]


def _is_step(slot, optimizer):
    """Whether ``slot`` holds the step itself: RMSprop's momentum (``w -= momentum``)."""
    return isinstance(optimizer, keras.optimizers.RMSprop) and slot.path.endswith("_momentum")


def _relative_error(ours, theirs, scale):
    """``max |ours - theirs|`` over ``max |scale|``, less one float32 rounding
    of each stored value (``w + step`` rounds to a neighbouring float32 when
    the steps differ in their last bits)."""
    ulp = np.spacing(np.abs(np.asarray(theirs, np.float32))).astype(np.float64)
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = float(np.max(np.abs(scale))) if np.size(scale) else 0.0
    err = float(np.max(np.maximum(np.abs(ours - theirs) - ulp, 0.0))) if np.size(theirs) else 0.0
    return err / scale if scale > 0 else err


def compare_one_step(opt, pen, activation, shape, seed=0, engine="compiled", max_norm=None):
    """One step each way (ours in ``engine``, a ``loop.ENGINES`` key; ``max_norm``: every hidden kernel
    under Keras's ``MaxNorm``); the largest relative difference per kind of quantity."""
    dims, rows = SHAPES[shape]
    keras_model, ours, rng = _twins(opt, pen, activation, dims, seed, max_norm=max_norm)
    X, y = _well_posed_data(rng, rows, dims, keras_model.get_weights(), activation)
    before = [w.copy() for w in keras_model.get_weights()]
    keras_loss = float(keras_model.train_on_batch(X, y)[0])
    our_loss = _compiled_step(ours, X, y, engine)
    errors = {"loss": _relative_error(our_loss, keras_loss, keras_loss)}
    weights = list(zip(ours.get_weights(), keras_model.get_weights(), before))
    errors["kernels"] = max(_relative_error(o, k, k - b) for o, k, b in weights[0::2])
    errors["intercepts"] = max(_relative_error(o, k, k - b) for o, k, b in weights[1::2])
    slots = [(m.numpy(), t.numpy(), _is_step(t, keras_model.optimizer))
             for m, t in zip(ours.optimizer.variables, keras_model.optimizer.variables)
             if m.shape != ()]  # the step count and learning rate are scalars, compared below
    errors["slots"] = max((_relative_error(m, t, t) for m, t, step in slots if not step), default=0.0)
    errors["step_slots"] = max((_relative_error(m, t, t) for m, t, step in slots if step), default=0.0)
    assert int(ours.optimizer.iterations.numpy()) == int(keras_model.optimizer.iterations.numpy()) == 4
    return errors


# Max-norm rows: Keras's constraint is deterministic, so these are whole steps against Keras,
# from hidden kernels scaled above the bound (see _twins), so that the step's constraint binds.
MAX_NORM = 1.0
MAX_NORM_CASES = [("adam", "l2", "relu", "study-128-256-batch256"),
                  ("sgd-momentum", "l2", "tanh", "three-hidden-batch200"),
                  ("rmsprop-centered", "l1", "sigmoid", "one-hidden-32-batch32")]


@pytest.mark.parametrize("opt, pen, activation, shape", MAX_NORM_CASES, ids=["-".join(c) for c in MAX_NORM_CASES])
def test_max_norm_step_is_keras_to_float32_round_off(opt, pen, activation, shape):
    errors = compare_one_step(opt, pen, activation, shape, max_norm=MAX_NORM)
    assert all(errors[k] <= TOL_STEP[k] for k in errors), errors


@pytest.mark.parametrize("opt, pen, activation, shape", MAX_NORM_CASES, ids=["-".join(c) for c in MAX_NORM_CASES])
def test_max_norm_binds_in_the_max_norm_rows(opt, pen, activation, shape):
    """The rows above test the constraint: no hidden kernel's column ends above the bound, and
    the step took some to it (their norms above it before the constraint)."""
    dims, rows = SHAPES[shape]
    _, ours, rng = _twins(opt, pen, activation, dims, max_norm=MAX_NORM)
    _compiled_step(ours, *_data(rng, rows, dims[0], dims[-1]))
    norms = np.concatenate([np.linalg.norm(w, axis=0) for w in ours.get_weights()[0:-2:2]])
    assert norms.max() <= MAX_NORM * (1 + 1e-6)
    assert np.sum(np.abs(norms - MAX_NORM) < 1e-5) >= 10, norms


def test_max_norm_the_next_batch_loss_has_the_constrained_weights_penalty(engine="compiled"):
    """Two batches: the second batch's reported loss carries the penalty of the constrained
    weights (the one step above reports the loss before its update)."""
    dims, rows = (784, 96, 48, 10), 200
    keras_model, ours, rng = _twins("adam", "l2", "relu", dims, max_norm=MAX_NORM)
    X, y = _well_posed_data(rng, rows, dims, keras_model.get_weights(), "relu")
    half = rows // 2
    want = [float(keras_model.train_on_batch(X[i:i + half], y[i:i + half])[0]) for i in (0, half)]
    history = loop.fit(ours, X, y, batch_size=half, epochs=1, shuffle=False, seed=0, engine=engine)
    assert _relative_error(history.history["loss"][0], np.mean(want), np.mean(want)) <= TOL_STEP["loss"]


# -- the Dropout paper's knobs together: input dropout, dropout and max-norm (before the long
# matrix below, so that scripts/mutation_check.py's mutants of them fail fast) ------------

PAPER_KNOBS = {"input_dropout": 0.2, "dropout": 0.5, "max_norm": 1.0}


def _adam_case(dims, rows, activation, penalty, alpha, seed, **layers):
    """An Adam network (``layers``: its dropout, input dropout, max-norm) with non-zero intercepts and
    built slots, its data, and the state a reference step starts from: ``(model, X, y, weights, m, v)``."""
    keras.utils.set_random_seed(seed)
    model = _model(dims, activation, penalty, alpha, keras.optimizers.Adam(1e-3), **layers)
    rng = np.random.default_rng(seed)
    model.optimizer.build(model.trainable_variables)
    for w in model.trainable_variables[1::2]:  # non-zero intercepts
        w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    X, y = _data(rng, rows, dims[0], dims[-1])
    return model, X, y, model.get_weights(), *_adam_slots(model)


def paper_knobs_case(dims, rows, seed=0):
    """A network with every knob of the Dropout paper (input dropout, dropout, max-norm) in a
    state a step in, its data, and ``want(input_mask, masks)``: the reference step with those masks."""
    knobs = PAPER_KNOBS
    model, X, y, weights, m, v = _adam_case(dims, rows, "relu", "l2", 1e-3, seed, dropout=knobs["dropout"],
                                            input_dropout=knobs["input_dropout"], max_norm=knobs["max_norm"])

    def want(input_mask, masks):
        return reference_adam_step(weights, m, v, 0, X, y, "relu", "l2", 1e-3, knobs["dropout"], masks,
                                   input_dropout=knobs["input_dropout"], input_mask=input_mask,
                                   max_norm=knobs["max_norm"])

    return model, X, y, weights, want


def assert_reference_step(network, theta, slots, loss, weights, want):
    """``theta``, the first slot row and the loss after one step are the reference's (float32 against float64)."""
    want_w, want_m, _, want_loss = want
    assert _relative_error(loss, want_loss, want_loss) < 1e-5
    for (_, part), w, old in zip(network.slices(), want_w, weights):
        assert _relative_error(theta[part].reshape(w.shape), w, w - old) < 1e-3
    want_m = np.concatenate([x.ravel() for x in want_m])
    assert _relative_error(slots[0], want_m, want_m) < 1e-4


@pytest.mark.parametrize("dims, rows", [((784, 128, 256, 10), 256), ((784, 96, 48, 10), 40)])
def test_input_dropout_and_max_norm_step_equals_the_reference_with_the_same_masks(dims, rows):
    """The inputs' mask is the documented counter-based one (``kernels.drop_inputs``), the hidden
    layers' NumPy's stream from the same seed; kept inputs are scaled by 1 / (1 - rate); max-norm
    follows the update."""
    model, X, y, weights, want = paper_knobs_case(dims, rows)
    input_mask = _input_masks(1234, rows, dims[0], PAPER_KNOBS["input_dropout"])
    masks = _dropout_masks(1234, rows, dims[1:-1], PAPER_KNOBS["dropout"])
    assert 0.1 < 1 - input_mask.mean() < 0.3  # about the input rate dropped
    network = keras_adapter.compiled_network(model)
    assert (network.input_dropout, network.dropout, network.max_norm) == (0.2, 0.5, 1.0)
    theta = network.read()
    opt = keras_adapter.OptimizerState(model, network)
    with threads.compiled_section():
        loss_sum, _ = kernels.train_epoch(
            theta, np.zeros_like(theta), opt.slots, opt.iterations, X, np.argmax(y, 1).astype(np.int64),
            np.empty(0, np.int64), rows, network.offsets, network.dims, network.activation,
            np.float32(network.dropout), np.float32(network.input_dropout), np.float32(network.max_norm),
            network.penalty, np.float32(network.alpha), opt.code, opt.hyper, 1234, 2)
    assert_reference_step(network, theta, opt.slots, loss_sum / rows, weights, want(input_mask, masks))


def test_online_training_with_the_paper_knobs_says_why_it_is_not_compiled():
    """Batch size 1 with input dropout or max-norm: Keras trains, and the reason says why."""
    from mnist_mlp.training import train

    model, X, y, _, _ = paper_knobs_case((20, 8, 3), 4)
    calls = []
    result = train(model, X, y, keras_fit=lambda *a, **kw: calls.append(kw) or "keras history", batch_size=1,
                   epochs=1, verbose=0)
    assert (result.loop, result.history, len(calls)) == ("keras", "keras history", 1)
    assert "online training (batch size 1)" in result.reason
    with pytest.raises(ValueError, match="batch size 1"):  # the kernel itself refuses too, never ignores them
        network = keras_adapter.compiled_network(model)
        opt = keras_adapter.OptimizerState(model, network)
        theta = network.read()
        kernels.train_epoch(theta, np.zeros_like(theta), opt.slots, opt.iterations, X, np.argmax(y, 1),
                            np.empty(0, np.int64), 1, network.offsets, network.dims, network.activation,
                            np.float32(0.5), np.float32(0.2), np.float32(1.0), network.penalty,
                            np.float32(network.alpha), opt.code, opt.hyper, 0, 1)


@pytest.mark.parametrize("layers, reason", [
    (lambda: [keras.layers.Dense(8, activation="relu", kernel_constraint=keras.constraints.MaxNorm(2.0, axis=1))],
     "MaxNorm on axis 1"),
    (lambda: [keras.layers.Dense(8, activation="relu", kernel_constraint=keras.constraints.NonNeg())],
     "a MaxNorm"),
    (lambda: [keras.layers.Dropout(0.2), keras.layers.Dropout(0.2), keras.layers.Dense(8, activation="relu")],
     "two Dropout layers in a row"),
])
def test_constraints_and_dropouts_the_loops_cannot_apply_are_named(layers, reason):
    model = keras.Sequential([keras.Input((20,)), *layers(), keras.layers.Dense(3, activation="softmax")])
    assert reason in keras_adapter.compiled_network(model)



# -- epoch rules: the learning-rate schedules and early stopping, a few epochs against Keras -----
# The rules are one callback (mnist_mlp.training.schedules.EpochRules) that keras.Model.fit and our
# loops call alike: these rows show the loops train each epoch at the rate it sets, stop where it
# says and end with the weights it restores. tanh: no ReLU kink for a few steps' drift to cross.
EPOCH_RULES = {
    "cosine": dict(schedule="cosine"),
    "invscaling": dict(schedule="invscaling", power_t=0.25),
    "adaptive": dict(schedule="adaptive", n_iter_no_change=1, tol=10.0),  # every epoch stalls: divided after 3
    "early-stopping": dict(schedule="constant", early_stopping=True, n_iter_no_change=1, tol=10.0),
}


def compare_epochs(rule, engine="compiled", epochs=5):
    """``epochs`` epochs of one batch each way under ``EPOCH_RULES[rule]``: the largest relative
    difference of the weights (over their change in the fit) and of each history series."""
    from mnist_mlp.training.schedules import EpochRules

    dims, rows = (784, 96, 48, 10), 160
    keras_model, ours, rng = _twins("adam", "l2", "tanh", dims)
    X, y = _data(rng, rows, dims[0], dims[-1])
    before = [w.copy() for w in keras_model.get_weights()]
    options = dict(EPOCH_RULES[rule])
    schedule = options.pop("schedule")

    def rules():
        return EpochRules(schedule, 3e-3, epochs, 120, **options)

    fit = dict(batch_size=120, epochs=epochs, validation_split=0.25, shuffle=False, verbose=0)
    want = keras_model.fit(X, y, callbacks=[rules()], **fit).history
    got = loop.fit(ours, X, y, callbacks=[rules()], seed=0, engine=engine, **fit).history
    assert got.keys() == want.keys() and len(got["loss"]) == len(want["loss"]), (got, want)
    errors = {key: _relative_error(got[key], want[key], want[key]) for key in want}
    weights = list(zip(ours.get_weights(), keras_model.get_weights(), before))
    errors["weights"] = max(_relative_error(o, k, k - b) for o, k, b in weights)
    return errors, want


@pytest.mark.parametrize("rule", EPOCH_RULES)
def test_epoch_rules_train_as_keras_does(rule):
    errors, history = compare_epochs(rule)
    assert errors.pop("weights") <= TOL_STEP["kernels"] and max(errors.values()) <= TOL_STEP["loss"], errors
    rates = history["learning_rate"]
    assert len(set(rates)) > 1 or rule == "early-stopping", rates  # the rate changed: the row tests it
    assert len(rates) == (3 if rule == "early-stopping" else 5)  # the 2nd and 3rd epochs stall: 2 > 1

@pytest.mark.parametrize("opt, pen, activation, shape", CASES, ids=["-".join(c) for c in CASES])
def test_one_step_is_keras_to_float32_round_off(opt, pen, activation, shape):
    errors = compare_one_step(opt, pen, activation, shape)
    assert all(errors[k] <= TOL_STEP[k] for k in errors), errors


def _keras_gradients(model, X, y):
    """The gradient ``keras.Model.train_on_batch`` takes: mean cross-entropy plus the penalties."""
    from mnist_mlp._tensorflow import tf

    with tf.GradientTape() as tape:
        p = model(X, training=True)
        loss = keras.ops.mean(keras.losses.categorical_crossentropy(y, p))
        if model.losses:
            loss = loss + tf.add_n(model.losses)
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


GRADIENT_CASES = [(act, pen, shape) for act in ACTIVATIONS for pen in PENALTIES
                  for shape in SHAPES if SHAPES[shape][1] > 1]


@pytest.mark.parametrize("activation, pen, shape", GRADIENT_CASES, ids=["-".join(c) for c in GRADIENT_CASES])
def test_gradient_is_keras_to_float32_round_off(activation, pen, shape):
    """The loop's gradient buffer after one step at learning rate 0 is Keras's gradient."""
    errors = compare_gradient(activation, pen, shape)
    assert max(errors.values()) <= TOL_PART, errors


def _kernels_gradient(model, network, X, y):
    """The compiled loop's gradient: its buffer after one step at learning rate 0."""
    theta, grad = network.read(), np.zeros(network.n_params, np.float32)
    opt = keras_adapter.OptimizerState(model, network)
    with threads.compiled_section():
        kernels.train_epoch(theta, grad, opt.slots, opt.iterations, X, np.argmax(y, 1).astype(np.int64),
                             np.empty(0, np.int64), len(X), network.offsets, network.dims, network.activation,
                             np.float32(0.0), np.float32(0.0), np.float32(0.0), network.penalty,
                             np.float32(network.alpha), opt.code, opt.hyper, 0, 2)
    return grad


def compare_gradient(activation, pen, shape, gradient=_kernels_gradient):
    """Largest relative difference per variable between our gradient (flat, from
    ``gradient(model, network, X, y)``) and Keras's."""
    dims, rows = SHAPES[shape]
    keras.utils.set_random_seed(1)
    penalty, alpha = PENALTIES[pen]
    model = _model(dims, activation, penalty, alpha, keras.optimizers.SGD(0.0))
    rng = np.random.default_rng(1)
    for w in model.trainable_variables[1::2]:  # non-zero intercepts
        w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    X, y = _data(rng, rows, dims[0], dims[-1])
    want = _keras_gradients(model, X, y)
    network = keras_adapter.compiled_network(model)
    grad = gradient(model, network, X, y)
    return {var.path: _relative_error(grad[part].reshape(g.shape), g, g)
            for (var, part), g in zip(network.slices(), want)}


def _random_slots(model, rng):
    """Slots a few hundred steps in: signed momenta, positive velocities, and a
    centered RMSprop's average gradient inside its velocity's square root."""
    opt = model.optimizer
    opt.build(model.trainable_variables)
    opt.iterations.assign(7)
    slots = {v.path: v for v in opt.variables if v.shape != ()}
    for path, var in slots.items():
        if path.endswith(("_velocity", "_velocity_hat")):
            var.assign(rng.uniform(1e-8, 1e-4, var.shape).astype(np.float32))
        elif not path.endswith("_average_gradient"):
            var.assign(rng.normal(0, 1e-3, var.shape).astype(np.float32))
    for path, var in slots.items():
        if path.endswith("_average_gradient"):
            velocity = slots[path.replace("_average_gradient", "_velocity")].numpy()
            var.assign((rng.uniform(-0.9, 0.9, var.shape) * np.sqrt(velocity)).astype(np.float32))


UPDATE_CASES = [(opt, pen) for opt in OPTIMIZERS for pen in PENALTIES]


@pytest.mark.parametrize("opt, pen", UPDATE_CASES, ids=["-".join(c) for c in UPDATE_CASES])
def test_update_rule_is_keras_given_the_same_gradient(opt, pen):
    """``kernels._update`` against the optimizer's own ``apply``, on the same
    gradients, weights and slots: every weight and slot to float32 round-off."""
    errors = compare_update(opt, pen)
    assert max(errors.values()) <= TOL_PART, errors


def _kernels_update(network, state, theta, data_grads):
    """``kernels._update`` on every variable, the penalty on the hidden kernels."""
    state.iterations[0] += 1
    step = kernels._step_size(state.code, state.hyper, np.float32(state.iterations[0]))
    n_kernels = len(network.slices()) // 2
    s0, s1, s2 = state.slots
    for i, ((var, part), g) in enumerate(zip(network.slices(), data_grads)):
        hidden_kernel = i % 2 == 0 and i // 2 < n_kernels - 1
        kernels._update(theta[part], g.ravel().copy(), s0[part], s1[part], s2[part],
                         network.penalty if hidden_kernel else kernels.PENALTY_NONE, np.float32(network.alpha),
                         state.code, state.hyper, step)


def compare_update(opt, pen, update=None):
    """Largest relative difference per weight and slot row after one update each way: Keras's
    and ``update(network, state, theta, data_grads)`` (default: ``kernels._update``), which
    steps ``theta`` and ``state`` in place, given the gradients without the penalty."""
    dims = (20, 70, 10)
    keras.utils.set_random_seed(2)
    penalty, alpha = PENALTIES[pen]
    model = _model(dims, "relu", penalty, alpha, OPTIMIZERS[opt]())
    rng = np.random.default_rng(2)
    for w in model.trainable_variables[1::2]:
        w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    _random_slots(model, rng)
    data_grads = [rng.normal(0, 1e-2, w.shape).astype(np.float32) for w in model.trainable_variables]
    data_grads[0][:3] = 0.0  # weights with no gradient (border pixels): only the penalty moves them
    network = keras_adapter.compiled_network(model)
    theta, state = network.read(), keras_adapter.OptimizerState(model, network)
    before = [w.numpy().copy() for w in model.trainable_variables]

    with_penalty = [g.copy() for g in data_grads]  # Keras's penalty gradient, from its own regularizer
    if penalty:
        from mnist_mlp._tensorflow import tf

        with tf.GradientTape() as tape:
            reg = tf.add_n(model.losses)
        for i, g in enumerate(tape.gradient(reg, model.trainable_variables)):
            if g is not None:
                with_penalty[i] = with_penalty[i] + g.numpy()
    model.optimizer.apply(with_penalty, model.trainable_variables)

    (update or _kernels_update)(network, state, theta, data_grads)
    after = [w.numpy() for w in model.trainable_variables]
    errors = {var.path: _relative_error(theta[part].reshape(want.shape), want, want - old)
              for (var, part), want, old in zip(network.slices(), after, before)}
    keras_state = keras_adapter.OptimizerState(model, network)
    assert keras_state.iterations[0] == state.iterations[0] == 8
    for row in range(3):
        errors[f"slot {row}"] = _relative_error(state.slots[row], keras_state.slots[row], keras_state.slots[row])
    return errors


def test_every_slot_kind_is_compared():
    """The matrix above touches every slot the loop reads and writes."""
    seen = set()
    for opt in OPTIMIZERS:
        _, ours, _ = _twins(opt, "none", "relu", (8, 4, 3), warmup_rows=4)
        seen |= {v.name.rsplit("_", 1)[-1] for v in ours.optimizer.variables if v.shape != ()}
    assert {"momentum", "velocity", "hat", "gradient"} <= seen, seen


# -- dropout: a NumPy reference with the same mask ----------------------------

_ACT = {
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "linear": (lambda z: z, np.ones_like),
}


def reference_adam_step(weights, m, v, t, X, y, activation, penalty, alpha, dropout, masks, lr=1e-3,
                        beta_1=0.9, beta_2=0.999, eps=1e-7, input_dropout=0.0, input_mask=None, max_norm=None):
    """One Keras Adam step of a dense softmax MLP, in float64 NumPy.

    ``weights`` alternates kernels and intercepts; ``masks[l]`` is the 0/1 keep
    mask of hidden layer ``l`` (inverted dropout scales kept units by
    ``1 / (1 - dropout)``), ``input_mask`` that of the inputs (rate ``input_dropout``);
    ``max_norm``: Keras's ``MaxNorm(max_norm, axis=0)`` on the hidden kernels after the update.
    Returns the new weights, slots and the loss.
    """
    f, df = _ACT[activation]
    W = [np.asarray(w, np.float64) for w in weights]
    n_layers = len(W) // 2
    x = np.asarray(X, np.float64)
    inputs, hidden = [x * input_mask / (1 - input_dropout) if input_dropout else x], []
    for layer in range(n_layers):
        z = inputs[-1] @ W[2 * layer] + W[2 * layer + 1]
        if layer < n_layers - 1:
            a = f(z)
            hidden.append(a)
            inputs.append(a * masks[layer] / (1 - dropout) if dropout else a)
        else:
            logits = z
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rows = len(X)
    kernels = W[0:-2:2]
    pen = {None: 0.0, "l1": sum(np.abs(k).sum() for k in kernels),
           "l2": sum((k * k).sum() for k in kernels)}[penalty] * alpha
    loss = -np.mean(np.log(p[np.arange(rows), y.argmax(1)])) + pen
    delta = (p - y) / rows
    grads = [None] * len(W)
    for layer in range(n_layers - 1, -1, -1):
        grads[2 * layer] = inputs[layer].T @ delta
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer < n_layers - 1 and penalty:
            k = W[2 * layer]
            grads[2 * layer] += alpha * (np.sign(k) if penalty == "l1" else 2 * k)
        if layer:
            back = delta @ W[2 * layer].T
            if dropout:
                back = back * masks[layer - 1] / (1 - dropout)
            delta = back * df(hidden[layer - 1])
    t += 1
    step = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    new_w, new_m, new_v = [], [], []
    for w, g, mi, vi in zip(W, grads, m, v):
        mi = mi + (g - mi) * (1 - beta_1)
        vi = vi + (g * g - vi) * (1 - beta_2)
        new_w.append(w - mi * step / (np.sqrt(vi) + eps))
        new_m.append(mi)
        new_v.append(vi)
    if max_norm is not None:
        for i in range(0, len(new_w) - 2, 2):
            norms = np.sqrt((new_w[i] ** 2).sum(axis=0, keepdims=True))
            new_w[i] = new_w[i] * (np.minimum(norms, max_norm) / (1e-7 + norms))
    return new_w, new_m, new_v, loss


def _adam_slots(model):
    opt = model.optimizer
    variables = model.trainable_variables
    by_name = {v.path: v.numpy() for v in opt.variables}
    m = [by_name[f"{opt.name}/{v.path.replace('/', '_')}_momentum"] for v in variables]
    v = [by_name[f"{opt.name}/{w.path.replace('/', '_')}_velocity"] for w in variables]
    return m, v


def _dropout_masks(seed, rows, widths, rate):
    """The keep masks ``kernels.train_epoch`` draws from ``seed``: Numba's
    generator is NumPy's Mersenne Twister, seeded the same way, and draws one
    uniform per unit, row by row, layer by layer."""
    stream = np.random.RandomState(seed)
    return [(stream.random_sample((rows, width)) >= rate).astype(np.float64) for width in widths]


def _input_masks(seed, rows, width, rate, first_row=0):
    """The inputs' keep masks ``kernels.train_epoch`` draws from ``seed`` for rows ``first_row ...``
    of an epoch, rebuilt in NumPy from ``kernels.drop_inputs``'s documentation: SplitMix64 words
    ``mix64(key + k * golden)``, ``k`` counting from 1 at the epoch's first row, ``ceil(width / 2)``
    words a row, each split low half first; kept where a half is at least ``rate * 2**32``."""
    def mix64(z):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    key = mix64(np.array([seed], np.uint64) ^ np.uint64(0x6A09E667F3BCC909))
    half = (width + 1) // 2
    counters = np.arange(first_row * half, (first_row + rows) * half, dtype=np.uint64) + np.uint64(1)
    halves = mix64(key + counters * np.uint64(0x9E3779B97F4A7C15)).view(np.uint32).reshape(rows, 2 * half)
    threshold = int(np.float64(np.float32(rate)) * 2.0**32 + 0.5)
    return (halves[:, :width] >= threshold).astype(np.float64)


@pytest.mark.parametrize("width, first_row", [(784, 0), (7, 5)])
def test_input_masks_are_the_documented_generator_and_drop_the_rate(width, first_row):
    """``drop_inputs`` keeps exactly the inputs the documented generator keeps (an odd width
    included), scales them by 1 / (1 - rate), and drops about ``rate`` of them, independently of
    row, position and seed."""
    rate, rows = np.float32(0.2), 600
    X = np.random.default_rng(0).random((rows, width), dtype=np.float32) + np.float32(0.5)
    out = np.empty_like(X)
    key = kernels.input_dropout_key(1234)
    kernels.drop_inputs(X, out, key, first_row, rate, np.float32(1) / (np.float32(1) - rate))
    mask = _input_masks(1234, rows, width, rate, first_row)
    np.testing.assert_allclose(out, X * mask / (1 - rate), rtol=1e-6)
    if width < 100:
        return
    dropped = 1 - mask
    sd = np.sqrt(rate * (1 - rate) / dropped.size)
    assert abs(dropped.mean() - rate) < 5 * sd
    for by_row in (dropped.mean(axis=1), dropped.mean(axis=0)):  # no row or position dropped more than chance
        assert np.abs(by_row - rate).max() < 6 * np.sqrt(rate * (1 - rate) / (dropped.size / by_row.size))
    # neighbours and the same input a row apart are uncorrelated
    assert abs(np.corrcoef(dropped[:, :-1].ravel(), dropped[:, 1:].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(dropped[:-1].ravel(), dropped[1:].ravel())[0, 1]) < 0.02
    other_seed = _input_masks(1235, rows, width, rate, first_row)
    assert abs(np.corrcoef(mask.ravel(), other_seed.ravel())[0, 1]) < 0.02


def test_each_batch_of_an_epoch_draws_the_inputs_of_its_own_rows():
    """Two batches of one epoch (and no learning: SGD at rate 0) report the loss of the inputs
    masked as rows 0-3 and 4-7 of the epoch: a batch does not reuse another's masks."""
    rate, seed, rows, dims = 0.5, 7, 8, (40, 6, 3)
    keras.utils.set_random_seed(0)
    model = _model(dims, "relu", None, 0.0, keras.optimizers.SGD(0.0), input_dropout=rate)
    rng = np.random.default_rng(0)
    X = rng.random((rows, dims[0]), dtype=np.float32)
    y = rng.integers(0, dims[-1], rows).astype(np.int64)
    network = keras_adapter.compiled_network(model)
    theta = network.read()
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    kept = X * _input_masks(seed, rows, dims[0], rate) / (1 - rate)
    logits = np.maximum(kept @ w1 + b1, 0) @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    want = np.sum(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(rows), y])
    opt = keras_adapter.OptimizerState(model, network)
    loss_sum, _ = kernels.train_epoch(
        theta, np.zeros_like(theta), opt.slots, opt.iterations, X, y, np.empty(0, np.int64), rows // 2,
        network.offsets, network.dims, network.activation, np.float32(0.0), np.float32(rate), np.float32(0.0),
        network.penalty, np.float32(0.0), opt.code, opt.hyper, seed, 1)
    assert _relative_error(loss_sum, want, want) < 1e-5


@pytest.mark.parametrize("activation, penalty, dims, rows", [
    ("relu", "l1", (784, 128, 256, 10), 256),
    ("tanh", "l2", (784, 96, 48, 10), 1),
    ("sigmoid", None, (784, 32, 10), 40),
])
def test_dropout_step_equals_a_numpy_reference_with_the_same_mask(activation, penalty, dims, rows):
    rate, seed, alpha = 0.3, 1234, 1e-3
    model, X, y, weights, m, v = _adam_case(dims, rows, activation, penalty, alpha, 0, dropout=rate)
    masks = _dropout_masks(seed, rows, dims[1:-1], rate)
    want_w, want_m, want_v, want_loss = reference_adam_step(weights, m, v, 0, X, y, activation, penalty,
                                                            alpha, rate, masks)

    network = keras_adapter.compiled_network(model)
    theta = network.read()
    opt = keras_adapter.OptimizerState(model, network)
    state = opt.slots
    with threads.compiled_section():
        loss_sum, _ = kernels.train_epoch(
            theta, np.zeros_like(theta), state, opt.iterations, X, np.argmax(y, 1).astype(np.int64),
            np.empty(0, np.int64), rows, network.offsets, network.dims, network.activation,
            np.float32(rate), np.float32(0.0), np.float32(0.0), network.penalty, np.float32(network.alpha), opt.code,
            opt.hyper, seed, 2)
    network.write(theta)
    got_w = model.get_weights()
    assert _relative_error(loss_sum / rows, want_loss, want_loss) < 1e-5
    # float32 against float64. A single row's gradient is one outer product, not an average: where
    # its data term and its penalty term nearly cancel (to 1/280 of their size here), float32
    # round-off in the forward pass reaches the update. Over 12 draws of the data, both the old
    # first product (BLAS) and the online loop's own (summed in blocks, see
    # kernels._first_product_part) stayed under 1e-2 and exceeded 1e-3 three times each (at most
    # 3.3e-3 and 6.3e-3). A wrong mask, scale or sign is off by far more.
    tolerance = 1e-2 if rows == 1 else 1e-3
    for got, want, old in zip(got_w, want_w, weights):
        assert _relative_error(got, want, want - old) < tolerance
    assert _relative_error(state[0], np.concatenate([x.ravel() for x in want_m]),
                           np.concatenate([x.ravel() for x in want_m])) < 1e-4


@pytest.mark.parametrize("max_norm", [None, 1.0])
def test_the_numpy_reference_is_keras_without_dropout(max_norm):
    """The reference above is Keras's step (so the dropout case is Keras's step with that mask),
    max-norm included."""
    dims, rows = (784, 64, 32, 10), 50
    keras.utils.set_random_seed(0)
    model = _model(dims, "relu", "l2", 1e-2, keras.optimizers.Adam(1e-3), max_norm=max_norm)
    rng = np.random.default_rng(1)
    model.train_on_batch(*_data(rng, rows, dims[0], dims[-1]))
    X, y = _data(rng, rows, dims[0], dims[-1])
    weights = model.get_weights()
    m, v = _adam_slots(model)
    want_w, _, _, want_loss = reference_adam_step(weights, m, v, 1, X, y, "relu", "l2", 1e-2, 0.0, None,
                                                  max_norm=max_norm)
    loss = float(model.train_on_batch(X, y)[0])
    assert _relative_error(loss, want_loss, want_loss) < 1e-5
    for got, want, old in zip(model.get_weights(), want_w, weights):
        assert _relative_error(got, want, want - old) < 1e-3


def test_dropout_masks_are_the_documented_stream():
    """The mask the loop draws from a seed is the one the reference rebuilds:
    with a network whose output is the mask itself, one step of SGD at learning
    rate 1 moves exactly the kept units' weights."""
    rate, seed, rows, width = 0.4, 99, 3, 50
    masks = _dropout_masks(seed, rows, [width], rate)
    assert 0.25 < 1 - masks[0].mean() < 0.55  # about `rate` dropped
    keras.utils.set_random_seed(0)
    model = _model((1, width, 2), "linear", None, 0.0, keras.optimizers.SGD(1.0), dropout=rate)
    network = keras_adapter.compiled_network(model)
    theta = network.read()
    theta[:] = 0.0
    # Hidden pre-activation 1 everywhere (bias 1, input 0), output kernel 0:
    # the output kernel's gradient for hidden unit j is the sum over rows of
    # kept_j * scale * (p - y), non-zero exactly where a row kept unit j.
    theta[network.offsets[0] + width:network.offsets[0] + 2 * width] = 1.0
    X = np.zeros((rows, 1), np.float32)
    y = np.zeros(rows, np.int64)
    opt = keras_adapter.OptimizerState(model, network)
    kernels.train_epoch(theta, np.zeros_like(theta), opt.slots, opt.iterations, X, y, np.empty(0, np.int64),
                         rows, network.offsets, network.dims, network.activation, np.float32(rate), np.float32(0.0),
                         np.float32(0.0), network.penalty, np.float32(0.0), opt.code, opt.hyper, seed, 1)
    out_kernel = theta[network.offsets[1]:network.offsets[1] + width * 2].reshape(width, 2)
    # p = (0.5, 0.5), y = class 0: gradient of column 0 is -0.5 / rows * scale * (kept count).
    expected = 0.5 / rows / (1 - rate) * masks[0].sum(axis=0)
    np.testing.assert_allclose(out_kernel[:, 0], expected, rtol=1e-6)

