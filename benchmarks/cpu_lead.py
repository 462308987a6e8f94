"""The CPU lead at batch 256, older commits side by side with today's, in one sitting.

Did the machine or the code move? This runs our ``MLPClassifier`` (the
compiled loop) at several commits of this repository, scikit-learn's
``MLPClassifier`` and the plain JAX loop of ``benchmarks/jax_contenders.py``,
taking turns round after round on the same data, so that whatever the machine
does in between weighs on every contender alike.

Each contender runs in a process of its own (a commit's package is the source
tree ``git archive`` extracts from it, first on ``sys.path``; the child checks
it imported that tree and not the installed one). Setting: the study's network
784-128-256-10, Adam 1e-3, batch 256, 48,000 training rows, validation on the
last 12,000 each epoch, no shuffling, tracking off. A contender's figure for a
round is the median of its epochs after the first (which carries tracing and
compilation); its figure overall is the median of its rounds.

    python benchmarks/cpu_lead.py --commits bb44bc9,1bf6758,51d34cf,HEAD --rounds 7 --xla

``--xla`` adds the last commit's estimator with ``training_loop="xla"`` (JAX's CPU
backend), in a process of its own as every contender: the compiled loop and XLA's
runtime slow each other down when they share a process.

writes ``benchmarks/results/cpu_lead.json`` and ``.md``.
"""

from __future__ import annotations

import os
import sys

# As benchmarks/training_speed.py: restart without the machine's overrides for
# old OpenBLAS builds (they slow a current NumPy); the children inherit that.
_OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and any(v in os.environ for v in _OPENBLAS_OVERRIDES):
    os.environ["MNIST_MLP_BENCH_UNSET"] = ",".join(
        f"{v}={os.environ.pop(v)}" for v in _OPENBLAS_OVERRIDES if v in os.environ)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Run in a child process: argv = [source tree or "", data.npz, seed, epochs].
_OURS = r"""
import json, os, sys, time
src, data, seed, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
loop = {"training_loop": sys.argv[5]} if len(sys.argv) > 5 else {}
sys.path.insert(0, src)
import numpy as np
import mnist_mlp
from mnist_mlp import MLPClassifier
from mnist_mlp._tensorflow import keras
assert os.path.realpath(mnist_mlp.__file__).startswith(os.path.realpath(src)), mnist_mlp.__file__

class Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)

arrays = np.load(data)
X, y = arrays["X"][:60000], arrays["y"][:60000]
timer = Timer()
clf = MLPClassifier(batch_size=256, epochs=epochs, validation_split=0.2, random_state=seed,
                    tracking=False, callbacks=[timer], **loop)
clf.fit(X, y)
from threadpoolctl import threadpool_info
print(json.dumps({"epoch_times": timer.times, "loop": getattr(clf, "training_loop_", None),
                  "val_accuracy": float(clf.history_["val_accuracy"][-1]) if hasattr(clf, "history_") else None,
                  "blas": sorted({f"{i['internal_api']} {i['version']} {i.get('architecture')} x{i['num_threads']}"
                                  for i in threadpool_info() if i["user_api"] == "blas"})}))
"""

_SKLEARN = r"""
import json, sys, time, warnings
data, seed, epochs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
arrays = np.load(data)
X, y = arrays["X"], arrays["y"]  # scaled to [0, 1] already
X_train, y_train, X_val, y_val = X[:48000], y[:48000], X[48000:60000], y[48000:60000]
clf = MLPClassifier(hidden_layer_sizes=(128, 256), batch_size=256, learning_rate_init=1e-3, alpha=0.0,
                    shuffle=False, random_state=seed)
times = []
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for _ in range(epochs):
        t0 = time.perf_counter()
        clf.partial_fit(X_train, y_train, classes=np.arange(10))
        score = clf.score(X_val, y_val)
        times.append(time.perf_counter() - t0)
print(json.dumps({"epoch_times": times, "val_accuracy": score}))
"""


