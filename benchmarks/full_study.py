"""The whole study at full fidelity into a fresh store, timed, then its report.

Runs ``mnist-mlp study all --n-jobs N`` on the full MNIST (every section at
the study's own settings, N sections side by side, N = the cores by default;
section 3 by the default Hyperband with both final protocols),
then section 2.5.1 again over seeds 3-7 (the report pools them with seeds
0-2: its finding needs at least 6 seeds), then ``mnist-mlp report`` into
``benchmarks/results/study_report/``. Records each command's wall time and
the BLAS kernel in ``benchmarks/results/study_summary.json``.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/full_study.py \\
        --data-dir ../shared/data/mnist --store /tmp/full_study
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--store", type=Path, required=True, help="a new folder for the MLflow store")
    parser.add_argument("--report", type=Path, default=RESULTS / "study_report")
    parser.add_argument("--summary", type=Path, default=RESULTS / "study_summary.json")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count(), help="sections (fits) at once")
    args = parser.parse_args(argv)
    import numpy as np
    from threadpoolctl import threadpool_info

    np.ones((2, 2)) @ np.ones((2, 2))  # loads NumPy's BLAS, so that threadpoolctl sees which kernel

    args.store.mkdir(parents=True, exist_ok=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{args.store.resolve()}/mlflow.db",
           "MNIST_MLP_TRACKING": "1"}
    cli = [sys.executable, "-m", "mnist_mlp"]
    steps = [
        ("study all", ["study", "all", "--n-jobs", str(args.n_jobs), "--data-dir", args.data_dir,
                       "--json", str(args.store / "study_all.json")]),
        ("study 2.5.1, seeds 3-7", ["study", "2.5.1", "--seeds", "3,4,5,6,7", "--n-jobs", str(args.n_jobs),
                                    "--data-dir", args.data_dir,
                                    "--json", str(args.store / "study_2.5.1_more_seeds.json")]),
        ("report", ["report", "--output", str(args.report)]),
    ]
    timings = []
    for label, command in steps:
        start = time.perf_counter()
        done = subprocess.run([*cli, *command], env=env, cwd=args.store, text=True, capture_output=True)
        wall = time.perf_counter() - start
        (args.store / f"{label.split(',')[0].replace(' ', '_')}.log").write_text(done.stdout + done.stderr)
        print(done.stdout, end="")
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
        timings.append({"step": label, "wall_time_s": round(wall, 1)})
    sections = json.loads((args.store / "study_all.json").read_text())["experiments"]
    summary = {
        "what": "the whole study at full fidelity (study all), 2.5.1 over seeds 3-7, the report",
        "n_jobs": args.n_jobs,
        "cores": os.cpu_count(),
        "steps": timings,
        "study_all_wall_time_s": timings[0]["wall_time_s"],
        "sections": [{"section": s["section"], "wall_time_s": round(s["wall_time_s"], 1)} for s in sections],
        "blas": [(i.get("internal_api"), i.get("architecture")) for i in threadpool_info()],
        "command": "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/full_study.py "
                   f"--data-dir {args.data_dir} --store {args.store} --n-jobs {args.n_jobs}",
    }
    args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
