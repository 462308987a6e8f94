"""Tracking overhead: the same fit with MLflow tracking on and off, side by side.

A 10-epoch fit of the default pipeline on the embedded 6,000 images, tracked
(params, per-epoch metrics, learning curves, weight violins, history, model)
and untracked, alternated so both see the same machine load. Reports medians
of the wall time of ``fit()`` and their ratio, for the default compiled
training loop and (``--keras-loop``) for ``training_loop="keras"``, and where
the tracked fit's extra time goes (median per stage, timed inside the same
tracked fits).

    python benchmarks/tracking_overhead.py --repeats 9 --keras-loop
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: (module, attribute, label) of the tracking stages timed inside tracked fits.
STAGES = [
    ("tracking.runs:FitRun", "open", "open the run"),
    ("tracking.fit_logging", "estimator_params", "collect params"),
    ("tracking.runs:FitRun", "log_params", "write params"),
    ("tracking.fit_logging", "dataset_inputs", "digest dataset inputs"),
    ("tracking.runs:FitRun", "log_inputs", "write dataset inputs"),
    ("plots", "plot_learning_curves", "build learning-curve figure"),
    ("plots", "plot_weight_violins", "build weight-violin figure"),
    ("tracking.runs:FitRun", "log_files", "render PNGs + write history/plots"),
    ("tracking.fit_logging", "log_model", "save + log the model"),
    ("tracking.runs:FitRun", "end", "write last metrics/tags, end the run"),
]


def _instrument(timings):
    """Wrap each stage so that its wall time is recorded under its label."""
    import importlib

    for where, name, label in STAGES:
        module_name, _, owner = where.partition(":")
        module = importlib.import_module(f"mnist_mlp.{module_name}")
        target = getattr(module, owner) if owner else module
        original = target.__dict__[name] if owner else getattr(target, name)
        function = original.__func__ if isinstance(original, classmethod) else original

        def timed(*args, _function=function, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _function(*args, **kwargs)
            finally:
                timings[_label].append(time.perf_counter() - start)

        timed = functools.wraps(function)(timed)
        setattr(target, name, classmethod(timed) if isinstance(original, classmethod) else timed)


def _compare(make_pipeline, x_train, y_train, epochs, repeats, **params):
    times = {False: [], True: []}
    train = {False: [], True: []}  # fit_time_: the training alone
    for tracking in (False, True):  # warm-up: imports, store creation, compilation
        make_pipeline(epochs=1, random_state=0, tracking=tracking, **params).fit(x_train, y_train)
    for _ in range(repeats):
        for tracking in (False, True):
            pipe = make_pipeline(epochs=epochs, random_state=0, tracking=tracking, **params)
            start = time.perf_counter()
            pipe.fit(x_train, y_train)
            times[tracking].append(time.perf_counter() - start)
            train[tracking].append(pipe["classifier"].fit_time_)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    return {
        "untracked_s": [round(t, 4) for t in times[False]],
        "tracked_s": [round(t, 4) for t in times[True]],
        "median_untracked_s": round(off, 4),
        "median_tracked_s": round(on, 4),
        "median_training_untracked_s": round(statistics.median(train[False]), 4),
        "median_training_tracked_s": round(statistics.median(train[True]), 4),
        "overhead_s": round(on - off, 4),
        "overhead_ratio": round(on / off, 4),
        "overhead_percent": round(100 * (on / off - 1), 2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--keras-loop", action="store_true",
                        help='also compare with training_loop="keras"')
    parser.add_argument("--output", type=Path, default=RESULTS / "tracking_overhead.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        from mnist_mlp import load_embedded_mnist, make_pipeline

        (x_train, y_train), _ = load_embedded_mnist()
        timings = collections.defaultdict(list)
        _instrument(timings)
        result = {
            "what": f"{args.epochs}-epoch fit of the default pipeline on {len(x_train)} images",
            "repeats": args.repeats,
            "compiled_loop": _compare(make_pipeline, x_train, y_train, args.epochs, args.repeats),
        }
        stages = {label: timings[label][-args.repeats:] for _, _, label in STAGES}
        result["compiled_loop"]["tracking_stages_median_ms"] = {
            label: round(1000 * statistics.median(values), 1) for label, values in stages.items() if values
        }
        if args.keras_loop:
            result["keras_loop"] = _compare(make_pipeline, x_train, y_train, args.epochs, args.repeats,
                                            training_loop="keras")
    # Stages nest (plots are built inside log_files' caller, rendered inside it): not additive.
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
