"""Training and prediction speed: ours vs plain Keras vs scikit-learn vs JAX, in one run.

On the full MNIST (48,000 training rows, validation on the last 12,000 of the
training set, the study's network 784-128-256-10, Adam 1e-3), side by side:

- time per epoch at batch size 256, with validation each epoch: our
  ``MLPClassifier`` (default settings), plain Keras ``model.fit`` of the same
  network (the study's code path), scikit-learn's ``MLPClassifier`` with the
  same layers and batch size (``partial_fit`` + ``score`` on the validation
  rows each epoch);
- time per epoch at full batch (48,000 rows, one step per epoch);
- time per optimizer step at batch size 1 (``--online-steps`` rows, one
  epoch timed after a warm-up epoch, no validation);
- prediction throughput on the 10,000 test images;
- the test accuracy each reached after the same epochs on the same data;
- with JAX installed (the ``bench`` extra; ``--no-jax`` leaves them out), two
  more contenders at batch 256 and batch 1, each in a process of its own
  (``benchmarks/jax_contenders.py``): Keras 3 on the JAX backend with
  ``jit_compile=True`` and an epoch per call, and a plain JAX loop
  (``jax.lax.scan`` over an epoch's batches, Keras's Adam by hand).

Every figure is the median over ``--repeats`` repetitions (seeds 0, 1, ...);
a repetition's time per epoch is the median of its epochs after the first
(which carries tracing and compilation; the whole fit's wall time is
reported too). Writes ``benchmarks/results/training_speed.json`` and
``.md``. ``--ablation`` adds rows for Keras with XLA and a whole epoch per
call, for a ``tf.function`` epoch loop around an XLA-compiled train step, and
for our loop without flushing denormals.

    python benchmarks/training_speed.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import os
import sys

# Some machines set these for old OpenBLAS builds; they slow a current NumPy.
# A benchmark measures the libraries as they run best: restart this process
# without them (before NumPy loads OpenBLAS). Tests and CI keep them.
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
import warnings  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class EpochTimer:
    """Wall time of each epoch (a plain Keras callback: epoch hooks only)."""

    def __new__(cls):
        from mnist_mlp._tensorflow import keras

        class _Timer(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        return _Timer()


def steady(times):
    """Median epoch time after the first (tracing, compilation)."""
    return statistics.median(times[1:] if len(times) > 1 else times)


def keras_model(seed, *, jit_compile="auto", steps_per_execution=1):
    """The study's network, compiled as the study does."""
    from mnist_mlp._tensorflow import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(784,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return model


def run_ours(data, seed, *, batch_size, epochs, validation_split=0.2, n_rows=None, **params):
    from mnist_mlp import MLPClassifier

    X, y = data["X"][:n_rows], data["y"][:n_rows]
    timer = EpochTimer()
    clf = MLPClassifier(batch_size=batch_size, epochs=epochs, validation_split=validation_split,
                        random_state=seed, tracking=False, callbacks=[timer], **params)
    start = time.perf_counter()
    clf.fit(X, y)
    wall = time.perf_counter() - start
    assert clf.training_loop_ == "compiled", clf.training_loop_reason_
    return {"epoch_times": timer.times, "wall": wall, "estimator": clf,
            "steps_per_epoch": -(-int(len(X) * (1 - validation_split)) // batch_size)}


def run_keras(data, seed, *, batch_size, epochs, validation_split=0.2, n_rows=None, **compile_kw):
    X, Y = data["X"][:n_rows], data["Y"][:n_rows]
    model = keras_model(seed, **compile_kw)
    timer = EpochTimer()
    start = time.perf_counter()
    model.fit(X, Y, batch_size=batch_size, epochs=epochs, validation_split=validation_split,
              shuffle=False, verbose=0, callbacks=[timer])
    wall = time.perf_counter() - start
    return {"epoch_times": timer.times, "wall": wall, "model": model,
            "steps_per_epoch": -(-int(len(X) * (1 - validation_split)) // batch_size)}


def run_tf_loop(data, seed, *, batch_size, epochs, validation_split=0.2, n_rows=None):
    """The best pure-TensorFlow path we found: the data as in-memory tensors, a
    ``tf.function`` epoch loop around an XLA-compiled Keras ``train_step``,
    validation as one XLA-compiled pass. (XLA-compiling the epoch loop too
    was about 100x slower: the loop carries the whole training array.)"""
    from mnist_mlp._tensorflow import keras, tf

    X, Y = data["X"][:n_rows], data["Y"][:n_rows]
    split = int(len(X) * (1 - validation_split))
    model = keras_model(seed)
    model.optimizer.build(model.trainable_variables)
    X_train, Y_train = tf.constant(X[:split]), tf.constant(Y[:split])
    X_val, Y_val = tf.constant(X[split:]), tf.constant(Y[split:])
    steps = -(-split // batch_size)
    step = tf.function(lambda x, y: model.train_step((x, y)), jit_compile=True)

    @tf.function
    def epoch():
        for i in tf.range(steps):
            step(X_train[i * batch_size:(i + 1) * batch_size], Y_train[i * batch_size:(i + 1) * batch_size])
        return 0

    @tf.function(jit_compile=True)
    def validate():
        p = model(X_val, training=False)
        return (tf.reduce_mean(keras.losses.categorical_crossentropy(Y_val, p)),
                tf.reduce_mean(tf.cast(tf.argmax(p, 1) == tf.argmax(Y_val, 1), tf.float32)))

    times = []
    start = time.perf_counter()
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.reset_metrics()
        epoch()
        {k: float(v) for k, v in model.get_metrics_result().items()}  # the epoch's logs
        if split < len(X):
            [float(v) for v in validate()]
        times.append(time.perf_counter() - t0)
    return {"epoch_times": times, "wall": time.perf_counter() - start, "model": model}


def run_sklearn(data, seed, *, batch_size, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_train, y_train, X_val, y_val = data["X"][:48000], data["y"][:48000], data["X"][48000:], data["y"][48000:]
    clf = SkMLP(hidden_layer_sizes=(128, 256), batch_size=batch_size, learning_rate_init=1e-3,
                alpha=0.0, shuffle=False, random_state=seed)
    times = []
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            t0 = time.perf_counter()
            clf.partial_fit(X_train, y_train, classes=np.arange(10))
            clf.score(X_val, y_val)  # the epoch's validation
            times.append(time.perf_counter() - t0)
    return {"epoch_times": times, "wall": time.perf_counter() - start, "estimator": clf}


def run_jax(contender, data_file, seed, *, batch_size, epochs, validation_split=0.2, n_rows=None):
    """A contender of ``benchmarks/jax_contenders.py`` (Keras 3 on JAX, or a plain JAX loop), in a
    process of its own: the Keras backend is fixed when Keras is first imported."""
    import subprocess

    command = [sys.executable, str(Path(__file__).with_name("jax_contenders.py")), contender, "--data", str(data_file),
               "--batch-size", str(batch_size), "--epochs", str(epochs), "--seed", str(seed),
               "--validation-split", str(validation_split)]
    if n_rows:
        command += ["--n-rows", str(n_rows)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{contender} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "wall": sum(result["epoch_times"])}


def _jax_available():
    from importlib.util import find_spec

    return find_spec("jax") is not None


def accuracy(predict, data):
    return float(np.mean(predict(data["X_test"]) == data["y_test"]))


def keras_predict(model):
    return lambda X: np.argmax(model.predict(X, verbose=0), axis=1)


def throughput(predict, X, repeats):
    predict(X)  # warm-up: tracing, compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(X)
        times.append(time.perf_counter() - start)
    return len(X) / statistics.median(times)


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_MLP_DATA_DIR"))
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (seeds 0..R-1)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per batch-256 / full-batch fit")
    parser.add_argument("--online-steps", type=int, default=3000, help="rows of the batch-size-1 fits")
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--no-jax", action="store_true",
                        help="leave out the JAX contenders (run when the bench extra installed JAX)")
    parser.add_argument("--output", type=Path, default=RESULTS / "training_speed.json")
    args = parser.parse_args(argv)

    from mnist_mlp import load_mnist
    from mnist_mlp.training import kernels as _kernels

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir, download=False)
    if len(x_train) != 60000:
        sys.exit(f"needs the full MNIST (60,000 training images); got {len(x_train)} from "
                 "the embedded subset: pass --data-dir or set MNIST_MLP_DATA_DIR")
    X = (x_train.reshape(len(x_train), -1) / np.float32(255)).astype(np.float32)
    data = {"X": X, "y": y_train.astype(np.int64), "Y": np.eye(10, dtype=np.float32)[y_train],
            "X_test": (x_test.reshape(len(x_test), -1) / np.float32(255)).astype(np.float32), "y_test": y_test}
    seeds = list(range(args.repeats))
    rows, raw = [], {}
    jax = _jax_available() and not args.no_jax
    if jax:  # the JAX contenders run in processes of their own, on these very arrays
        import tempfile

        data_file = Path(tempfile.mkdtemp(prefix="mnist_mlp_bench_")) / "data.npz"
        np.savez(data_file, X=data["X"], y=data["y"], X_test=data["X_test"], y_test=data["y_test"])

    def record(name, what, ours, theirs, unit, lower_is_better=True):
        ratio = ours / theirs
        rows.append({"measure": name, "what": what, "ours": ours, "theirs": theirs, "unit": unit,
                     "ratio_ours_over_theirs": ratio, "lower_is_better": lower_is_better})

    # -- batch 256 ------------------------------------------------------------
    E = args.epochs
    b256 = {"ours": [], "keras": [], "sklearn": []}
    for seed in seeds:  # interleaved, so every contender sees the same load
        b256["ours"].append(run_ours(data, seed, batch_size=256, epochs=E))
        b256["keras"].append(run_keras(data, seed, batch_size=256, epochs=E))
        b256["sklearn"].append(run_sklearn(data, seed, batch_size=256, epochs=E))
        if jax:
            for contender in ("keras-jax", "jax-scan"):
                b256.setdefault(contender, []).append(run_jax(contender, data_file, seed, batch_size=256, epochs=E))
        if args.ablation:
            b256.setdefault("keras_xla_epoch", []).append(
                run_keras(data, seed, batch_size=256, epochs=E, jit_compile=True, steps_per_execution=188))
            b256.setdefault("tf_loop_xla_step", []).append(run_tf_loop(data, seed, batch_size=256, epochs=E))
    per_epoch = {k: statistics.median(steady(r["epoch_times"]) for r in v) for k, v in b256.items()}
    acc = {
        "ours": [accuracy(r["estimator"].predict, data) for r in b256["ours"]],
        "keras": [accuracy(keras_predict(r["model"]), data) for r in b256["keras"]],
        "sklearn": [accuracy(r["estimator"].predict, data) for r in b256["sklearn"]],
        **{k: [r["test_accuracy"] for r in b256[k]] for k in ("keras-jax", "jax-scan") if k in b256},
    }
    raw["batch_256"] = {k: {"epoch_times_s": [r["epoch_times"] for r in v], "fit_wall_s": [r["wall"] for r in v]}
                        for k, v in b256.items()}
    raw["batch_256_test_accuracy"] = acc
    record("batch 256, s/epoch", "ours vs plain Keras", per_epoch["ours"], per_epoch["keras"], "s")
    record("batch 256, s/epoch", "ours vs scikit-learn", per_epoch["ours"], per_epoch["sklearn"], "s")
    if jax:
        record("batch 256, s/epoch", "ours vs Keras 3 on JAX (jit_compile, an epoch per call)",
               per_epoch["ours"], per_epoch["keras-jax"], "s")
        record("batch 256, s/epoch", "ours vs a plain JAX loop (lax.scan over 187 whole batches, jitted)",
               per_epoch["ours"], per_epoch["jax-scan"], "s")
    if args.ablation:
        record("batch 256, s/epoch", "plain Keras + XLA + 188 steps/call vs plain Keras",
               per_epoch["keras_xla_epoch"], per_epoch["keras"], "s")
        record("batch 256, s/epoch", "TF epoch loop around an XLA train step vs plain Keras",
               per_epoch["tf_loop_xla_step"], per_epoch["keras"], "s")
        record("batch 256, s/epoch", "ours vs TF epoch loop around an XLA train step",
               per_epoch["ours"], per_epoch["tf_loop_xla_step"], "s")
    if args.ablation:  # a penalty drives Adam's slots towards the denormal range
        penalized = {"ours": [], "ours_no_ftz": []}
        for seed in seeds:
            penalized["ours"].append(run_ours(data, seed, batch_size=256, epochs=E, penalty="l1", alpha=1e-3))
            _kernels.FLUSH_DENORMALS = False
            try:
                penalized["ours_no_ftz"].append(
                    run_ours(data, seed, batch_size=256, epochs=E, penalty="l1", alpha=1e-3))
            finally:
                _kernels.FLUSH_DENORMALS = True
        pen_epoch = {k: statistics.median(steady(r["epoch_times"]) for r in v) for k, v in penalized.items()}
        raw["batch_256_l1"] = {k: {"epoch_times_s": [r["epoch_times"] for r in v]} for k, v in penalized.items()}
        record("batch 256, L1 alpha 1e-3, s/epoch", "ours without flushing denormals vs ours",
               pen_epoch["ours_no_ftz"], pen_epoch["ours"], "s")
    record("batch 256, whole fit s", f"ours vs plain Keras ({E} epochs, incl. set-up)",
           median_of(b256["ours"], "wall"), median_of(b256["keras"], "wall"), "s")
    for other in ("keras", "sklearn"):
        record(f"batch 256, test accuracy after {E} epochs", f"ours vs {other} (median of seeds)",
               statistics.median(acc["ours"]), statistics.median(acc[other]), "", lower_is_better=False)

    # -- full batch -----------------------------------------------------------
    full = {"ours": [], "keras": [], "sklearn": []}
    for seed in seeds:
        full["ours"].append(run_ours(data, seed, batch_size=48000, epochs=E))
        full["keras"].append(run_keras(data, seed, batch_size=48000, epochs=E))
        full["sklearn"].append(run_sklearn(data, seed, batch_size=48000, epochs=E))
    full_epoch = {k: statistics.median(steady(r["epoch_times"]) for r in v) for k, v in full.items()}
    raw["full_batch"] = {k: {"epoch_times_s": [r["epoch_times"] for r in v]} for k, v in full.items()}
    record("full batch (48,000), s/epoch", "ours vs plain Keras", full_epoch["ours"], full_epoch["keras"], "s")
    record("full batch (48,000), s/epoch", "ours vs scikit-learn", full_epoch["ours"], full_epoch["sklearn"], "s")

    # -- batch 1 --------------------------------------------------------------
    n = args.online_steps
    online = {"ours": [], "keras": []}
    for seed in seeds:
        online["ours"].append(run_ours(data, seed, batch_size=1, epochs=2, validation_split=0.0, n_rows=n))
        online["keras"].append(run_keras(data, seed, batch_size=1, epochs=2, validation_split=0.0, n_rows=n))
        if jax:
            for contender in ("keras-jax", "jax-scan"):
                online.setdefault(contender, []).append(run_jax(
                    contender, data_file, seed, batch_size=1, epochs=2, validation_split=0.0, n_rows=n))
        if args.ablation:
            online.setdefault("keras_xla_epoch", []).append(run_keras(
                data, seed, batch_size=1, epochs=2, validation_split=0.0, n_rows=n,
                jit_compile=True, steps_per_execution=n))
            online.setdefault("tf_loop_xla_step", []).append(run_tf_loop(
                data, seed, batch_size=1, epochs=2, validation_split=0.0, n_rows=n))
            _kernels.FLUSH_DENORMALS = False
            try:
                online.setdefault("ours_no_ftz", []).append(
                    run_ours(data, seed, batch_size=1, epochs=2, validation_split=0.0, n_rows=n))
            finally:
                _kernels.FLUSH_DENORMALS = True
    per_step = {k: statistics.median(r["epoch_times"][-1] / n for r in v) for k, v in online.items()}
    raw["batch_1"] = {k: {"epoch_times_s": [r["epoch_times"] for r in v]} for k, v in online.items()}
    record("batch 1, ms/step", f"ours vs plain Keras ({n} steps)", 1e3 * per_step["ours"], 1e3 * per_step["keras"], "ms")
    if jax:
        record("batch 1, ms/step", "ours vs Keras 3 on JAX (jit_compile, an epoch per call)",
               1e3 * per_step["ours"], 1e3 * per_step["keras-jax"], "ms")
        record("batch 1, ms/step", "ours vs a plain JAX loop (lax.scan over the epoch, jitted)",
               1e3 * per_step["ours"], 1e3 * per_step["jax-scan"], "ms")
    if args.ablation:
        record("batch 1, ms/step", "plain Keras + XLA + whole epoch/call vs plain Keras",
               1e3 * per_step["keras_xla_epoch"], 1e3 * per_step["keras"], "ms")
        record("batch 1, ms/step", "TF epoch loop around an XLA train step vs plain Keras",
               1e3 * per_step["tf_loop_xla_step"], 1e3 * per_step["keras"], "ms")
        record("batch 1, ms/step", "ours vs TF epoch loop around an XLA train step",
               1e3 * per_step["ours"], 1e3 * per_step["tf_loop_xla_step"], "ms")
        record("batch 1, ms/step", "ours without flushing denormals vs ours",
               1e3 * per_step["ours_no_ftz"], 1e3 * per_step["ours"], "ms")
    study_steps = 48000 * 100
    projected = {k: v * study_steps / 60 for k, v in per_step.items()}

    # -- prediction -----------------------------------------------------------
    ours_clf, keras_m, sk_clf = b256["ours"][0]["estimator"], b256["keras"][0]["model"], b256["sklearn"][0]["estimator"]
    X_test = data["X_test"]
    tput = {
        "ours": throughput(ours_clf.predict, X_test, 2 * args.repeats + 1),
        "keras": throughput(keras_predict(keras_m), X_test, 2 * args.repeats + 1),
        "sklearn": throughput(sk_clf.predict, X_test, 2 * args.repeats + 1),
    }
    record("prediction, images/s", "ours vs plain Keras (model.predict)", tput["ours"], tput["keras"],
           "img/s", lower_is_better=False)
    record("prediction, images/s", "ours vs scikit-learn", tput["ours"], tput["sklearn"], "img/s",
           lower_is_better=False)

    result = {
        "what": __doc__.split("\n\n")[0],
        "command": "python benchmarks/training_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "unset_for_this_run": os.environ.get("MNIST_MLP_BENCH_UNSET", ""), "blas": _blas()},
        "versions": {d: _version(d) for d in ("tensorflow", "keras", "scikit-learn", "numba", "numpy", "jax")},
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "repeats": args.repeats,
        "epochs": E,
        "rows": rows,
        "per_epoch_s_batch_256": per_epoch,
        "per_epoch_s_full_batch": full_epoch,
        "per_step_s_batch_1": per_step,
        "projected_100_epoch_online_run_min": projected,
        "throughput_img_per_s": tput,
        "raw": raw,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    markdown = render_markdown(result)
    args.output.with_suffix(".md").write_text(markdown)
    print(markdown)


def render_markdown(result):
    lines = [
        "# Training speed: ours vs plain Keras vs scikit-learn vs JAX",
        "",
        f"{result['date']}, {result['machine']['cpu']}, {result['machine']['cores']} cores; "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
        f"Medians of {result['repeats']} repetitions (seeds 0..{result['repeats'] - 1}); "
        f"{result['epochs']} epochs per fit. Command: `{result['command']}`",
        "BLAS: " + "; ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, "
                             f"{b['num_threads']} threads)" for b in result["machine"]["blas"])
        + (f"; unset for this run: {result['machine']['unset_for_this_run']}"
           if result["machine"]["unset_for_this_run"] else ""),
        "",
        "| measure | comparison | ours | theirs | ours / theirs |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["rows"]:
        fmt = (lambda v: f"{v:,.0f}") if row["unit"] == "img/s" else (
            (lambda v: f"{100 * v:.2f} %") if row["unit"] == "" else (lambda v: f"{v:.4g} {row['unit']}"))
        lines.append(f"| {row['measure']} | {row['what']} | {fmt(row['ours'])} | {fmt(row['theirs'])} "
                     f"| {row['ratio_ours_over_theirs']:.3f} |")
    lines += ["", "Projected wall time of the study's 100-epoch online run (4.8 million steps, "
              "training steps only): " + ", ".join(
                  f"{k} {v:.1f} min" for k, v in result["projected_100_epoch_online_run_min"].items()), ""]
    acc = result["raw"]["batch_256_test_accuracy"]
    lines += ["Test accuracy per seed after the batch-256 fits: " + "; ".join(
        f"{k} " + ", ".join(f"{100 * a:.2f}" for a in v) for k, v in acc.items()) + " (%)", ""]
    return "\n".join(lines)


def _blas():
    """Which BLAS library, kernel (OpenBLAS's core type) and threads NumPy runs on."""
    from threadpoolctl import threadpool_info

    return [{k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
            for info in threadpool_info() if info.get("user_api") == "blas"]


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
