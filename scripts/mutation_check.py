"""Break the compiled loop on purpose and show that the equivalence tests catch each break.

Each mutant is one plausible bug (a halved L2 gradient, no dropout scaling, no
bias correction, a moved epsilon, ...), written as a one-line replacement in
the package's source. For each, the package and its tests are copied into a
temporary directory, the replacement is made there (the checkout is never
touched), and ``tests/test_training_kernels.py`` runs against the copy until its first
failure. A mutant that passes every test is a hole in the tests: the script
says so and exits 1.

    python scripts/mutation_check.py                # every mutant
    python scripts/mutation_check.py --only l2-half  # one

Results: ``benchmarks/results/mutation_check.md`` and ``.json``.
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
    ("slots-not-written-back", "optimizer slots not written back into Keras", "mnist_mlp/training/loop.py",
     "        network.write(theta)\n        opt_state.write()", "        network.write(theta)\n        opt_state.write(slots=False)"),
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
    proc = subprocess.run([sys.executable, "-m", "pytest", TEST, "-x", "-q", "-p", "no:cacheprovider",
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
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
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
        (out / "mutation_check.json").write_text(json.dumps(results, indent=1))
        lines = ["# Mutation check: each deliberate bug and the test that caught it", "",
                 f"Written by `python scripts/mutation_check.py`: each mutant runs `{TEST}` with `-x`",
                 "against a copy of the package with one line changed; 'tests passed first' counts the tests",
                 "that ran clean before the first failure.", "",
                 "| mutant | the bug | caught by (first failing test) | tests passed first |",
                 "| --- | --- | --- | ---: |"]
        lines += [f"| `{r['mutant']}` | {r['what']} | {'`' + r['caught_by'] + '`' if r['caught'] else '**NOT CAUGHT**'}"
                  f" | {r['tests_passed_before']} |" for r in results]
        lines += ["", f"{sum(r['caught'] for r in results)} of {len(results)} mutants caught.", ""]
        (out / "mutation_check.md").write_text("\n".join(lines))
    missed = [r["mutant"] for r in results if not r["caught"]]
    if missed:
        print(f"not caught: {missed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
