"""The XLA loop (``training_loop="xla"``) against a plain JAX loop and the compiled loop, in one run.

Needs NumPy and JAX only: it runs on a machine that has JAX and no
TensorFlow, MLflow or Numba (a GPU machine, say). On the study's network
(784-128-256-10, ReLU, Adam 1e-3, no shuffling, as the study trains) and
48,000 training rows with 12,000 validation rows (MNIST's from
``--data-dir`` when the IDX files are there, else random data of MNIST's
shape: the timings do not depend on the values), side by side:

- ``xla``: :class:`mnist_mlp.training.xla.EpochProgram`, what the package's
  ``training_loop="xla"`` runs: the epoch as one compiled program, validation
  pass and per-epoch logs included, the last smaller batch trained;
- ``plain JAX``: ``benchmarks/jax_contenders.py``'s loop, the epoch as one
  jitted ``lax.scan`` over whole batches with the data on the device,
  training only (no validation, no logs, the last partial batch dropped);
- ``compiled``: the Numba kernels of the default CPU loop, validation
  included, where Numba is installed (skipped otherwise, with the reason).

at batch sizes 1, 32, 256, 2048 and the full batch. Each contender first
runs a warm-up epoch (its compilation; reported), then the contenders take
turns epoch by epoch, so that a machine loaded by others slows them alike;
a figure is the median epoch. Then the study's fit: 100 epochs at batch 256
in the XLA loop, from putting the data on the device to the last epoch's
logs (the program compiled already, as in any fit after the first).

    python benchmarks/xla_loop.py --out benchmarks/results            # the full run
    python benchmarks/xla_loop.py --quick --out /tmp/xla              # a CPU smoke test, a minute

Writes ``xla_loop_<backend>[_quick].json`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import os
import sys

# As benchmarks/training_speed.py: restart without the machine's overrides for old OpenBLAS
# builds (they slow a current NumPy), before NumPy loads OpenBLAS.
_OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and any(v in os.environ for v in _OPENBLAS_OVERRIDES):
    os.environ["MNIST_MLP_BENCH_UNSET"] = ",".join(
        f"{v}={os.environ.pop(v)}" for v in _OPENBLAS_OVERRIDES if v in os.environ)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # the working tree, installed or not

DIMS = (784, 128, 256, 10)
ADAM = (1e-3, 0.1, 0.001, 1e-7, 0.9, 0.999, 0.0)  # Keras's Adam defaults, in the kernels' form
DEFAULT_DATA = "/work/shared/data/mnist"


def load_data(data_dir, n_rows, seed=0):
    """``(X, y, source)``: the first ``n_rows`` MNIST training images scaled to [0, 1], or
    random rows of MNIST's shape where the IDX files are not in ``data_dir``."""
    from mnist_mlp import data  # NumPy only

    try:
        images = data.read_idx(_idx(data_dir, "train-images-idx3-ubyte"))
        labels = data.read_idx(_idx(data_dir, "train-labels-idx1-ubyte"))
        X = (images.reshape(len(images), -1)[:n_rows] / np.float32(255)).astype(np.float32)
        return X, labels[:n_rows].astype(np.int64), f"MNIST ({data_dir})"
    except (OSError, ValueError, data.IDXFormatError):
        rng = np.random.default_rng(seed)
        X = rng.random((n_rows, 784), dtype=np.float32)
        return X, rng.integers(0, 10, n_rows), "random rows of MNIST's shape (no IDX files found)"


def _idx(directory, stem):
    for name in (f"{stem}.gz", stem):
        path = Path(directory) / name
        if path.is_file():
            return path
    raise OSError(f"no {stem} in {directory}")


def glorot(seed=0):
    """Flat parameters as Keras initialises a Dense stack: Glorot uniform kernels, zero biases."""
    rng = np.random.default_rng(seed)
    parts = []
    for n_in, n_out in zip(DIMS[:-1], DIMS[1:]):
        limit = np.sqrt(6.0 / (n_in + n_out))
        parts += [rng.uniform(-limit, limit, n_in * n_out), np.zeros(n_out)]
    return np.concatenate(parts).astype(np.float32)


