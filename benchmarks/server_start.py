"""How long the tests' ``mlflow server`` takes to answer, with and without MLflow's job runner.

MLflow 3's ``mlflow server`` starts, beside the tracking server, a job runner for its GenAI
jobs (a Huey consumer per queue, each a Python importing MLflow); the tests use none of it and
start theirs with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` (``tests/helpers.py``). This
starts the server the way the tests do, alternately with the runner on and off, and times
until ``/health`` answers and from SIGTERM until the server and all it started have ended.

    python benchmarks/server_start.py --repeats 3
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def _once(jobs):
    from mlflow.tracking import MlflowClient

    from tests.helpers import BIN, start_http_server

    folder = Path(tempfile.mkdtemp(prefix="server_start_"))
    started = time.monotonic()
    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                      "--backend-store-uri", f"sqlite:///{folder}/server.db",
                      "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
        folder / "server.log", "/health", env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": jobs})
    ready = time.monotonic() - started
    try:
        MlflowClient(f"http://127.0.0.1:{port}").search_experiments()  # a request served, as in a test
    finally:
        stopping = time.monotonic()
        server.stop()
    return ready, time.monotonic() - stopping


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    times = {"true": [], "false": []}
    for _ in range(args.repeats):
        for jobs in times:  # alternated, so that a change in the machine's load hits both alike
            times[jobs].append(_once(jobs))
            print(f"job runner {'on' if jobs == 'true' else 'off'}: ready {times[jobs][-1][0]:.1f} s, "
                  f"stopped {times[jobs][-1][1]:.1f} s", flush=True)
    result = {
        "what": "mlflow server (SQLite, --workers 1) as tests/helpers.start_mlflow_server starts it",
        "cpus": os.cpu_count(), "load_average_1min_at_end": os.getloadavg()[0], "repeats": args.repeats,
        **{f"job_runner_{'on' if jobs == 'true' else 'off'}": {
            "ready_s": [round(r, 1) for r, _ in runs], "stopped_s": [round(s, 1) for _, s in runs],
            "ready_median_s": round(statistics.median(r for r, _ in runs), 1),
            "stopped_median_s": round(statistics.median(s for _, s in runs), 1)} for jobs, runs in times.items()},
    }
    (RESULTS / "server_start.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
