"""How well posed the per-step comparisons of ``tests/test_training_kernels.py`` are: Keras against Keras.

Two cases of the per-step matrix failed for the XLA loop on another CPU (issue 29):
``sgd-none-relu-study-128-256-batch256`` (kernels 8.3e-3 of the step) and
``rmsprop-centered-momentum-none-linear-study-128-256-online`` (slots 1.1e-5).
This script measures, from the tests' own states, what no loop can control:

- the ReLU margin of each case's first data draw (``kink_margin``: a hidden
  pre-activation's distance from 0 in float32 roundings), and what taking the
  nearest unit's other side does to the step (a float64 reference step with that
  one unit's ReLU derivative flipped);
- one Keras step from one saved state in two processes, TensorFlow's oneDNN kernels
  (``TF_ENABLE_ONEDNN_OPTS=1``) against its Eigen ones (``=0``), the choice
  TensorFlow makes by itself from the CPU's instruction set: Keras's own spread.

    python benchmarks/step_conditioning.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CASES = [("sgd", "none", "relu", "study-128-256-batch256"),
         ("rmsprop-centered-momentum", "none", "linear", "study-128-256-online")]


def _reference_gradients(weights, X, y, flip=None):
    """Float64 gradient of the mean cross-entropy of a ReLU MLP; ``flip=(layer, row, unit)`` takes
    that one pre-activation's ReLU derivative as 1 instead of 0."""
    W = [np.asarray(w, np.float64) for w in weights]
    hs, zs = [np.asarray(X, np.float64)], []
    for layer in range(len(W) // 2):
        zs.append(hs[-1] @ W[2 * layer] + W[2 * layer + 1])
        hs.append(np.maximum(zs[-1], 0.0))
    p = np.exp(zs[-1] - zs[-1].max(1, keepdims=True))
    d = (p / p.sum(1, keepdims=True) - y) / len(X)
    grads = [None] * len(W)
    for layer in reversed(range(len(W) // 2)):
        grads[2 * layer], grads[2 * layer + 1] = hs[layer].T @ d, d.sum(0)
        if layer:
            mask = (zs[layer - 1] > 0).astype(np.float64)
            if flip is not None and flip[0] == layer - 1:
                mask[flip[1], flip[2]] = 1.0
            d = (d @ W[2 * layer].T) * mask
    return grads, zs


def kink(case):
    import test_training_kernels as t

    opt, pen, activation, shape = case
    dims, rows = t.SHAPES[shape]
    keras_model, _, rng = t._twins(opt, pen, activation, dims)
    X, y = t._data(rng, rows, dims[0], dims[-1])  # the draw before _well_posed_data
    weights = keras_model.get_weights()
    margin = t.kink_margin(weights, X, activation)
    if not np.isfinite(margin):
        return f"{'-'.join(case)}: no ReLU"
    base, zs = _reference_gradients(weights, X, y)
    hidden = zs[:-1]
    layer = int(np.argmin([np.abs(z).min() for z in hidden]))
    row, unit = np.unravel_index(np.argmin(np.abs(hidden[layer])), hidden[layer].shape)
    flipped, _ = _reference_gradients(weights, X, y, (layer, row, unit))
    change = {kind: max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(flipped[i::2], base[i::2]))
              for i, kind in enumerate(("kernels", "intercepts"))}
    return (f"{'-'.join(case)}: first draw's ReLU margin {margin:.1f} roundings (test keeps >= "
            f"{t.KINK_MARGIN}); unit (layer {layer}, row {row}, unit {unit}) at z = {hidden[layer][row, unit]:.3e} "
            f"in float64; its other side moves the step by kernels {change['kernels']:.2e}, "
            f"intercepts {change['intercepts']:.2e}")


def _step_in_child(state, out):
    """One Keras step from the state saved in ``state``; weights and slots into ``out``."""
    import test_training_kernels as t
    from mnist_mlp._tensorflow import keras

    saved = np.load(state, allow_pickle=False)
    opt, pen, activation, shape = (str(s) for s in saved["case"])
    dims, _ = t.SHAPES[shape]
    penalty, alpha = t.PENALTIES[pen]
    model = t._model(dims, activation, penalty, alpha, t.OPTIMIZERS[opt]())
    model.set_weights([saved[f"w{i}"] for i in range(len(model.get_weights()))])
    model.optimizer.build(model.trainable_variables)
    for i, var in enumerate(model.optimizer.variables):
        var.assign(saved[f"s{i}"])
    model.train_on_batch(saved["X"], saved["y"])
    np.savez(out, *model.get_weights(), *[v.numpy() for v in model.optimizer.variables])


def keras_against_keras(case):
    import test_training_kernels as t

    opt, pen, activation, shape = case
    dims, rows = t.SHAPES[shape]
    keras_model, _, rng = t._twins(opt, pen, activation, dims)
    X, y = t._well_posed_data(rng, rows, dims, keras_model.get_weights(), activation)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.npz"
        np.savez(state, case=np.array(case), X=X, y=y,
                 **{f"w{i}": w for i, w in enumerate(keras_model.get_weights())},
                 **{f"s{i}": v.numpy() for i, v in enumerate(keras_model.optimizer.variables)})
        results = {}
        for onednn in ("1", "0"):
            out = Path(tmp) / f"step{onednn}.npz"
            env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
            subprocess.run([sys.executable, __file__, "--step", str(state), str(out)], env=env, check=True,
                           capture_output=True)
            results[onednn] = np.load(out)
        a, b = results["1"], results["0"]
        n_weights = len(keras_model.get_weights())
        before = keras_model.get_weights()
        names = [v.path for v in keras_model.optimizer.variables]
        weights = max(t._relative_error(a[f"arr_{i}"], b[f"arr_{i}"], b[f"arr_{i}"] - before[i])
                      for i in range(n_weights))
        slots = {}
        for j, name in enumerate(names):
            theirs = b[f"arr_{n_weights + j}"]
            if theirs.shape == ():
                continue
            kind = "step_slots" if (opt.startswith("rmsprop") and name.endswith("_momentum")) else "slots"
            slots[kind] = max(slots.get(kind, 0.0), t._relative_error(a[f"arr_{n_weights + j}"], theirs, theirs))
    figures = [f"weights {weights:.2e} (tolerance {t.TOL_STEP['kernels']:.0e})"]
    figures += [f"{k} {v:.2e} (tolerance {t.TOL_STEP[k]:.0e})" for k, v in slots.items()]
    return f"{'-'.join(case)}: Keras oneDNN against Keras Eigen, one step from one state: " + ", ".join(figures)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--step"]:
        _step_in_child(*argv[1:3])
        return
    for case in CASES:
        print(kink(case))
        print(keras_against_keras(case))


if __name__ == "__main__":
    main()