class Xla:
    """The package's XLA loop: training, validation and logs, one program an epoch."""

    name = "xla"
    validation = True  # False: the same program without the validation rows
    precision = None  # None: JAX's default matrix-product precision (TensorFloat-32 on recent NVIDIA GPUs)

    def __init__(self, X, y, n_train, batch_size, seed=0):
        from mnist_mlp.training import codes, xla

        self.program = xla.EpochProgram(DIMS, activation=codes.ACT_RELU, dropout=0.0, penalty=codes.PENALTY_NONE,
                                        alpha=0.0, rule=xla.Rule(codes.OPT_ADAM, ADAM), batch_size=batch_size,
                                        shuffle=False, seed=seed)
        theta = glorot(seed)
        rows = len(X) if self.validation else n_train
        self.program.load(theta, np.zeros((3, theta.size), np.float32), 0, X[:rows], y[:rows], n_train)
        self.epoch_index, self.logs = 0, None

    def epoch(self):
        import jax

        with jax.default_matmul_precision(self.precision):
            self.logs = self.program.run_epoch(self.epoch_index)
        self.epoch_index += 1


class XlaFloat32(Xla):
    """The XLA loop with float32 matrix products (``jax_default_matmul_precision="highest"``)."""

    name = "xla, float32 products"
    precision = "highest"


class XlaNoValidation(Xla):
    """The XLA loop without a validation split: what validation costs."""

    name = "xla, no validation"
    validation = False


class PlainJax:
    """``benchmarks/jax_contenders.py``'s plain loop: training only."""

    name = "plain JAX"

    def __init__(self, X, y, n_train, batch_size, seed=0):
        from jax_contenders import jax_scan_loop

        self.loop = jax_scan_loop(X[:n_train], y[:n_train], batch_size, seed)
        self.state = self.loop.initial

    def epoch(self):
        self.state = self.loop.run_epoch(self.state)


class Compiled:
    """The default CPU loop's Numba kernels, validation included (as ``mnist_mlp.training.loop`` runs them)."""

    name = "compiled"

    def __init__(self, X, y, n_train, batch_size, seed=0):
        import numba
        from threadpoolctl import threadpool_limits

        from mnist_mlp.training import kernels

        self.kernels, self.limits = kernels, threadpool_limits
        self.X, self.y = np.ascontiguousarray(X), np.ascontiguousarray(y, dtype=np.int64)
        self.n_train, self.batch_size, self.seed = n_train, batch_size, seed
        self.theta = glorot(seed)
        self.grad = np.zeros_like(self.theta)
        self.slots = np.zeros((3, self.theta.size), np.float32)
        self.iterations = np.zeros(1, np.int64)
        self.dims = np.asarray(DIMS, np.int64)
        sizes = [a * b + b for a, b in zip(DIMS[:-1], DIMS[1:])]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.threads = COMPILED_THREADS or numba.config.NUMBA_NUM_THREADS

    def epoch(self):
        k, n = self.kernels, self.n_train
        with k.flush_denormals(), self.limits(limits=1, user_api="blas"):
            k.train_epoch(self.theta, self.grad, self.slots, self.iterations, self.X[:n], self.y[:n],
                          np.empty(0, np.int64), self.batch_size, self.offsets, self.dims, k.ACT_RELU,
                          np.float32(0.0), k.PENALTY_NONE, np.float32(0.0), k.OPT_ADAM,
                          np.asarray(ADAM, np.float32), self.seed, self.threads)
            if len(self.X) > n:
                k.evaluate(self.theta, self.offsets, self.dims, k.ACT_RELU, self.X[n:], self.y[n:], 4096,
                           self.threads)


