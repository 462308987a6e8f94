"""``mnist-mlp tune --budget`` on the full MNIST, into a fresh store: what the budget bought.

Runs the command as a user types it (``mnist-mlp tune --budget 15m --data-dir
/work/shared/data/mnist``) in a temporary folder with its own SQLite store,
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, and writes one JSON: the
champion's parameters and test accuracy, the command's wall time against the
budget, the epochs and fits the search trained, its best validation score
after each rung (elapsed seconds, epochs so far, score), the final network's
epochs, the BLAS kernel threadpoolctl reports and the load average.

Usage: python benchmarks/tune_budget.py [--budget 15m] [--n-train N] [--data-dir /work/shared/data/mnist]
       [--out benchmarks/results/tune_budget.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _environment(store):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.pop("MNIST_MLP_TRACKING", None)  # tracked: the champion is registered in the fresh store
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    return env


def _blas(env):
    code = ("import json, numpy, threadpoolctl; "
            "print(json.dumps([{k: i.get(k) for k in ('internal_api', 'architecture', 'version', 'num_threads')} "
            "for i in threadpoolctl.threadpool_info()]))")
    return json.loads(subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True,
                                     check=True).stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="15m", help="as mnist-mlp tune --budget takes it")
    parser.add_argument("--n-train", help="only the first N training images (a quick check)")
    parser.add_argument("--data-dir", default="/work/shared/data/mnist")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tune_budget.json"))
    parser.add_argument("--keep", metavar="DIR", help="a new folder to keep the store in (to open it in mlflow ui)")
    args = parser.parse_args(argv)
    if args.keep:
        Path(args.keep).mkdir(parents=True)  # new: the store must be fresh
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="tune_budget_")) \
            as folder:
        env = _environment(Path(folder, "mlflow.db"))
        shown = ["mnist-mlp", "tune", "--budget", args.budget, "--data-dir", args.data_dir,
                 *(["--n-train", args.n_train] if args.n_train else [])]
        command = [str(BIN / "mnist-mlp"), *shown[1:], "--json", str(Path(folder, "result.json"))]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        result = json.loads(Path(folder, "result.json").read_text())
        blas = _blas(env)
    bought, final = result["budget"], result["final"]
    record = {
        "command": "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE MLFLOW_TRACKING_URI=<fresh store> " + " ".join(shown),
        "benchmark": "python benchmarks/tune_budget.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "budget_s": bought["budget_s"],
        "wall_time_s": round(wall, 1),
        "within": f"{wall / bought['budget_s']:.3f} of the budget (command start to exit, imports included)",
        "champion": {"params": final["params"], "test_accuracy": final["test_accuracy"],
                     "test_f1_macro": final["test_f1_macro"], "registered": final.get("registered"),
                     "final_epochs": bought["final_epochs"], "final_estimate_s": bought["final_estimate_s"]},
        "search": {"budget_s": bought["search_budget_s"], "spent_s": bought["spent_s"], "epochs": bought["epochs"],
                   "fits": bought["fits"], "best_validation_score": result["searches"]["accuracy"]["best_score"],
                   "best_score_history": [{"elapsed_s": round(t, 1), "epochs": e, "best_score": s}
                                          for t, e, s in bought["best_score_history"]]},
        "blas": blas,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".json.tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, out)  # a whole file or none
    print(json.dumps({k: record[k] for k in ("wall_time_s", "budget_s", "champion")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
