"""The XLA loop's epoch with ReLU as ``jax.nn.relu`` (now) against ``jnp.maximum(z, 0)`` (before), side by side.

The study's network (784-128-256-10, ReLU, Adam 1e-3) on random rows of MNIST's
shape at batch 256; each variant compiled once (not timed), then the two take
turns epoch by epoch, so that a loaded machine slows them alike; a figure is
the median epoch.

    python benchmarks/xla_relu_speed.py --rows 12000 --epochs 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from mnist_mlp.training import xla
from mnist_mlp.training.codes import ACT_RELU, OPT_ADAM, PENALTY_NONE

DIMS = (784, 128, 256, 10)
ADAM = (1e-3, 0.1, 0.001, 1e-7, 0.9, 0.999, 0.0)


def _program(activate, X, y, n_train):
    """An EpochProgram whose epochs run a program traced with ``activate`` as the hidden activation."""
    xla._activate = activate
    program_fn = jax.jit(xla._epoch, static_argnums=0, donate_argnums=4)
    rng = np.random.default_rng(0)
    theta = rng.normal(0, 0.05, sum(a * b + b for a, b in zip(DIMS[:-1], DIMS[1:]))).astype(np.float32)
    program = xla.EpochProgram(DIMS, activation=ACT_RELU, dropout=0.0, penalty=PENALTY_NONE, alpha=0.0,
                               rule=xla.Rule(OPT_ADAM, ADAM), batch_size=256, shuffle=False, seed=0)
    program.load(theta, np.zeros((3, theta.size), np.float32), 0, X, y, n_train)
    return program, program_fn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, DIMS[0]), dtype=np.float32)
    y = rng.integers(0, DIMS[-1], args.rows)
    n_train = args.rows * 4 // 5
    original = xla._activate
    variants = {
        "jax.nn.relu (now)": original,
        "jnp.maximum(z, 0) (before)": lambda z, code: jnp.maximum(z, 0.0) if code == ACT_RELU else original(z, code),
    }
    programs = {name: _program(fn, X, y, n_train) for name, fn in variants.items()}
    times = {name: [] for name in programs}
    for epoch in range(args.epochs + 1):  # epoch 0 compiles
        for name, (program, fn) in programs.items():
            xla._epoch_program = fn
            started = time.perf_counter()
            program.run_epoch(epoch)
            if epoch:
                times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name}: median epoch {median * 1e3:.1f} ms over {args.epochs} ({n_train} rows, batch 256, "
              f"JAX {jax.__version__} on {jax.devices()[0].device_kind})")
    now, before = medians.values()
    print(f"ratio now/before: {now / before:.3f}")


if __name__ == "__main__":
    main()