CONTENDERS = (Xla, XlaFloat32, XlaNoValidation, PlainJax, Compiled)
#: Threads of the compiled loop's products (None: Numba's default, as the package runs it). Where JAX
#: computes on the CPU in the same process, its thread pool keeps the cores busy between its own
#: calls, and a second Numba thread waiting on them made the compiled loop 10-40x slower on a loaded
#: 2-core machine: there the compiled loop runs on one thread (--compiled-threads).
COMPILED_THREADS = None


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(X, y, n_train, batch_size, epochs, contenders):
    """Warm-up epoch each, then ``epochs`` rounds in turn: per contender, the warm-up and the median epoch.

    A contender that cannot be built (Numba not installed) or fails is left out with the reason:
    one broken contender must not cost the others' figures on a machine borrowed for one run.
    """
    built, skipped, first = [], {}, {}
    for cls in contenders:
        try:
            contender = cls(X, y, n_train, batch_size)
            first[cls.name] = _timed(contender.epoch)
            built.append(contender)
        except ImportError as exc:
            skipped[cls.name] = f"not importable: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
            skipped[cls.name] = f"failed: {exc!r}"[:500]
    times = {c.name: [] for c in built}
    for _ in range(epochs):
        for c in built:
            times[c.name].append(_timed(c.epoch))
    out = {"batch_size": batch_size, "n_train": n_train, "n_val": len(X) - n_train,
           "steps_per_epoch": -(-n_train // batch_size), "skipped": skipped, "contenders": {}}
    for c in built:
        out["contenders"][c.name] = {"first_epoch_s": first[c.name], "epoch_s": statistics.median(times[c.name]),
                                     "epoch_times_s": times[c.name]}
    xla_logs = next((c.logs for c in built if c.name == "xla"), None)
    if xla_logs:
        out["xla_last_logs"] = xla_logs
    return out


def study_fit(X, y, n_train, batch_size, epochs):
    """The study's fit in the XLA loop: seconds from loading the data to the last epoch's logs."""
    start = time.perf_counter()
    run = Xla(X, y, n_train, batch_size)
    for _ in range(epochs):
        run.epoch()
    return {"epochs": epochs, "batch_size": batch_size, "seconds": time.perf_counter() - start,
            "last_logs": run.logs}


def _versions():
    import jax

    versions = {"python": platform.python_version(), "numpy": np.__version__, "jax": jax.__version__}
    for name in ("jaxlib", "numba"):
        try:
            from importlib import metadata

            versions[name] = metadata.version(name)
        except Exception:  # noqa: BLE001 - not installed: not reported
            pass
    return versions


def markdown(result):
    names = [c.name for c in CONTENDERS]
    lines = [
        f"# The XLA loop on {result['device']} ({result['backend']})",
        "",
        f"Written by `{result['command']}`. Data: {result['data']}; {result['n_train']:,} training rows, "
        f"{result['n_val']:,} validation rows; the study's network 784-128-256-10, ReLU, Adam 1e-3, no shuffling.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}; CPU: {result['cpu']} "
        f"({os.cpu_count()} cores). Unset for the run: {result.get('unset') or 'nothing'}; "
        f"load average after it: {result.get('load_average_after', '-')}.",
        "`xla` and `compiled` include the validation pass and the epoch's logs; `plain JAX` is training only "
        "(whole batches, no logs). Each figure is the median of the timed epochs, the contenders taking turns; "
        "the first (warm-up, compiling) epoch is reported apart.",
        "",
        "| batch | steps an epoch | " + " | ".join(names) + " | xla / plain JAX | xla / compiled | "
        "xla first epoch (compiling) |",
        "| ---: | ---: |" + " ---: |" * (len(names) + 3),
    ]

    def cell(row, name):
        c = row["contenders"].get(name)
        if c is None:
            return "-"
        per_step = c["epoch_s"] / row["steps_per_epoch"]
        return f"{c['epoch_s'] * 1e3:.3g} ms" + (f" ({per_step * 1e6:.3g} us/step)" if row["batch_size"] == 1 else "")

    def ratio(row, a, b):
        ca, cb = row["contenders"].get(a), row["contenders"].get(b)
        return f"{ca['epoch_s'] / cb['epoch_s']:.2f}" if ca and cb else "-"

    for row in sorted(result["batches"], key=lambda r: r["batch_size"]):
        batch = f"{row['batch_size']:,}" + (" (all rows)" if row["batch_size"] >= row["n_train"] else "")
        if row["batch_size"] == 1 and row["n_train"] != result["n_train"]:
            batch += f" ({row['n_train']:,} rows)"
        first = row["contenders"].get("xla", {}).get("first_epoch_s")
        lines.append(f"| {batch} | {row['steps_per_epoch']:,} | " + " | ".join(cell(row, n) for n in names)
                     + f" | {ratio(row, 'xla', 'plain JAX')} | {ratio(row, 'xla', 'compiled')} | "
                     + (f"{first:.2f} s" if first is not None else "-") + " |")
    skipped = {name: why for row in result["batches"] for name, why in row["skipped"].items()}
    for name, why in skipped.items():
        lines.append(f"\n`{name}` was skipped: {why}")
    fit = result.get("study_fit")
    if fit:
        lines += ["", f"The study's fit in the XLA loop: {fit['epochs']} epochs at batch {fit['batch_size']}, "
                  f"validation each epoch: {fit['seconds']:.2f} s of training (data to the device included, the "
                  f"program compiled already); last logs: "
                  + ", ".join(f"{k} {v:.4f}" for k, v in fit["last_logs"].items()) + "."]
    lines += ["", f"Matrix-product precision in force: {result['matmul_precision']} (None: JAX's default). "
              f"Threads of the compiled loop: {result.get('compiled_threads', 'Numba' + chr(39) + 's default')}.", ""]
    return "\n".join(lines)


def _write(out, stem, result):
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(markdown(result))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the results")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR", DEFAULT_DATA))
    parser.add_argument("--quick", action="store_true", help="a smoke test: 6,000 rows, 2 timed epochs")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per batch size (default 10; 3 on CPU)")
    parser.add_argument("--online-rows", type=int, default=None,
                        help="training rows at batch size 1 (default all on a GPU, 4,800 on CPU)")
    parser.add_argument("--fit-epochs", type=int, default=None, help="epochs of the study's fit (default 100; "
                        "10 on CPU)")
    parser.add_argument("--batches", default="256,1,32,2048,full", help="in this order")
    parser.add_argument("--compiled-threads", type=int, default=None,
                        help="threads of the compiled loop (default: 1 where JAX runs on the CPU, else Numba's)")
    args = parser.parse_args(argv)

    import jax
    from training_speed import cpu_name  # NumPy only at import

    backend = jax.default_backend()
    on_cpu = backend == "cpu"
    global COMPILED_THREADS
    COMPILED_THREADS = args.compiled_threads or (1 if on_cpu else None)
    n_rows = 6000 if args.quick else 60000
    epochs = args.epochs or (2 if args.quick else 3 if on_cpu else 10)
    fit_epochs = args.fit_epochs or (3 if args.quick else 10 if on_cpu else 100)
    X, y, source = load_data(args.data_dir, n_rows)
    n_train = int(n_rows * 0.8)
    online_rows = args.online_rows or (480 if args.quick else 4800 if on_cpu else n_train)
    from mnist_mlp.training import xla

    result = {"backend": backend, "device": xla.device_name(), "cpu": cpu_name(), "versions": _versions(),
              "matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", "unknown")),
              "compiled_threads": COMPILED_THREADS or "Numba's default",
              "command": "python benchmarks/xla_loop.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "data": source, "n_train": n_train, "n_val": n_rows - n_train, "batches": []}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"xla_loop_{backend}" + ("_quick" if args.quick else "")
    started = time.perf_counter()
    for batch in args.batches.split(","):
        batch_size = n_train if batch == "full" else int(batch)
        if batch_size == 1:  # a step costs the same on fewer rows: validate on as many
            Xb = np.concatenate([X[:online_rows], X[n_train:]])
            yb = np.concatenate([y[:online_rows], y[n_train:]])
            row = compare(Xb, yb, online_rows, 1, max(1, epochs // 3), CONTENDERS)
        else:
            row = compare(X, y, n_train, batch_size, epochs, CONTENDERS)
        result["batches"].append(row)
        print(json.dumps({k: row[k] for k in ("batch_size", "contenders", "skipped")}, default=float), flush=True)
        if batch_size == 256:  # the study's fit right after its batch size: the figure that matters most
            result["study_fit"] = study_fit(X, y, n_train, 256, fit_epochs)
        result["seconds"] = time.perf_counter() - started
        result["unset"] = os.environ.get("MNIST_MLP_BENCH_UNSET", "")
        result["load_average_after"] = round(os.getloadavg()[0], 2)
        _write(out, stem, result)  # after every row: a run cut short still leaves its figures
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
