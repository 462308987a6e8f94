"""A served model under a bounded loopback load, and its answers to bad input.

Fits the study's pipeline on the embedded MNIST subset (tracking on, a fresh
SQLite store), serves it with ``mlflow models serve`` on 127.0.0.1, then:

1. each bad payload of tests/test_servers.py once: HTTP status and body size;
2. one request alone (the first pays for compiling the prediction kernel),
   then ``--threads`` clients sending ``--requests`` requests each (one image
   per request, 5 different images), all at once: errors, wrong answers,
   p50/p99 latency and throughput.

Usage: python benchmarks/serving_load.py [--threads 8] [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/serving_load"))
    args = parser.parse_args(argv)

    from tests.helpers import BIN, start_http_server
    from tests.test_servers import _bad_payloads, _post

    from mnist_mlp import load_mnist, make_pipeline

    (x_train, y_train), (x_test, y_test) = load_mnist()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.chdir(tmp)
        pipe = make_pipeline(epochs=args.epochs, random_state=0).fit(x_train, y_train)
        server, port = start_http_server(
            lambda port: [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{pipe.run_id_}/model",
                          "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            Path(tmp) / "serve.log", "/ping", env={"MLFLOW_TRACKING_URI": uri},
        )
        try:
            url = f"http://127.0.0.1:{port}/invocations"
            bad = {}
            for name, (payload, _) in _bad_payloads(x_test[0]).items():
                status, answer, size = _post(url, payload)
                bad[name] = {"status": status, "bytes": size, "message": answer.get("message", "")}
            images = x_test[:5]
            expected = pipe.predict(images).tolist()
            # The first request pays for compiling the prediction kernel (Numba): timed apart.
            start = time.perf_counter()
            first_status = _post(url, {"inputs": images[:1].tolist()})[0]
            first_ms = round(1000 * (time.perf_counter() - start), 1)

            def client(i):
                out = []
                for k in range(args.requests):
                    j = (i + k) % 5
                    start = time.perf_counter()
                    status, answer, _ = _post(url, {"inputs": images[j:j + 1].tolist()})
                    out.append((time.perf_counter() - start, status, answer.get("predictions"), j))
                return out

            start = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                results = [r for chunk in pool.map(client, range(args.threads)) for r in chunk]
            wall = time.perf_counter() - start
        finally:
            server.stop()
    latencies = sorted(r[0] for r in results)
    load = {
        "first_request_ms": first_ms, "first_request_status": first_status,
        "threads": args.threads, "requests_per_thread": args.requests, "requests": len(results),
        "errors": sum(r[1] != 200 for r in results),
        "wrong_answers": sum(r[1] == 200 and r[2] != [expected[r[3]]] for r in results),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "max_ms": round(1000 * latencies[-1], 1),
        "throughput_per_s": round(len(results) / wall, 1),
        "wall_s": round(wall, 2),
    }
    result = {"bad_payloads": bad, "load": load, "model_test_accuracy": float(pipe.score(x_test, y_test))}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| payload | HTTP | body bytes | message |", "|---|---:|---:|---|"]
    lines += [f"| {k} | {v['status']} | {v['bytes']} | {v['message'][-110:]} |" for k, v in bad.items()]
    lines += ["", "| " + " | ".join(load) + " |", "|" + "---:|" * len(load),
              "| " + " | ".join(str(v) for v in load.values()) + " |"]
    Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
