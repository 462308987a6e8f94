"""Two JAX contenders for ``benchmarks/training_speed.py``, each run in a process of its own.

- ``keras-jax``: Keras 3 on the JAX backend, the study's network compiled with
  ``jit_compile=True`` and a large ``steps_per_execution`` (a whole epoch per call);
- ``jax-scan``: a plain JAX loop, the same network and Keras's Adam written out
  by hand, one ``jax.lax.scan`` over an epoch's batches, jitted, validation
  jitted too.

The Keras backend is chosen when Keras is imported, so each contender runs in
its own process (``training_speed.py --jax`` starts them), on arrays the
parent hands over in an ``.npz``. JAX is not a dependency of the package: the
optional ``bench`` extra installs it (``pip install -e '.[bench]'``).

    python benchmarks/jax_contenders.py keras-jax --data data.npz --batch-size 256 --epochs 5 --seed 0

prints one JSON object: ``epoch_times`` (wall seconds per epoch, validation
included where there is a validation split), ``test_accuracy`` and ``versions``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np


def _data(path, n_rows, validation_split):
    arrays = np.load(path)
    X, y = arrays["X"][:n_rows], arrays["y"][:n_rows]
    split = int(len(X) * (1 - validation_split))
    return X[:split], y[:split], X[split:], y[split:], arrays["X_test"], arrays["y_test"]


def run_keras_jax(args):
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    assert keras.backend.backend() == "jax", keras.backend.backend()
    x_train, y_train, x_val, y_val, x_test, y_test = _data(args.data, args.n_rows, args.validation_split)
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    steps = -(-len(x_train) // args.batch_size)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=True, steps_per_execution=steps)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    validation = (x_val, y_val) if len(x_val) else None
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, shuffle=False, verbose=0,
              validation_data=validation, callbacks=[Timer()])
    predicted = np.argmax(model.predict(x_test, batch_size=1000, verbose=0), axis=1)
    import jax

    return {"epoch_times": times, "test_accuracy": float(np.mean(predicted == y_test)),
            "versions": {"keras": keras.__version__, "jax": jax.__version__}}


def jax_scan_loop(x_train, y_train, batch_size, seed=0):
    """The plain JAX loop, as a namespace: ``run_epoch(state)`` trains one epoch (one jitted
    ``lax.scan`` over whole batches, data already on the device, no shuffling, no logs) and
    returns the new state, which starts as ``initial``; ``logits(params, x)`` and
    ``loss(params, x, y)`` are the forward pass and the mean cross-entropy. Needs NumPy and JAX only."""
    import jax
    import jax.numpy as jnp

    sizes = (784, 128, 256, 10)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    params = []
    for key, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]):  # Keras's Dense default: Glorot uniform, zero bias
        limit = np.sqrt(6.0 / (n_in + n_out))
        params.append((jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit),
                       jnp.zeros(n_out, jnp.float32)))

    def logits(params, x):
        for i, (w, b) in enumerate(params):
            x = x @ w + b
            if i < len(params) - 1:
                x = jax.nn.relu(x)
        return x

    def loss(params, x, y):
        z = logits(params, x)
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])

    lr, beta_1, beta_2, eps = 1e-3, 0.9, 0.999, 1e-7  # Keras's Adam defaults

    def adam(state, grads):
        params, m, v, t = state
        t = t + 1
        step = lr * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - beta_1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - beta_2), v, grads)
        params = jax.tree_util.tree_map(lambda p, m, v: p - m * step / (jnp.sqrt(v) + eps), params, m, v)
        return params, m, v, t

    steps = len(x_train) // batch_size  # whole batches: scan needs one shape
    xb = jnp.asarray(x_train[:steps * batch_size].reshape(steps, batch_size, -1))
    yb = jnp.asarray(y_train[:steps * batch_size].reshape(steps, batch_size).astype(np.int32))

    @jax.jit
    def epoch(state):
        def body(state, batch):
            x, y = batch
            value, grads = jax.value_and_grad(loss)(state[0], x, y)
            return adam(state, grads), value

        state, losses = jax.lax.scan(body, state, (xb, yb))
        return state, jnp.mean(losses)

    def run_epoch(state):
        state, mean_loss = epoch(state)
        mean_loss.block_until_ready()
        return state

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return types.SimpleNamespace(initial=(params, zeros, zeros, jnp.float32(0)), run_epoch=run_epoch,
                                 logits=jax.jit(logits), loss=loss)


def run_jax_scan(args):
    import jax
    import jax.numpy as jnp

    x_train, y_train, x_val, y_val, x_test, y_test = _data(args.data, args.n_rows, args.validation_split)
    loop = jax_scan_loop(x_train, y_train, args.batch_size, args.seed)

    @jax.jit
    def validate(params, x, y):
        z = loop.logits(params, x)
        return jnp.mean(jnp.argmax(z, axis=1) == y), loop.loss(params, x, y)

    state = loop.initial
    x_val, y_val = jnp.asarray(x_val), jnp.asarray(y_val.astype(np.int32))
    times = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        state = loop.run_epoch(state)
        if len(x_val):
            jax.block_until_ready(validate(state[0], x_val, y_val))
        times.append(time.perf_counter() - start)
    predicted = np.asarray(jnp.argmax(loop.logits(state[0], jnp.asarray(x_test)), axis=1))
    return {"epoch_times": times, "test_accuracy": float(np.mean(predicted == y_test)),
            "versions": {"jax": jax.__version__}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contender", choices=["keras-jax", "jax-scan"])
    parser.add_argument("--data", required=True, help=".npz with X, y, X_test, y_test (float32 rows in [0, 1])")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-rows", type=int, default=None)
    parser.add_argument("--validation-split", type=float, default=0.2)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = (run_keras_jax if args.contender == "keras-jax" else run_jax_scan)(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
