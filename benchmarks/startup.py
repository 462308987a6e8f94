"""Start-up, before and after: ``mnist-mlp predict`` of one PNG, a served model ready, a 5-epoch fit, the import.

Each figure is the median of ``--repeats`` runs (wall seconds, the command as a
user types it), the two installs alternated run by run so that both see the
same machine load:

- ``fit``: ``mnist-mlp fit --epochs 5`` on the embedded data, tracked into a
  fresh SQLite store per install (its last run's model is the one below);
- ``predict``: ``mnist-mlp predict runs:/<id>/model digit.png``, one test image
  of the embedded data written as a PNG;
- ``serve``: ``mlflow models serve -m runs:/<id>/model --env-manager local``
  until its ``/invocations`` answers that PNG's pixels with the right label
  (``/ping`` polled every 0.1 s first); the server is killed in a ``finally``;
- ``import``: ``python -c "import mnist_mlp"``.

Each install runs with its own virtualenv (``--before``, ``--after``: a
``bin`` folder holding ``python``, ``mnist-mlp`` and ``mlflow``), with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; the BLAS kernel threadpoolctl
reports, the load average and the command are recorded.

Usage: python benchmarks/startup.py [--before /work/before30/.venv/bin] [--after .venv/bin]
       [--repeats 5] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ("predict", "serve", "fit", "import")


def _environment():
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.pop("MNIST_MLP_TRACKING", None)
    return env


def _timed(args, env, timeout=600):
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout


def _served(bin_dir, model_uri, image, label, env, timeout=300):
    """Seconds from ``mlflow models serve`` to its first right answer on ``/invocations``."""
    from tests.helpers import free_port, stop_group, wait_for_http

    port = free_port()
    args = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port)]
    body = json.dumps({"inputs": image[None].tolist()}).encode()
    start = time.perf_counter()
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        try:  # polled every 0.1 s: the figure is a start-up time
            wait_for_http(f"http://127.0.0.1:{port}/ping", server, timeout=timeout, poll_s=0.1)
        except RuntimeError as exc:  # the server exited: say why
            raise RuntimeError(f"{exc}: {server.stderr.read()[-2000:]}") from None
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            predictions = json.loads(answer.read())["predictions"]
        seconds = time.perf_counter() - start
        if predictions != [label]:
            raise RuntimeError(f"the served model answered {predictions}, not [{label}]")
        return seconds
    finally:
        stop_group(server)  # mlflow models serve starts uvicorn in its own process: the whole group
        server.stderr.close()


def _blas(bin_dir, env):
    code = ("import json, numpy, threadpoolctl; "
            "print(json.dumps([{k: i.get(k) for k in ('internal_api', 'architecture', 'version', 'num_threads')} "
            "for i in threadpoolctl.threadpool_info()]))")
    return json.loads(_timed([str(bin_dir / "python"), "-c", code], env)[1])


def _one_rep(side, bin_dir, png, image, label, env, results):
    """One run of each figure for one install; the fit's model is the one predicted and served."""
    seconds, out = _timed([str(bin_dir / "mnist-mlp"), "fit", "--epochs", "5"], env)
    results[side]["fit"].append(seconds)
    model_uri = re.search(r"mnist-mlp predict (runs:/\S+/model)", out).group(1)
    seconds, out = _timed([str(bin_dir / "mnist-mlp"), "predict", model_uri, str(png)], env)
    if out.split() != [str(label)]:
        raise RuntimeError(f"{side}: mnist-mlp predict printed {out!r}, not {label}")
    results[side]["predict"].append(seconds)
    results[side]["serve"].append(_served(bin_dir, model_uri, image, label, env))
    results[side]["import"].append(_timed([str(bin_dir / "python"), "-c", "import mnist_mlp"], env)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=Path("/work/before30/.venv/bin"))
    parser.add_argument("--after", type=Path, default=ROOT / ".venv/bin")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup.json")
    args = parser.parse_args(argv)
    sides = {"before": args.before.absolute(), "after": args.after.absolute()}
    results = {side: {name: [] for name in FIGURES} for side in sides}
    loads = []
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        tmp = Path(tmp)
        sys.path.insert(0, str(ROOT))
        from PIL import Image

        from mnist_mlp.data import load_embedded_mnist

        (_, _), (x_test, y_test) = load_embedded_mnist()
        image, label = x_test[0], int(y_test[0])
        png = tmp / "digit.png"
        Image.fromarray(image).save(png)
        envs = {}
        for side in sides:
            (tmp / side).mkdir()
            # The install's bin first on PATH: mlflow models serve runs its uvicorn from there.
            envs[side] = dict(_environment(), MLFLOW_TRACKING_URI=f"sqlite:///{tmp / side / 'mlflow.db'}",
                              PATH=f"{sides[side]}{os.pathsep}{os.environ.get('PATH', '')}")
        blas = {side: _blas(bin_dir, envs[side]) for side, bin_dir in sides.items()}
        for rep in range(args.repeats):
            for side, bin_dir in sides.items():
                os.chdir(tmp / side)  # mlflow models serve and fit write beside the store, not in the checkout
                _one_rep(side, bin_dir, png, image, label, envs[side], results)
                loads.append(os.getloadavg()[0])
                print(f"rep {rep + 1} {side}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results[side].items()),
                      flush=True)
        os.chdir(ROOT)
    summary = {side: {name: round(statistics.median(v), 3) for name, v in figures.items()}
               for side, figures in results.items()}
    report = {
        "command": "python benchmarks/startup.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "unit": "wall seconds, median of the runs",
        "median": summary,
        "runs": {side: {name: [round(s, 3) for s in v] for name, v in figures.items()}
                 for side, figures in results.items()},
        "installs": {side: str(bin_dir) for side, bin_dir in sides.items()},
        "blas": blas,
        "load_average_1min_after_each_rep": [round(v, 2) for v in loads],
        "cores": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
