"""The XLA loop (``training_loop="xla"``) step by step against Keras, and whole fits against the compiled loop.

The same proof as ``tests/test_training_kernels.py`` gives the compiled loop,
on JAX's CPU backend: one whole step of :func:`mnist_mlp.training.loop.fit`
with ``engine="xla"`` against ``keras.Model.train_on_batch`` from identical
state, for every optimizer rule and variant, penalty, activation and shape the
loop accepts; the gradient alone against ``tf.GradientTape``; the update rule
alone against the optimizer's own ``apply`` on identical gradients; dropout
against the NumPy reference step with the masks the program draws. Then what a
user sees: whole fits that agree with the compiled loop's, ``auto`` choosing
the XLA loop where JAX sees a GPU, callbacks, and the module's promise to need
JAX and NumPy alone.

``scripts/mutation_check.py`` breaks :mod:`mnist_mlp.training.xla` on purpose
and shows each mutant fails this module.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the XLA loop needs JAX: the test extra installs jax[cpu]")

import test_training_kernels as k  # noqa: E402  (the compiled loop's comparisons, reused)
from mnist_mlp import MLPClassifier  # noqa: E402
from mnist_mlp._tensorflow import keras  # noqa: E402
from mnist_mlp.training import devices, keras_adapter, loop, xla  # noqa: E402
from mnist_mlp.training.codes import PENALTY_NONE  # noqa: E402

# the XLA loop's per-step proof against Keras compiles a program per configuration (100 s of a
# 265 s fast tier): in the slow tier; run this module itself when you change training/.
pytestmark = pytest.mark.slow

jnp = jax.numpy


def _spec(network, rule, rows=1):
    return xla._Spec(tuple(int(d) for d in network.dims), network.activation, False, network.penalty, rule.code,
                     rule.variant(), rows, rows, 0, False)


def _rule(state):
    return xla.Rule(state.code, tuple(float(h) for h in state.hyper))


def xla_update(network, state, theta, data_grads):
    """``xla._apply`` on every variable (the penalty's gradient added as the program adds it), in place
    on the host's ``theta`` and ``state``."""
    rule = _rule(state)
    spec = _spec(network, rule)
    params, slots, t = xla._device_state(theta, state.slots, state.iterations[0], network.dims, rule)
    grads = [(jnp.asarray(data_grads[2 * i]), jnp.asarray(data_grads[2 * i + 1])) for i in range(len(params))]
    grads = xla._with_penalty(spec, params, grads, jnp.float32(network.alpha))
    new = xla._apply(spec, jnp.asarray(state.hyper), params, slots, t, grads)
    theta[:], state.slots[:], state.iterations[0] = xla._host_state(new)


@pytest.mark.parametrize("opt, pen", k.UPDATE_CASES, ids=["-".join(c) for c in k.UPDATE_CASES])
def test_update_rule_is_keras_given_the_same_gradient(opt, pen):
    errors = k.compare_update(opt, pen, update=xla_update)
    assert max(errors.values()) <= k.TOL_PART, errors


def xla_gradient(model, network, X, y):
    """The XLA program's gradient (flat), penalty included."""
    state = keras_adapter.OptimizerState(model, network)
    params, _, _ = xla._device_state(network.read(), state.slots, 0, network.dims, _rule(state))
    spec = _spec(network, _rule(state), len(X))
    _, _, grads = xla._gradients(spec, params, jnp.asarray(X), jnp.asarray(np.argmax(y, 1).astype(np.int32)),
                                 jnp.float32(network.alpha))
    return xla._flat(jax.device_get(grads))


@pytest.mark.parametrize("activation, pen, shape", k.GRADIENT_CASES, ids=["-".join(c) for c in k.GRADIENT_CASES])
def test_gradient_is_keras_to_float32_round_off(activation, pen, shape):
    errors = k.compare_gradient(activation, pen, shape, gradient=xla_gradient)
    assert max(errors.values()) <= k.TOL_PART, errors


def test_relu_passes_no_gradient_at_exactly_zero():
    """A new Keras layer's intercepts are 0, so an all-zero input row gives pre-activations of
    exactly 0 in every hidden layer: Keras's ReLU passes no gradient there, and neither may ours
    (JAX's max would pass half: the intercepts' gradient would differ by 1/2 of those rows')."""
    dims, rows = (20, 16, 12, 3), 8
    keras.utils.set_random_seed(2)
    model = k._model(dims, "relu", None, 0.0, keras.optimizers.SGD(0.0))
    X, y = k._data(np.random.default_rng(2), rows, dims[0], dims[-1])
    X[::2] = 0.0  # half the rows blank
    want = k._keras_gradients(model, X, y)
    network = keras_adapter.compiled_network(model)
    grad = xla_gradient(model, network, X, y)
    errors = {var.path: k._relative_error(grad[part].reshape(g.shape), g, g)
              for (var, part), g in zip(network.slices(), want)}
    assert max(errors.values()) <= k.TOL_PART, errors


@pytest.mark.parametrize("activation, penalty, dims, rows", [
    ("relu", "l1", (784, 128, 256, 10), 256),
    ("tanh", "l2", (784, 96, 48, 10), 1),
    ("sigmoid", None, (784, 32, 10), 40),
])
def test_dropout_step_equals_a_numpy_reference_with_the_same_mask(activation, penalty, dims, rows):
    """One step with dropout is the reference step (itself Keras's: ``test_training_kernels``)
    with the masks the program draws for step 0 of epoch 0 from its seed."""
    rate, seed, alpha = 0.3, 1234, 1e-3
    keras.utils.set_random_seed(0)
    model = k._model(dims, activation, penalty, alpha, keras.optimizers.Adam(1e-3), dropout=rate)
    rng = np.random.default_rng(0)
    model.optimizer.build(model.trainable_variables)
    for w in model.trainable_variables[1::2]:  # non-zero intercepts
        w.assign(rng.normal(0, 0.1, w.shape).astype(np.float32))
    X, y = k._data(rng, rows, dims[0], dims[-1])
    weights = model.get_weights()
    m, v = k._adam_slots(model)
    scaled = xla._dropout_masks(xla._step_key(jax.random.key(seed), 0, 0), rows, list(dims[1:-1]), rate)
    masks = [np.asarray(mask) > 0 for mask in scaled]
    assert all(0.2 < 1 - mask.mean() < 0.4 for mask in masks)  # about `rate` dropped
    want_w, want_m, _, want_loss = k.reference_adam_step(weights, m, v, 0, X, y, activation, penalty, alpha,
                                                         rate, [mask.astype(np.float64) for mask in masks])

    network = keras_adapter.compiled_network(model)
    state = keras_adapter.OptimizerState(model, network)
    program = xla.EpochProgram(network.dims, activation=network.activation, dropout=rate, penalty=network.penalty,
                               alpha=network.alpha, rule=_rule(state), batch_size=rows, shuffle=False, seed=seed)
    program.load(network.read(), state.slots, 0, X, np.argmax(y, 1), rows)
    logs = program.run_epoch(0)
    theta, slots, _ = program.read()
    assert k._relative_error(logs["loss"], want_loss, want_loss) < 1e-5
    tolerance = 1e-2 if rows == 1 else 1e-3  # float32 against float64: see test_training_kernels
    for (_, part), want, old in zip(network.slices(), want_w, weights):
        assert k._relative_error(theta[part].reshape(want.shape), want, want - old) < tolerance
    want_m = np.concatenate([x.ravel() for x in want_m])
    assert k._relative_error(slots[0], want_m, want_m) < 1e-4


@pytest.mark.parametrize("opt, pen, activation, shape", k.MAX_NORM_CASES, ids=["-".join(c) for c in k.MAX_NORM_CASES])
def test_max_norm_step_is_keras_to_float32_round_off(opt, pen, activation, shape):
    errors = k.compare_one_step(opt, pen, activation, shape, engine="xla", max_norm=k.MAX_NORM)
    assert all(errors[key] <= k.TOL_STEP[key] for key in errors), errors


def test_max_norm_the_next_batch_loss_has_the_constrained_weights_penalty():
    k.test_max_norm_the_next_batch_loss_has_the_constrained_weights_penalty(engine="xla")


@pytest.mark.parametrize("dims, rows", [((784, 128, 256, 10), 256), ((784, 96, 48, 10), 40)])
def test_input_dropout_and_max_norm_step_equals_the_reference_with_the_same_masks(dims, rows):
    """The inputs' mask comes from a key split off the step's, the hidden masks from the rest."""
    model, X, y, weights, want = k.paper_knobs_case(dims, rows)
    knobs, seed = k.PAPER_KNOBS, 1234
    input_key, key = jax.random.split(xla._step_key(jax.random.key(seed), 0, 0))
    input_mask = np.asarray(xla._dropout_masks(input_key, rows, [dims[0]], knobs["input_dropout"])[0]) > 0
    masks = [np.asarray(mask) > 0 for mask in xla._dropout_masks(key, rows, list(dims[1:-1]), knobs["dropout"])]
    assert 0.1 < 1 - input_mask.mean() < 0.3
    network = keras_adapter.compiled_network(model)
    state = keras_adapter.OptimizerState(model, network)
    program = xla.EpochProgram(network.dims, activation=network.activation, dropout=network.dropout,
                               penalty=network.penalty, alpha=network.alpha, rule=_rule(state), batch_size=rows,
                               shuffle=False, seed=seed, input_dropout=network.input_dropout,
                               max_norm=network.max_norm)
    program.load(network.read(), state.slots, 0, X, np.argmax(y, 1), rows)
    logs = program.run_epoch(0)
    theta, slots, _ = program.read()
    k.assert_reference_step(network, theta, slots, logs["loss"], weights,
                            want(input_mask.astype(np.float64), [m.astype(np.float64) for m in masks]))


@pytest.mark.parametrize("rule", k.EPOCH_RULES)
def test_epoch_rules_train_as_keras_does(rule):
    errors, _ = k.compare_epochs(rule, engine="xla")
    assert errors.pop("weights") <= k.TOL_STEP["kernels"] and max(errors.values()) <= k.TOL_STEP["loss"], errors


def test_online_training_with_the_paper_knobs_runs_in_the_xla_loop():
    """What the compiled loop refuses at batch size 1 (its online steps), the XLA loop trains."""
    model, X, y, _, _ = k.paper_knobs_case((20, 8, 3), 4)
    history = loop.fit(model, X, y, batch_size=1, epochs=1, shuffle=False, seed=0, engine="xla")
    assert np.isfinite(history.history["loss"][0])
    assert np.linalg.norm(model.get_weights()[0], axis=0).max() <= k.PAPER_KNOBS["max_norm"] * (1 + 1e-6)


# -- whole fits: what a user sees ------------------------------------------------

SMALL = dict(hidden_layer_sizes=(32, 16), epochs=4, batch_size=32, random_state=0, tracking=False)


@pytest.fixture(scope="module")
def digits():
    rng = np.random.default_rng(0)
    X = rng.random((500, 40), dtype=np.float32)
    y = (X[:, :4].sum(axis=1) * 2.5).astype(int) % 4  # learnable: a function of the first columns
    return X, y


@pytest.mark.parametrize("params", [
    {},
    {"optimizer": "rmsprop", "alpha": 1e-3, "penalty": "l1", "batch_size": 64},
    {"optimizer": "sgd", "optimizer__momentum": 0.9, "optimizer__nesterov": True, "batch_size": 50,
     "activation": "tanh", "validation_split": 0.0},
], ids=["adam", "rmsprop-l1-ragged-batch", "sgd-nesterov-tanh"])
def test_a_fit_agrees_with_the_compiled_loop(digits, params):
    """Same data, seed and settings (no shuffling or dropout, whose draws differ): the same history,
    weights, optimizer slots and step count, to round-off."""
    X, y = digits
    try:
        compiled = MLPClassifier(**{**SMALL, **params}).fit(X, y)
        ours = MLPClassifier(**{**SMALL, **params}, training_loop="xla").fit(X, y)
    except TypeError as exc:  # a parameter this estimator spells differently: say which
        pytest.fail(f"{params}: {exc}")
    assert (compiled.training_loop_, ours.training_loop_) == ("compiled", "xla"), ours.training_loop_reason_
    assert ours.training_loop_reason_ == "training_loop='xla'"
    assert ours.history_.keys() == compiled.history_.keys()
    for key in compiled.history_:
        np.testing.assert_allclose(ours.history_[key], compiled.history_[key], rtol=2e-4, atol=1e-6, err_msg=key)
    for mine, theirs in zip(ours.model_.get_weights(), compiled.model_.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=2e-4 * np.abs(theirs).max())
    slots = [(m.numpy(), t.numpy()) for m, t in zip(ours.model_.optimizer.variables,
                                                     compiled.model_.optimizer.variables)]
    for mine, theirs in slots:
        np.testing.assert_allclose(mine, theirs, atol=1e-3 * max(np.abs(theirs).max(), 1e-12))
    assert ours.n_weight_updates_ == compiled.n_weight_updates_
    np.testing.assert_array_equal(ours.predict(X), compiled.predict(X))


def test_warm_start_continues_from_the_written_back_weights_and_slots(digits):
    """Two fits of 2 epochs with warm_start are one fit of 4: the weights, the slots and the step
    count went back into Keras and came out again."""
    X, y = digits
    once = MLPClassifier(**{**SMALL, "epochs": 4}, training_loop="xla").fit(X, y)
    twice = MLPClassifier(**{**SMALL, "epochs": 2}, training_loop="xla", warm_start=True).fit(X, y).fit(X, y)
    assert twice.n_weight_updates_ == once.n_weight_updates_
    for mine, theirs in zip(twice.model_.get_weights(), once.model_.get_weights()):
        np.testing.assert_allclose(mine, theirs, atol=1e-5 * np.abs(theirs).max())


def test_shuffling_visits_every_row_once_an_epoch_in_a_new_order(digits):
    """At a learning rate too small to move the weights, a shuffled epoch's loss and accuracy are
    the unshuffled ones (a permutation: every row once); at a real rate the weights differ (the
    order changed)."""
    X, y = digits

    def fit(lr, shuffle):
        return MLPClassifier(**{**SMALL, "epochs": 2}, optimizer="sgd", learning_rate_init=lr, shuffle=shuffle,
                             training_loop="xla").fit(X, y)

    still, still_shuffled = fit(1e-20, False), fit(1e-20, True)
    np.testing.assert_allclose(still_shuffled.history_["loss"], still.history_["loss"], rtol=1e-6)
    assert still_shuffled.history_["accuracy"] == still.history_["accuracy"]
    moving, moving_shuffled = fit(0.1, False), fit(0.1, True)
    assert not np.allclose(moving.model_.get_weights()[0], moving_shuffled.model_.get_weights()[0])
    assert moving_shuffled.history_["loss"][-1] < moving_shuffled.history_["loss"][0]  # it still learns


def test_dropout_fits_are_seeded(digits):
    X, y = digits
    fits = [MLPClassifier(**{**SMALL, "random_state": seed}, dropout=0.3, training_loop="xla").fit(X, y)
            for seed in (0, 0, 1)]
    assert fits[0].history_ == fits[1].history_
    assert fits[0].history_ != fits[2].history_


def test_epoch_callbacks_see_the_epochs_weights_and_can_stop(digits):
    X, y = digits
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, self.model.get_weights()[0].copy(), dict(logs)))
            if epoch == 2:
                self.model.stop_training = True

    clf = MLPClassifier(**{**SMALL, "epochs": 10}, callbacks=[Watch()], training_loop="xla").fit(X, y)
    assert clf.training_loop_ == "xla"
    assert [e for e, _, _ in seen] == [0, 1, 2] and clf.n_iter_ == 3
    assert not np.array_equal(seen[0][1], seen[1][1])  # the model held each epoch's weights
    np.testing.assert_array_equal(seen[-1][1], clf.model_.get_weights()[0])
    assert set(seen[0][2]) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_auto_trains_in_the_xla_loop_where_jax_sees_a_gpu(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(devices, "jax_gpus", lambda: ["NVIDIA H200"])
    clf = MLPClassifier(**SMALL).fit(X, y)
    assert clf.training_loop_ == "xla"
    assert clf.training_loop_reason_.startswith("JAX sees a GPU (NVIDIA H200)")
    keras_fit = MLPClassifier(**SMALL, class_weight="balanced").fit(X, y)  # what neither loop does
    assert keras_fit.training_loop_ == "keras" and "weights" in keras_fit.training_loop_reason_
    monkeypatch.setattr(devices, "jax_gpus", lambda: [])
    assert MLPClassifier(**SMALL).fit(X, y).training_loop_ == "compiled"


def test_jax_sees_no_gpu_here():
    """The test machines have none: ``auto`` keeps the compiled loop (the CPU default)."""
    assert devices.jax_gpus() == [] or jax.default_backend() == "gpu"


def test_asking_for_the_xla_loop_without_jax_is_a_clear_error(digits, monkeypatch):
    X, y = digits
    monkeypatch.setattr(devices, "jax_installed", lambda: False)
    with pytest.raises(ValueError, match=r"training_loop='xla' needs JAX.*mnist-mlp\[gpu\]"):
        MLPClassifier(**SMALL, training_loop="xla").fit(X, y)


def test_the_xla_module_needs_numpy_and_jax_alone():
    """It runs where TensorFlow, Keras, MLflow and Numba are not installed (a GPU machine with JAX)."""
    code = ("import sys, mnist_mlp.training.xla; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'tensorflow', 'keras', 'mlflow', 'numba', 'sklearn', 'scikeras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_penalty_is_on_the_hidden_kernels_only():
    """Not on the output kernel, not on the biases: the gradient of a zero-data step is the penalty's."""
    dims = (3, 4, 2)
    params = tuple((jnp.ones((a, b)), jnp.ones(b)) for a, b in zip(dims[:-1], dims[1:]))
    zeros = tuple((jnp.zeros((a, b)), jnp.zeros(b)) for a, b in zip(dims[:-1], dims[1:]))
    spec = xla._Spec(dims, 0, False, 2, 0, (False, False), 1, 1, 0, False)  # L2
    grads = xla._with_penalty(spec, params, zeros, jnp.float32(0.5))
    assert float(grads[0][0].min()) == float(grads[0][0].max()) == 1.0  # 2 * 0.5 * w
    assert not any(float(jnp.abs(g).max()) for g in (grads[0][1], grads[1][0], grads[1][1]))
    assert xla._with_penalty(xla._Spec(dims, 0, False, PENALTY_NONE, 0, (False, False), 1, 1, 0, False),
                             params, zeros, jnp.float32(0.5)) is zeros


# Last: the slowest (a compilation per row), so that a broken rule fails fast above.
@pytest.mark.parametrize("opt, pen, activation, shape", k.CASES, ids=["-".join(c) for c in k.CASES])
def test_one_step_is_keras_to_float32_round_off(opt, pen, activation, shape):
    errors = k.compare_one_step(opt, pen, activation, shape, engine="xla")
    assert all(errors[key] <= k.TOL_STEP[key] for key in errors), errors


def test_without_a_gpu_plugin_auto_does_not_start_jax():
    """JAX installed for its CPU backend only (the test extra): ``auto`` asks no JAX backend,
    so a CPU process pays neither JAX's start nor XLA's threads at its first fit."""
    import subprocess
    import sys

    code = ("import sys; from mnist_mlp.training import devices; "
            "print(devices.jax_gpus(), devices._jax_gpu_plugin_installed(), 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    gpus, plugin, started = out.stdout.split("]")[0] + "]", *out.stdout.split("]")[1].split()
    if plugin == "True":
        pytest.skip("a JAX GPU plugin is installed here")
    assert (gpus, started) == ("[]", "False")
