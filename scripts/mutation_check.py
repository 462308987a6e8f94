"""Break the compiled and the XLA loops on purpose and show that the equivalence tests catch each break.

Each mutant is one plausible bug (a halved L2 gradient, no dropout scaling, no
bias correction, a moved epsilon, ...), written as a one-line replacement in
the package's source. For each, the package and its tests are copied into a
temporary directory, the replacement is made there (the checkout is never
touched), and the loop's tests (``tests/test_training_kernels.py`` for the
compiled loop, ``tests/test_training_xla.py`` for the XLA loop, whose mutants'
names start with ``xla-``; the epoch rules' mutants, ``schedule-`` in ``training/schedules.py``, run
``tests/test_training_schedules.py``) run against the copy until their first failure. A
mutant that passes every test is a hole in the tests: the script says so and
exits 1.

    python scripts/mutation_check.py                # every mutant of the compiled loop
    python scripts/mutation_check.py --loop xla     # every mutant of the XLA loop
    python scripts/mutation_check.py --only l2-half  # one

Results: ``benchmarks/results/mutation_check.md`` and ``.json`` (compiled loop),
``mutation_check_xla.md`` and ``.json`` (XLA loop).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/test_training_kernels.py"
XLA_TEST = "tests/test_training_xla.py"
SCHEDULES_TEST = "tests/test_training_schedules.py"

# (name, what the bug is, file, text, replacement); the text must occur exactly once.
MUTANTS = [
    ("l2-half", "L2 gradient halved (alpha*w instead of 2*alpha*w)", "mnist_mlp/training/kernels.py",
     "two_alpha = np.float32(2.0) * alpha", "two_alpha = alpha"),
    ("l1-sign", "L1 gradient with the wrong sign", "mnist_mlp/training/kernels.py",
     "g[i] += alpha * (_ONE if w[i] > 0", "g[i] -= alpha * (_ONE if w[i] > 0"),
    ("penalty-on-output", "penalty applied to the output layer's kernel too", "mnist_mlp/training/kernels.py",
     "return penalty if layer < n_layers - 1 else PENALTY_NONE", "return penalty"),
    ("penalty-on-bias", "penalty applied to the intercepts", "mnist_mlp/training/kernels.py",
     "                    PENALTY_NONE, alpha, opt, hyper, step)", "                    penalty, alpha, opt, hyper, step)"),
    ("loss-no-penalty", "reported loss leaves the penalty out", "mnist_mlp/training/kernels.py",
     "loss_sum += (batch_loss / rows + pen) * rows", "loss_sum += batch_loss"),
    ("dropout-no-scale", "dropout without the 1/(1-rate) scaling", "mnist_mlp/training/kernels.py",
     "scale = _ONE / (_ONE - dropout) if dropout > 0 else _ONE", "scale = _ONE"),
    ("dropout-no-backward-mask", "dropout mask not applied in the backward pass", "mnist_mlp/training/kernels.py",
     "                d_in *= masks[layer - 1]", "                pass"),
    ("adam-no-bias-correction", "Adam without bias correction", "mnist_mlp/training/kernels.py",
     "return hyper[0] * np.sqrt(_ONE - hyper[5] ** t) / (_ONE - hyper[4] ** t)", "return hyper[0]"),
    ("adam-eps-inside-sqrt", "Adam's epsilon moved inside the square root", "mnist_mlp/training/kernels.py",
     "theta[i] -= (mi * step) / (np.sqrt(vi) + eps)", "theta[i] -= (mi * step) / np.sqrt(vi + eps)"),
    ("amsgrad-uses-v", "AMSGrad divides by v, not by the running maximum", "mnist_mlp/training/kernels.py",
     "theta[i] -= (mi * step) / (np.sqrt(vh) + eps)", "theta[i] -= (mi * step) / (np.sqrt(vi) + eps)"),
    ("rmsprop-not-centered", "centered RMSprop without subtracting the mean gradient", "mnist_mlp/training/kernels.py",
     "denominator = vi - ai * ai + eps", "denominator = vi + eps"),
    ("rmsprop-momentum-undamped", "RMSprop momentum not multiplied by its coefficient", "mnist_mlp/training/kernels.py",
     "mi = mom * momentum[i] + increment", "mi = momentum[i] + increment"),
    ("nesterov-as-momentum", "Nesterov update taken as plain momentum", "mnist_mlp/training/kernels.py",
     "theta[i] += mi * mom - grad[i] * lr", "theta[i] += mi"),
    ("tanh-derivative", "tanh derivative 1 - a instead of 1 - a^2", "mnist_mlp/training/kernels.py",
     "d[i, j] *= _ONE - a[i, j] * a[i, j]", "d[i, j] *= _ONE - a[i, j]"),
    ("gradient-not-averaged", "batch gradient summed, not averaged over rows", "mnist_mlp/training/kernels.py",
     "inv_rows = _ONE / np.float32(rows)", "inv_rows = _ONE"),
    ("online-last-row-skipped", "online update skips the last input row of each layer", "mnist_mlp/training/kernels.py",
     "plan[b, 0], plan[b, 1], plan[b, 2] = layer, i0, min(i0 + block, dims[layer])",
     "plan[b, 0], plan[b, 1], plan[b, 2] = layer, i0, min(i0 + block, dims[layer] - 1)"),
    ("column-block-skipped", "split kernel gradient drops its last column block", "mnist_mlp/training/kernels.py",
     "        for b in range(w, n_blocks, workers):\n            hi = min((b + 1) * size, cols)",
     "        for b in range(w, n_blocks - 1, workers):\n            hi = min((b + 1) * size, cols)"),
    ("input-dropout-no-scale", "input dropout without the 1/(1-rate) scaling", "mnist_mlp/training/kernels.py",
     "input_scale = _ONE / (_ONE - input_dropout) if input_dropout > 0 else _ONE", "input_scale = _ONE"),
    ("input-dropout-keeps-rate", "input dropout keeps an input with probability rate, not 1 - rate",
     "mnist_mlp/training/kernels.py", "np.uint64(halves[j]) >= threshold else _ZERO",
     "np.uint64(halves[j]) < threshold else _ZERO"),
    ("input-dropout-same-rows", "every batch of an epoch reuses the first batch's input masks",
     "mnist_mlp/training/kernels.py", "drop_inputs(xb, kept_x, input_key, start, input_dropout, input_scale)",
     "drop_inputs(xb, kept_x, input_key, 0, input_dropout, input_scale)"),
    ("input-dropout-halves-reused", "both inputs of a word get its low half (half the randomness)",
     "mnist_mlp/training/kernels.py", "    halves = words.view(np.uint32)\n",
     "    halves = np.repeat(words.view(np.uint32)[::2], 2)\n"),
    ("max-norm-skipped", "max-norm constraint never applied", "mnist_mlp/training/kernels.py",
     "                _max_norm(_kernel(theta, offsets, dims, layer), max_norm)", "                pass"),
    ("max-norm-no-clip", "max-norm scales every column to the bound, under it too", "mnist_mlp/training/kernels.py",
     "norms[j] = min(norm, max_value) / (_EPSILON + norm)", "norms[j] = max_value / (_EPSILON + norm)"),
    ("max-norm-on-output", "max-norm applied to the output layer's kernel too", "mnist_mlp/training/kernels.py",
     "if max_norm > 0 and layer < n_layers - 1:", "if max_norm > 0:"),
    ("max-norm-stale-penalty", "the next batch's loss has the penalty of the unconstrained weights",
     "mnist_mlp/training/kernels.py", "kernel_pen = _penalty_sum(theta[lo:lo + n_in * n_out_l], layer_penalty)",
     "kernel_pen = kernel_pen"),
    ("schedule-rate-not-read", "the loops never read the rate a schedule sets as an epoch begins",
     "mnist_mlp/training/loop.py", "            if rate != opt_state.hyper[0]:", "            if False:"),
    ("slots-not-written-back", "optimizer slots not written back into Keras", "mnist_mlp/training/loop.py",
     "        network.write(trainer.theta)\n        opt_state.write()\n",
     "        network.write(trainer.theta)\n        opt_state.write(slots=False)\n"),
]
XLA = "mnist_mlp/training/xla.py"
# The XLA loop's mutants: the same bugs where they can be made (its gradients come from
# jax.grad, so a wrong derivative is a wrong function), and its own (the last smaller
# batch, the validation penalty, the shuffle's permutation, the step count).
MUTANTS += [
    ("xla-l2-half", "L2 gradient halved (alpha*w instead of 2*alpha*w)", XLA,
     "return (2.0 * alpha) * w", "return alpha * w"),
    ("xla-l1-sign", "L1 gradient with the wrong sign", XLA, "return alpha * jnp.sign(w)", "return -alpha * jnp.sign(w)"),
    ("xla-penalty-on-output", "penalty applied to the output layer's kernel too", XLA,
     "if layer < len(params) - 1 else (gw, gb)", "if layer < len(params) else (gw, gb)"),
    ("xla-loss-no-penalty", "reported loss leaves the penalty out", XLA,
     "return loss + _penalty_value(params, spec.penalty, alpha), jnp.sum(", "return loss, jnp.sum("),
    ("xla-dropout-no-scale", "dropout without the 1/(1-rate) scaling", XLA,
     "scale = 1.0 / (1.0 - rate)", "scale = 1.0"),
    ("xla-dropout-keeps-rate", "dropout keeps a unit with probability rate, not 1 - rate", XLA,
     "jax.random.uniform(k, (rows, width)) >= rate", "jax.random.uniform(k, (rows, width)) < rate"),
    ("xla-adam-no-bias-correction", "Adam without bias correction", XLA,
     "return learning_rate * jnp.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)", "return learning_rate"),
    ("xla-adam-eps-inside-sqrt", "Adam's epsilon moved inside the square root", XLA,
     "return w - (m * step) / (jnp.sqrt(v) + epsilon), m, v, v_hat",
     "return w - (m * step) / jnp.sqrt(v + epsilon), m, v, v_hat"),
    ("xla-amsgrad-uses-v", "AMSGrad divides by v, not by the running maximum", XLA,
     "return w - (m * step) / (jnp.sqrt(v_hat) + epsilon)", "return w - (m * step) / (jnp.sqrt(v) + epsilon)"),
    ("xla-rmsprop-not-centered", "centered RMSprop without subtracting the mean gradient", XLA,
     "denominator = velocity - average_gradient * average_gradient + epsilon", "denominator = velocity + epsilon"),
    ("xla-rmsprop-momentum-undamped", "RMSprop momentum not multiplied by its coefficient", XLA,
     "momentum_slot = momentum * s2 + increment", "momentum_slot = s2 + increment"),
    ("xla-nesterov-as-momentum", "Nesterov update taken as plain momentum", XLA,
     "return w + (velocity * momentum - g * step), velocity, s1, s2", "return w + velocity, velocity, s1, s2"),
    ("xla-sigmoid-sign", "sigmoid of -z", XLA, "return jax.nn.sigmoid(z)", "return jax.nn.sigmoid(-z)"),
    ("xla-gradient-not-averaged", "batch loss (and gradient) summed, not averaged over rows", XLA,
     "return jnp.mean(losses), right", "return jnp.sum(losses), right"),
    ("xla-step-counted-twice", "the optimizer's step count advanced by 2", XLA, "    t = t + 1\n", "    t = t + 2\n"),
    ("xla-last-batch-dropped", "the last, smaller batch of an epoch not trained", XLA, "    if rest:", "    if False:"),
    ("xla-validation-no-penalty", "validation loss leaves the penalty out", XLA,
     "val_sum = val_sum + _penalty_value(params, spec.penalty, alpha) * spec.n_val", "val_sum = val_sum"),
    ("xla-shuffle-with-replacement", "shuffling draws rows with replacement, not a permutation", XLA,
     "jax.random.permutation(_step_key(key, epoch, -1), n)", "jax.random.randint(_step_key(key, epoch, -1), (n,), 0, n)"),
    ("xla-input-dropout-no-scale", "input dropout without the 1/(1-rate) scaling", XLA,
     "x = x * _dropout_masks(input_key, x.shape[0], [x.shape[1]], input_rate)[0]",
     "x = x * (_dropout_masks(input_key, x.shape[0], [x.shape[1]], input_rate)[0] > 0)"),
    ("xla-input-dropout-skipped", "input dropout never applied", XLA, "    if spec.input_dropout:", "    if False:"),
    ("xla-max-norm-skipped", "max-norm constraint never applied", XLA, "    if spec.max_norm:", "    if False:"),
    ("xla-max-norm-no-clip", "max-norm scales every column to the bound, under it too", XLA,
     "jnp.clip(norms, 0.0, max_value)", "max_value"),
    ("xla-max-norm-on-output", "max-norm applied to the output layer's kernel too", XLA,
     "(_max_norm(w, max_value), b) if layer < last else (w, b)", "(_max_norm(w, max_value), b)"),
    ("xla-schedule-rate-not-sent", "the XLA program keeps its first learning rate", XLA,
     "        hyper[0] = rate\n", "        hyper[0] = hyper[0]\n"),
    ("xla-slots-not-written-back", "optimizer slots not written back into Keras", "mnist_mlp/training/loop.py",
     "self.theta, self.opt_state.slots[:], self.opt_state.iterations[0] = self.program.read()",
     "self.theta, _, self.opt_state.iterations[0] = self.program.read()"),
]
SCHEDULES = "mnist_mlp/training/schedules.py"
# The epoch rules' own mutants (the same Python for every loop): caught by tests/test_training_schedules.py,
# the loops' rows above showing that each loop follows the rules.
MUTANTS += [
    ("schedule-cosine-not-halved", "cosine decay without its factor 1/2", SCHEDULES,
     "return initial * (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0",
     "return initial * (1.0 + math.cos(math.pi * epoch / epochs))"),
    ("schedule-cosine-off-by-one", "cosine decay one epoch ahead", SCHEDULES,
     "math.cos(math.pi * epoch / epochs)", "math.cos(math.pi * (epoch + 1) / epochs)"),
    ("schedule-invscaling-per-epoch", "invscaling counts epochs, not samples seen", SCHEDULES,
     "return initial / (epoch * n_train + 1) ** power_t", "return initial / (epoch + 1) ** power_t"),
    ("schedule-invscaling-no-power", "invscaling ignores power_t", SCHEDULES,
     "return initial / (epoch * n_train + 1) ** power_t", "return initial / (epoch * n_train + 1)"),
    ("schedule-adaptive-factor", "adaptive divides by 10, not 5", SCHEDULES,
     "_ADAPTIVE_FACTOR = 5.0", "_ADAPTIVE_FACTOR = 10.0"),
    ("schedule-adaptive-no-reset", "adaptive keeps counting after a division", SCHEDULES,
     "                self._plateau.reset()", "                pass"),
    ("schedule-early-stopping-keeps-last", "early stopping ends with the last epoch's weights", SCHEDULES,
     "            self.model.set_weights(self._best_weights)", "            pass"),
    ("schedule-plateau-tol-ignored", "an improvement smaller than tol counts as one", SCHEDULES,
     "self.count = self.count + 1 if signed < self.best + self.tol else 0",
     "self.count = self.count + 1 if signed < self.best else 0"),
    ("schedule-stops-one-early", "stops at n_iter_no_change epochs without improvement, not more", SCHEDULES,
     "return best, self.count > self.n_iter_no_change", "return best, self.count >= self.n_iter_no_change"),
]
COPIED = ("mnist_mlp", "tests", "conftest.py", "pyproject.toml", "pipelines")


def run_mutant(name, path, text, replacement, workdir):
    tree = workdir / name
    for item in COPIED:
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, tree / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, tree / item)
    target = tree / path
    code = target.read_text()
    count = code.count(text)
    if count != 1:
        raise SystemExit(f"mutant {name}: the text occurs {count} times in {path}, not once")
    target.write_text(code.replace(text, replacement))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tree / ".numba"), "PYTHONDONTWRITEBYTECODE": "1"}
    # The copy, not the checkout, must be what the tests import (cwd comes first on sys.path).
    where = subprocess.run([sys.executable, "-c", "import mnist_mlp; print(mnist_mlp.__file__)"], cwd=tree,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(tree.resolve()), where
    started = time.perf_counter()
    test = XLA_TEST if name.startswith("xla-") else SCHEDULES_TEST if name.startswith("schedule-") and \
        path == SCHEDULES else TEST
    proc = subprocess.run([sys.executable, "-m", "pytest", test, "-x", "-q", "-p", "no:cacheprovider",
                           "--no-header", "-o", "addopts=", "-W", "ignore"],
                          cwd=tree, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.M)
    passed = re.search(r"(\d+) passed", proc.stdout)
    return {"mutant": name, "caught": proc.returncode == 1 and bool(failed), "returncode": proc.returncode,
            "caught_by": failed[0].split("::", 1)[1] if failed else None,
            "tests_passed_before": int(passed.group(1)) if passed else 0,
            "seconds": round(time.perf_counter() - started, 1),
            "tail": None if failed else proc.stdout[-1500:] + proc.stderr[-1500:]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--loop", choices=["compiled", "xla"], default="compiled",
                        help="which loop's mutants (without --only)")
    args = parser.parse_args(argv)
    of_loop = [m for m in MUTANTS if m[0].startswith("xla-") == (args.loop == "xla")]
    chosen = [m for m in MUTANTS if m[0] in args.only] if args.only else of_loop
    if args.only and len(chosen) != len(args.only):
        parser.error(f"unknown mutant; choose from {[m[0] for m in MUTANTS]}")
    results = []
    with tempfile.TemporaryDirectory(prefix="mnist_mlp_mutants_") as tmp:
        for name, what, path, text, replacement in chosen:
            result = {"what": what, "file": path, **run_mutant(name, path, text, replacement, Path(tmp))}
            results.append(result)
            print(f"{name}: {'caught by ' + result['caught_by'] if result['caught'] else 'NOT CAUGHT'}"
                  f" ({result['seconds']} s)", flush=True)
    out = ROOT / "benchmarks" / "results"
    if not args.only:
        stem, test = ("mutation_check_xla", XLA_TEST) if args.loop == "xla" else ("mutation_check", TEST)
        (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
        command = "python scripts/mutation_check.py" + (" --loop xla" if args.loop == "xla" else "")
        lines = [f"# Mutation check{' of the XLA loop' if args.loop == 'xla' else ''}: each deliberate bug and "
                 "the test that caught it", "",
                 f"Written by `{command}`: each mutant runs `{test}` with `-x`",
                 "against a copy of the package with one line changed; 'tests passed first' counts the tests",
                 "that ran clean before the first failure.", "",
                 "| mutant | the bug | caught by (first failing test) | tests passed first |",
                 "| --- | --- | --- | ---: |"]
        lines += [f"| `{r['mutant']}` | {r['what']} | {'`' + r['caught_by'] + '`' if r['caught'] else '**NOT CAUGHT**'}"
                  f" | {r['tests_passed_before']} |" for r in results]
        lines += ["", f"{sum(r['caught'] for r in results)} of {len(results)} mutants caught.", ""]
        (out / f"{stem}.md").write_text("\n".join(lines))
    missed = [r["mutant"] for r in results if not r["caught"]]
    if missed:
        print(f"not caught: {missed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
