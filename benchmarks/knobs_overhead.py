"""What the Dropout paper's knobs cost per epoch in the compiled loop: a network with them vs the same without.

Side by side in one process, alternating (so that a busy machine slows both
alike): the same network, data, batch size (256) and seed, once without the
knobs and once with every one of them (``input_dropout=0.2``, ``max_norm=3``,
``learning_rate="cosine"``, ``early_stopping=True`` with a patience that never
stops the fit). Two networks: the Dropout paper's 3x1024 ReLU with dropout 0.5
(the target network of issue 31) and the study's 128-256 (where the knobs'
per-input draws weigh most). A repetition's time per epoch is the median of
its epochs after the first (compilation); the figure is the median over
``--repeats`` repetitions, and the ratio is with / without.

    python benchmarks/knobs_overhead.py --data-dir /work/shared/data/mnist

Writes ``benchmarks/results/knobs_overhead.json``.
"""

from __future__ import annotations

import argparse
import sys
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
NETWORKS = {"dropout-paper-3x1024": dict(hidden_layer_sizes=(1024, 1024, 1024), dropout=0.5),
            "study-128-256": dict(hidden_layer_sizes=(128, 256))}
KNOBS = dict(input_dropout=0.2, max_norm=3.0, learning_rate="cosine", early_stopping=True, n_iter_no_change=1000)


def epoch_timer():
    """training_speed's per-epoch timer, marked as reading the logs only: without it the compiled loop
    would copy the weights into Keras every epoch, in both fits, for a callback that never looks."""
    from training_speed import EpochTimer  # benchmarks/ is this script's sys.path[0]

    timer = EpochTimer()
    timer.reads_logs_only = True
    return timer


def time_per_epoch(params, X, y, epochs, seed):
    from mnist_mlp import MLPClassifier

    timer = epoch_timer()
    clf = MLPClassifier(**params, epochs=epochs, batch_size=256, random_state=seed, tracking=False,
                        callbacks=[timer]).fit(X, y)
    assert clf.training_loop_ == "compiled", clf.training_loop_reason_
    return statistics.median(timer.times[1:]), clf.n_iter_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data/mnist")
    parser.add_argument("--rows", type=int, default=15000, help="training rows (the last 20 %% validate)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS))
    args = parser.parse_args(argv)
    from mnist_mlp import load_mnist

    (x_train, y_train), _ = load_mnist(args.data_dir, download=False)
    X = (x_train[:args.rows].reshape(args.rows, -1) / 255.0).astype(np.float32)
    y = y_train[:args.rows]
    command = " ".join(["python benchmarks/knobs_overhead.py", *(sys.argv[1:] if argv is None else argv)])
    results = {"command": command, "rows": args.rows,
               "epochs": args.epochs, "repeats": args.repeats, "batch_size": 256, "knobs": KNOBS,
               "machine": platform.processor() or platform.machine(), "networks": {}}
    for name in args.networks:
        runs = {"without": [], "with": []}
        for seed in range(args.repeats):
            for label, extra in (("without", {}), ("with", KNOBS)):
                seconds, n_iter = time_per_epoch({**NETWORKS[name], **extra}, X, y, args.epochs, seed)
                assert n_iter == args.epochs
                runs[label].append(seconds)
                print(f"{name} {label} seed {seed}: {seconds:.3f} s/epoch", flush=True)
        without, with_ = statistics.median(runs["without"]), statistics.median(runs["with"])
        results["networks"][name] = {"network": NETWORKS[name], "seconds_per_epoch": runs,
                                     "median_without": without, "median_with": with_, "ratio": with_ / without}
        print(f"{name}: {with_:.3f} / {without:.3f} s per epoch = {with_ / without:.3f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "knobs_overhead.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