def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def _extract(commit, into):
    """The commit's tree under ``into`` (its ``mnist_mlp`` package importable from there)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _child(code_or_script, args, timeout=1800):
    command = [sys.executable, *(["-c", code_or_script] if "\n" in code_or_script else [code_or_script]), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady(times):
    return statistics.median(times[1:] if len(times) > 1 else times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", default="bb44bc9,1bf6758,51d34cf,HEAD",
                        help="comma-separated commits of this repository (HEAD: the checkout)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per fit (the first is left out)")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_MLP_DATA_DIR", str(ROOT.parent / "shared/data/mnist")))
    parser.add_argument("--no-jax", action="store_true", help="leave out the plain JAX loop")
    parser.add_argument("--xla", action="store_true",
                        help="add our estimator with training_loop='xla' at the last commit (needs JAX)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import numpy as np

    from mnist_mlp import load_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir, download=False)
    commits = [c.strip() for c in args.commits.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="cpu_lead_") as tmp:
        tmp = Path(tmp)
        data = tmp / "data.npz"
        X = (x_train.reshape(len(x_train), -1)).astype(np.float32)
        Xf = X / 255.0
        Y = np.eye(10, dtype=np.float32)[y_train]
        # The JAX contender reads X (scaled), y, X_test, y_test; ours and scikit-learn scale as below.
        np.savez(data, X=Xf, y=y_train, Y=Y, X_test=(x_test.reshape(len(x_test), -1) / 255.0).astype(np.float32),
                 y_test=y_test)
        trees = {}
        for commit in commits:
            full = _git("rev-parse", commit)
            if commit == "HEAD":
                trees[commit] = (full, ROOT)
            else:
                trees[commit] = (full, _extract(full, tmp / full[:12]))
        contenders = [f"ours@{c}" for c in commits] + ([f"ours, xla loop@{commits[-1]}"] if args.xla else [])
        contenders += ["scikit-learn"] + ([] if args.no_jax else ["plain JAX"])
        rounds = {name: [] for name in contenders}
        extra = {}
        # A warm-up fit per commit: Numba compiles (and caches) each tree's loop once, outside the timing.
        for commit in commits:
            _child(_OURS, [str(trees[commit][1]), str(data), "0", "2"])
        if args.xla:  # JAX's compilation is not cached across processes: each fit's first epoch pays it
            _child(_OURS, [str(trees[commits[-1]][1]), str(data), "0", "2", "xla"])
        for r in range(args.rounds):
            for name in contenders:
                if name.startswith("ours"):
                    commit = name.split("@", 1)[1]
                    loop = ["xla"] if "xla" in name else []
                    result = _child(_OURS, [str(trees[commit][1]), str(data), str(r), str(args.epochs), *loop])
                    if loop:
                        assert result["loop"] == "xla", result
                elif name == "scikit-learn":
                    result = _child(_SKLEARN, ["", str(data), str(r), str(args.epochs)])
                else:
                    result = _child(str(ROOT / "benchmarks" / "jax_contenders.py"),
                                    ["jax-scan", "--data", str(data), "--batch-size", "256", "--epochs",
                                     str(args.epochs), "--seed", str(r), "--validation-split", "0.2",
                                     "--n-rows", "60000"])
                rounds[name].append(steady(result["epoch_times"]))
                extra.setdefault(name, []).append({k: v for k, v in result.items() if k != "epoch_times"})
                print(f"round {r + 1}: {name}: {rounds[name][-1] * 1e3:.1f} ms an epoch", flush=True)

    figure = {name: statistics.median(v) for name, v in rounds.items()}
    load = os.getloadavg()
    record = {
        "what": "time per epoch at batch 256 (validation included), ours at several commits vs scikit-learn "
                "vs a plain JAX loop, taking turns",
        "command": "python benchmarks/cpu_lead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_after": load,
        "unset": os.environ.get("MNIST_MLP_BENCH_UNSET", ""),
        "commits": {c: trees[c][0] for c in commits},
        "epochs": args.epochs, "rounds": rounds, "median_s": figure, "details": extra,
        # Each contender's median over scikit-learn's and over the plain JAX loop's (tests/test_claims.py
        # ties the docs' "N.NNx" figures to fields named ratio...).
        **{f"ratio {n} / scikit-learn": figure[n] / figure["scikit-learn"] for n in figure},
        **({f"ratio {n} / plain JAX": figure[n] / figure["plain JAX"] for n in figure} if "plain JAX" in figure else {}),
        **({f"ratio {n} / ours@{commits[-1]}": figure[n] / figure[f"ours@{commits[-1]}"] for n in figure}),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_lead.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# The CPU lead at batch 256, commits side by side",
        "",
        f"{record['date']}, {record['machine']}; load average after the run {load[0]:.2f}. "
        f"Command: `{record['command']}`. Unset for the run: {record['unset'] or 'nothing'}.",
        f"Each figure: the median of {args.rounds} rounds, a round's figure the median of its epochs after the "
        f"first ({args.epochs} epochs a fit); contenders take turns within each round.",
        "",
        "| contender | commit | s an epoch (median) | rounds (s) | / scikit-learn | / plain JAX "
        f"| / ours at {commits[-1]} | fastest round (s) | fastest / scikit-learn's | fastest / plain JAX's |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in contenders:
        commit = trees[name.split("@", 1)[1]][0][:9] if name.startswith("ours") else ""
        ratio_sk = figure[name] / figure["scikit-learn"]
        ratio_jax = figure[name] / figure["plain JAX"] if "plain JAX" in figure else float("nan")
        fastest = {k: min(v) for k, v in rounds.items()}
        fast_jax = fastest[name] / fastest["plain JAX"] if "plain JAX" in fastest else float("nan")
        lines.append(f"| {name.split('@')[0]} | {commit} | {figure[name]:.4f} | "
                     f"{', '.join(f'{t:.4f}' for t in rounds[name])} | {ratio_sk:.3f} | {ratio_jax:.3f} | "
                     f"{figure[name] / figure[f'ours@{commits[-1]}']:.3f} | "
                     f"{fastest[name]:.4f} | {fastest[name] / fastest['scikit-learn']:.3f} | {fast_jax:.3f} |")
    blas = sorted({b for d in extra.get(f"ours@{commits[-1]}", []) for b in d.get("blas", [])})
    lines += ["", f"BLAS in our children: {'; '.join(blas)}.",
              "The fastest round is the one least disturbed by whatever else the shared host ran; the "
              "median is the figure the targets are read against."]
    (args.out / "cpu_lead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
