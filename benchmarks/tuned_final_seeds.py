"""The tuned network (section 3's best parameters) trained afresh with several seeds.

One final fit is one draw; this shows the spread the study's single 98.29 % sits in.
Trains on the full MNIST (MNIST_MLP_DATA_DIR or ../shared/data/mnist), 50 epochs each.

    python benchmarks/tuned_final_seeds.py --seeds 0 1 2
    python benchmarks/tuned_final_seeds.py --hidden-layer-sizes 128 256 --seeds 0 1 2 3 4
    python benchmarks/tuned_final_seeds.py --hidden-layer-sizes 512 512 --dropout 0.2 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mnist_mlp import evaluate, load_mnist, make_pipeline

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--hidden-layer-sizes", type=int, nargs="+", default=[128, 512],
                        help="our tuning's pick (default) or the study's, 128 256")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="0.2: the wide search's pick (with 512 512)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir or SHARED)
    rows = []
    for seed in args.seeds:
        pipe = make_pipeline(
            optimizer="rmsprop", kernel_initializer="he_normal", penalty="l2", alpha=1e-6,
            hidden_layer_sizes=tuple(args.hidden_layer_sizes), learning_rate_init=1e-3, epochs=50,
            dropout=args.dropout, validation_split=0.0, random_state=seed,
        ).fit(x_train, y_train)
        scores = evaluate(pipe, x_test, y_test)
        clf = pipe["classifier"]
        rows.append({"seed": seed, "test_accuracy": scores["test_accuracy"], "fit_time_s": clf.fit_time_,
                     "training_loop": clf.training_loop_,
                     "test_f1_macro": scores["test_f1_macro"], "run_id": getattr(pipe, "run_id_", None)})
        print(rows[-1])
    accuracies = [r["test_accuracy"] for r in rows]
    summary = {"hidden_layer_sizes": args.hidden_layer_sizes, "dropout": args.dropout, "runs": rows,
               "mean_accuracy": statistics.fmean(accuracies),
               "sd_accuracy": statistics.stdev(accuracies) if len(rows) > 1 else 0.0}
    output = args.output or RESULTS / "tuned_final_seeds.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
