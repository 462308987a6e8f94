"""The same search locally and on a local 2-worker Dask cluster, and the cost of a task.

Starts, on 127.0.0.1, an MLflow server, a Dask scheduler and two
single-threaded workers (one TensorFlow thread each), then times:

- a 4-candidate x 2-fold GridSearchCV of the default pipeline (1,000 embedded
  images, 2 epochs) run locally with n_jobs=1, locally with n_jobs=2, and on
  the cluster (fits re-run each time: resume off);
- the scheduler's overhead per task: 200 no-op tasks through the same joblib
  Dask backend the searches use.

    python benchmarks/cluster_overhead.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent

GRID = {"classifier__learning_rate_init": [1e-3, 1e-2], "classifier__hidden_layer_sizes": [(16,), (32,)]}


def _noop():
    return None


def main():
    from tests.helpers import ServerProcess, start_mlflow_server

    tmp = Path(tempfile.mkdtemp(prefix="cluster_bench_"))
    env = {"MNIST_MLP_TF_THREADS": "1"}
    mlflow_server, uri = start_mlflow_server(tmp)
    scheduler_file = tmp / "scheduler.json"  # port 0: the scheduler picks its port and writes it here
    procs = [
        mlflow_server,
        ServerProcess([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                       "--scheduler-file", str(scheduler_file), "--no-dashboard"], tmp / "sched.log", env=env),
    ]
    deadline = time.monotonic() + 60
    while not scheduler_file.is_file() or not scheduler_file.read_text().strip():
        if time.monotonic() > deadline or procs[1].process.poll() is not None:
            sys.exit(procs[1].output())
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    procs += [ServerProcess([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                             "--host", "127.0.0.1"], tmp / f"w{i}.log", env=env) for i in range(2)]
    try:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        import joblib
        from distributed import Client

        from mnist_mlp import GridSearchCV, load_embedded_mnist, make_pipeline
        from mnist_mlp.model_selection import on_cluster

        with Client(address) as c:
            c.wait_for_workers(2, timeout=60)
        (x, y), _ = load_embedded_mnist()
        x, y = x[:1000], y[:1000]

        def search(n_jobs=None):
            s = GridSearchCV(make_pipeline(epochs=2, random_state=0), GRID, cv=2, n_jobs=n_jobs)
            s.set_params(resume=False)
            start = time.perf_counter()
            s.fit(x, y)
            return time.perf_counter() - start, s

        search(1)  # warm-up: imports and graph tracing in this process
        local_1, s1 = search(1)
        local_2, _ = search(2)
        with on_cluster(address):
            search()  # warm-up: workers import TensorFlow
            cluster_t, s3 = search()
            per_task = []
            for _ in range(3):
                start = time.perf_counter()
                joblib.Parallel()(joblib.delayed(_noop)() for _ in range(200))
                per_task.append((time.perf_counter() - start) / 200)
        result = {
            "search": "4 candidates x 2 folds (+ refit), default pipeline, 1,000 images, 2 epochs",
            "local_n_jobs_1_s": round(local_1, 2),
            "local_n_jobs_2_s": round(local_2, 2),
            "cluster_2_workers_s": round(cluster_t, 2),
            "speedup_cluster_over_local_n_jobs_1": round(local_1 / cluster_t, 2),
            "speedup_cluster_over_local_n_jobs_2": round(local_2 / cluster_t, 2),
            "command": "python benchmarks/cluster_overhead.py",
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "same_scores": bool((s1.cv_results_["mean_test_score"] == s3.cv_results_["mean_test_score"]).all()),
            "scheduler_overhead_per_task_ms": round(1000 * statistics.median(per_task), 2),
        }
    finally:
        for p in procs:
            p.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
