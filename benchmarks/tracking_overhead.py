"""Tracking overhead: the same fit with MLflow tracking on and off, side by side.

A 10-epoch fit of the default pipeline on the embedded 6,000 images, tracked
(params, per-epoch metrics, learning curves, weight violins, history, model)
and untracked, alternated so both see the same machine load. Reports medians
of the wall time of ``fit()`` and their ratio.

    python benchmarks/tracking_overhead.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS / "tracking_overhead.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        from mnist_mlp import load_embedded_mnist, make_pipeline

        (x_train, y_train), _ = load_embedded_mnist()
        for tracking in (False, True):  # warm-up: imports, store creation, graph tracing
            make_pipeline(epochs=1, random_state=0, tracking=tracking).fit(x_train, y_train)
        times = {False: [], True: []}
        train = {False: [], True: []}  # fit_time_: the Keras training alone
        for _ in range(args.repeats):
            for tracking in (False, True):
                pipe = make_pipeline(epochs=args.epochs, random_state=0, tracking=tracking)
                start = time.perf_counter()
                pipe.fit(x_train, y_train)
                times[tracking].append(time.perf_counter() - start)
                train[tracking].append(pipe["classifier"].fit_time_)

    off, on = statistics.median(times[False]), statistics.median(times[True])
    result = {
        "what": f"{args.epochs}-epoch fit of the default pipeline on {len(x_train)} images",
        "repeats": args.repeats,
        "untracked_s": [round(t, 4) for t in times[False]],
        "tracked_s": [round(t, 4) for t in times[True]],
        "median_untracked_s": round(off, 4),
        "median_tracked_s": round(on, 4),
        "median_training_untracked_s": round(statistics.median(train[False]), 4),
        "median_training_tracked_s": round(statistics.median(train[True]), 4),
        "overhead_ratio": round(on / off, 4),
        "overhead_percent": round(100 * (on / off - 1), 2),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
