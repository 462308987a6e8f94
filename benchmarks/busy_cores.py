"""A fit's time while another program keeps a core busy: the default threads against one thread.

Each variant is a fresh process fitting the default pipeline on the embedded
6,000 images (untracked), its ``fit_time_`` read back; variants alternate so
that they see the same machine load; a busy second program (``while True:
pass``) runs throughout, ended in a ``finally``. With ``--quiet`` the busy
program is left out. Reports every time, the medians and their ratio.

    python benchmarks/busy_cores.py --repeats 5 --epochs 10
    python benchmarks/busy_cores.py --variants default,MNIST_MLP_THREADS=1,MNIST_MLP_THREADS=2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

_FIT = """
import json, sys
from mnist_mlp import make_pipeline
from mnist_mlp.data import load_mnist
(x, y), _ = load_mnist(None, download=False)
pipe = make_pipeline(epochs=int(sys.argv[1]), random_state=0)
pipe.fit(x, y)
print(json.dumps({"fit_time_s": pipe[-1].fit_time_, "threads": getattr(pipe[-1], "n_threads_", None)}))
"""


def _variant_env(variant):
    env = {k: v for k, v in os.environ.items() if k not in ("MNIST_MLP_THREADS", "NUMBA_NUM_THREADS")}
    env["MNIST_MLP_TRACKING"] = "0"
    env.pop("MNIST_MLP_DATA_DIR", None)
    if variant != "default":
        key, _, value = variant.partition("=")
        env[key] = value
    return env


def _fit_once(variant, epochs):
    proc = subprocess.run([sys.executable, "-c", _FIT, str(epochs)], env=_variant_env(variant),
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--variants", default="default,NUMBA_NUM_THREADS=1",
                        help="comma-separated: 'default' or NAME=VALUE environment settings")
    parser.add_argument("--quiet", action="store_true", help="no busy second program")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    _fit_once(variants[0], 1)  # compiles (and caches) the kernels outside the timings
    busy = None if args.quiet else subprocess.Popen([sys.executable, "-c", "while True: pass"])
    times = {v: [] for v in variants}
    chosen = {v: [] for v in variants}
    try:
        time.sleep(1.0)  # the busy program is running before the first fit
        for _ in range(args.repeats):
            for variant in variants:
                result = _fit_once(variant, args.epochs)
                times[variant].append(result["fit_time_s"])
                chosen[variant].append(result["threads"])
                print(f"{variant}: {result['fit_time_s']:.2f} s, {result['threads']} threads", flush=True)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    print(f"os.cpu_count() {os.cpu_count()}; load average at the end {os.getloadavg()[0]:.1f}; "
          f"busy second program: {'no' if args.quiet else 'yes'}; {args.epochs} epochs")
    base = statistics.median(times[variants[0]])
    for variant in variants:
        median = statistics.median(times[variant])
        print(f"{variant:28s} median {median:6.2f} s  ratio to {variants[0]} {median / base:5.2f}  "
              f"threads {chosen[variant]}  times {[round(t, 2) for t in times[variant]]}")


if __name__ == "__main__":
    main()
