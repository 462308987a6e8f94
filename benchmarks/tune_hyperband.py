"""Section 3 as `mnist-mlp tune` runs it, on the full MNIST, then the pick trained with more seeds.

Both searches (validation accuracy, then validation macro F1) with the chosen
method, the final network (50 epochs, all 60,000 training rows) for seed 0,
then the same final network for the other seeds. Records the pick, test
accuracy and macro F1 per seed and their mean, the epochs each search
trained and the wall times. Tracking on, into a fresh store.

    python benchmarks/tune_hyperband.py                       # Hyperband, the study's space
    python benchmarks/tune_hyperband.py --wide                # our wide space
    python benchmarks/tune_hyperband.py --method grid --output benchmarks/results/tune_grid_rerun.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="hyperband")
    parser.add_argument("--epochs", type=int, default=None, help="Hyperband's last rung (default 81)")
    parser.add_argument("--wide", action="store_true")
    parser.add_argument("--brackets", type=int, nargs="+", default=None,
                        help="Hyperband brackets instead of the default (e.g. 4: first rung at 1 epoch)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    from sklearn.base import clone
    from threadpoolctl import threadpool_info

    from mnist_mlp import evaluate, load_mnist
    from mnist_mlp.study import load_experiment, run_tuning

    data = load_mnist(args.data_dir or SHARED)
    (x_train, y_train), (x_test, y_test) = data
    with tempfile.TemporaryDirectory() as store:
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        start = time.perf_counter()
        tuned = run_tuning(data, epochs=args.epochs, method=args.method, wide=args.wide, seed=args.seeds[0],
                           brackets=args.brackets)
        finals = [{"seed": args.seeds[0], **{k: tuned["final"][k] for k in ("test_accuracy", "test_f1_macro")}}]
        best = {k: tuple(v) if isinstance(v, list) else v for k, v in tuned["final"]["params"].items()}
        template = load_experiment("3").make_search(method="grid").estimator
        for seed in args.seeds[1:]:
            started = time.perf_counter()
            final = clone(template).set_params(**best, classifier__epochs=50, classifier__validation_split=0.0,
                                               classifier__random_state=seed)
            final.fit(x_train, y_train)
            scores = evaluate(final, x_test, y_test)
            finals.append({"seed": seed, "test_accuracy": scores["test_accuracy"],
                           "test_f1_macro": scores["test_f1_macro"],
                           "fit_time_s": round(time.perf_counter() - started, 1)})
            print(finals[-1], flush=True)
        wall = time.perf_counter() - start
    accuracy = [f["test_accuracy"] for f in finals]
    result = {
        "method": args.method, "space": "wide" if args.wide else "study", "brackets": args.brackets,
        "searches": {k: {kk: v for kk, v in s.items() if kk != "run_id"} for k, s in tuned["searches"].items()},
        "pick": tuned["final"]["params"],
        "finals": finals,
        "mean_test_accuracy": statistics.fmean(accuracy),
        "sd_test_accuracy": statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0,
        "mean_test_f1_macro": statistics.fmean(f["test_f1_macro"] for f in finals),
        "tuning_wall_time_s": round(tuned["wall_time_s"], 1),
        "wall_time_s": round(wall, 1),
        "data": f"{data.name} ({len(x_train)} train, {len(x_test)} test)",
        "blas": [(i.get("internal_api"), i.get("architecture")) for i in threadpool_info()],
        "command": "python " + " ".join(["benchmarks/tune_hyperband.py", *(argv or sys.argv[1:])]),
    }
    suffix = ("_wide" if args.wide else "") + ("_brackets_" + "_".join(map(str, args.brackets)) if args.brackets else "")
    output = args.output or RESULTS / f"tune_{args.method}{suffix}.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
