"""One section-3 search (validation accuracy), timed, tracked into a fresh store, on the full MNIST.

Run methods back to back on a quiet machine to compare their wall times:

    python benchmarks/tune_search_timing.py grid ../shared/data/mnist benchmarks/results/search_timing_grid.json
    python benchmarks/tune_search_timing.py hyperband ../shared/data/mnist benchmarks/results/search_timing_hyperband.json
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(method, data_dir, output):
    with tempfile.TemporaryDirectory() as store:
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        from mnist_mlp import load_mnist
        from mnist_mlp.study import load_experiment
        from mnist_mlp.study.runner import epochs_trained

        (x, y), _ = load_mnist(data_dir)
        search = load_experiment("3").make_search(method=method, scoring="accuracy")
        start = time.perf_counter()
        search.fit(x, y)
        wall = time.perf_counter() - start
        out = {"method": method, "scoring": "accuracy", "wall_time_s": round(wall, 1),
               "epochs_trained": epochs_trained(search), "n_fits": len(search.cv_results_["params"]),
               "best_params": {k: str(v) for k, v in search.best_params_.items()},
               "best_score": float(search.best_score_)}
    print(json.dumps(out))
    Path(output).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
