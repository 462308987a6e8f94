"""One of section 4's rows (the Dropout paper's 3 x 1024 MLPs) on the full MNIST, seed by seed.

Section 4 (``pipelines/dropout_paper.py``) trains every row with every seed as
one search; this trains one row's network alone per seed, untracked, and
records what the issue asks of the dropout + max-norm row: test accuracy on
MNIST's 10,000 test images per seed and their mean, the epochs, each fit's wall
time, the loop that trained it and the BLAS kernel. Reads the full MNIST
(``--data-dir``, default ../shared/data/mnist).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dropout_paper_row.py --row 2 --seeds 0 1 2 --epochs 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ["MNIST_MLP_TRACKING"] = "0"  # a benchmark of the training, not of the store

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", type=int, default=2, help="index in pipelines/dropout_paper.ROWS "
                                                           "(0: no dropout, 1: dropout, 2: dropout + max-norm)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--out", type=Path, default=RESULTS / "dropout_paper_row.json")
    args = parser.parse_args(argv)
    import threadpoolctl

    from mnist_mlp import evaluate, load_mnist
    from mnist_mlp.pipelines.dropout_paper import PUBLISHED, ROWS
    from mnist_mlp.study import load_experiment

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir)
    row = ROWS[args.row]
    runs = []
    for seed in args.seeds:
        pipe = load_experiment("4").make_search(epochs=args.epochs, seeds=(seed,)).estimator
        pipe.set_params(**row, classifier__random_state=seed)
        start = time.perf_counter()
        pipe.fit(x_train, y_train)
        wall = time.perf_counter() - start
        scores = evaluate(pipe, x_test, y_test)
        clf = pipe["classifier"]
        runs.append({"seed": seed, "test_accuracy": scores["test_accuracy"], "epochs": clf.n_iter_,
                     "fit_wall_s": round(wall, 1), "training_loop": clf.training_loop_,
                     "final_training_loss": clf.loss_curve_[-1]})
        print(runs[-1], flush=True)
    accuracies = [r["test_accuracy"] for r in runs]
    record = {
        "command": "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/dropout_paper_row.py "
                   + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "row": {k.removeprefix("classifier__"): v for k, v in row.items()},
        "network": pipe["classifier"].get_params()["hidden_layer_sizes"],
        "paper_accuracy": next(p["accuracy"] for p in PUBLISHED if p["params"] == row),
        "train_rows": len(x_train), "test_rows": len(x_test), "runs": runs,
        "mean_test_accuracy": statistics.fmean(accuracies),
        "sd_test_accuracy": statistics.stdev(accuracies) if len(runs) > 1 else 0.0,
        "blas": [{k: i.get(k) for k in ("internal_api", "architecture", "num_threads")}
                 for i in threadpoolctl.threadpool_info()],
        "load_average_after": os.getloadavg()[0], "cpus": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("mean_test_accuracy", "sd_test_accuracy", "paper_accuracy")}))


if __name__ == "__main__":
    main()
