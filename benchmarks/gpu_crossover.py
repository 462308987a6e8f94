"""Where Keras on a GPU overtakes the compiled CPU loop: the crossover table ``training_loop="auto"`` reads.

On a machine with a GPU visible to TensorFlow, for each network (hidden
sizes) and batch size, times one epoch of the full MNIST (48,000 training
rows, validation on the last 12,000, Adam 1e-3) two ways: our compiled loop on
the CPU, and ``keras.Model.fit`` on the GPU (``training_loop="keras"``, which
TensorFlow places on the GPU). Each time is the median of the epochs after
the first (which carries compilation) over ``--epochs`` epochs. Writes the
table (``benchmarks/results/gpu_crossover.json``): copy it beside
``mnist_mlp/training/devices.py`` as ``gpu_crossover.json`` to ship it, or
point ``MNIST_MLP_GPU_CROSSOVER`` at it.

    python benchmarks/gpu_crossover.py --data-dir ../shared/data/mnist

Without a GPU it refuses, unless ``--cpu-dry-run`` (both loops on the CPU:
checks the script, measures no crossover; its table names the device
"CPU (dry run)", which no GPU matches, so ``auto`` never acts on it).
"""

from __future__ import annotations

import os
import sys

# Some machines set these for old OpenBLAS builds; they slow a current NumPy. Restart without them.
_OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and any(v in os.environ for v in _OPENBLAS_OVERRIDES):
    for _v in _OPENBLAS_OVERRIDES:
        os.environ.pop(_v, None)
    os.execv(sys.executable, [sys.executable, *sys.argv])

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HIDDEN = [(128, 256), (512, 512), (1024, 1024), (2048, 2048)]
BATCH_SIZES = [32, 256, 1024, 4096]


class _EpochTimer:
    """A Keras callback recording each epoch's wall time (both loops call epoch hooks)."""

    def __new__(cls):
        from mnist_mlp._tensorflow import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.start)

        timer = Timer()
        timer.times = []
        return timer


def _epoch_time(X, y, hidden, batch_size, loop, epochs):
    from mnist_mlp import MLPClassifier

    timer = _EpochTimer()
    clf = MLPClassifier(hidden_layer_sizes=hidden, batch_size=batch_size, epochs=epochs, training_loop=loop,
                        random_state=0, tracking=False, callbacks=[timer]).fit(X, y)
    expected = "compiled" if loop == "auto" else "keras"
    if clf.training_loop_ != expected:
        raise RuntimeError(f"{loop!r} trained in {clf.training_loop_} ({clf.training_loop_reason_})")
    return statistics.median(timer.times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is not timed)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="no GPU: check the script on the CPU")
    parser.add_argument("--hidden", default=";".join(",".join(map(str, h)) for h in HIDDEN),
                        help="networks, e.g. '128,256;512,512'")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    parser.add_argument("--n-train", type=int, default=None,
                        help="only the first N training images (a plumbing check; the table needs them all)")
    parser.add_argument("--output", type=Path, default=RESULTS / "gpu_crossover.json")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is not timed")
    # No table in force while measuring: "auto" must mean the compiled loop here.
    os.environ.pop("MNIST_MLP_GPU_CROSSOVER", None)
    from mnist_mlp.data import load_mnist
    from mnist_mlp.training import devices

    if devices.crossover_table() is not None:
        sys.exit(f"a crossover table ships at {devices.crossover_table()['source']}: move it aside to measure")
    gpus = devices.visible_gpus()
    if not gpus and not args.cpu_dry_run:
        sys.exit("gpu_crossover: TensorFlow sees no GPU here; nothing to measure (--cpu-dry-run checks the script)")
    device = gpus[0] if gpus else "CPU (dry run)"
    (x_train, y_train), _ = load_mnist(args.data_dir or None, download=False)
    x_train, y_train = x_train[:args.n_train], y_train[:args.n_train]
    X = (x_train.reshape(len(x_train), -1) / 255.0).astype("float32")
    hidden_sizes = [tuple(int(v) for v in h.split(",")) for h in args.hidden.split(";")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    points = []
    for hidden in hidden_sizes:
        for batch_size in batch_sizes:
            compiled = _epoch_time(X, y_train, hidden, batch_size, "auto", args.epochs)
            keras_gpu = _epoch_time(X, y_train, hidden, batch_size, "keras", args.epochs)
            points.append({"hidden": list(hidden), "parameters": devices.n_parameters([784, *hidden, 10]),
                           "batch_size": batch_size, "compiled_s": round(compiled, 4),
                           "keras_gpu_s": round(keras_gpu, 4), "ratio_gpu_to_compiled": round(keras_gpu / compiled, 3)})
            print(f"{hidden} batch {batch_size}: compiled {compiled:.3f} s, Keras on {device} {keras_gpu:.3f} s "
                  f"an epoch", flush=True)
    table = {"device": device, "gpus": gpus, "cpu_count": os.cpu_count(), "epochs": args.epochs,
             "what": f"seconds per epoch ({len(X) - int(len(X) * 0.2):,} training rows, validation included), "
                     "median after the first epoch",
             "command": f"python benchmarks/gpu_crossover.py --data-dir {args.data_dir}"
                        + (" --cpu-dry-run" if args.cpu_dry_run else ""),
             "points": points}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(table, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
