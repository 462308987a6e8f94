"""A fit's time while another program keeps a core busy: the default threads against one thread.

Each variant is a fresh process fitting the default pipeline on the embedded
6,000 images (untracked), its ``fit_time_`` read back; variants alternate so
that they see the same machine load; a busy second program (``while True:
pass``) runs throughout, ended in a ``finally``. With ``--quiet`` the busy
program is left out. Reports every time, the medians and their ratio.

    python benchmarks/busy_cores.py --repeats 5 --epochs 10
    python benchmarks/busy_cores.py --variants default,MNIST_MLP_THREADS=1,MNIST_MLP_THREADS=2
    python benchmarks/busy_cores.py --variants default,MNIST_MLP_THREADS=2,MNIST_MLP_THREADS=1 \\
        --out benchmarks/results/busy_cores.json

Before the thread setting existed the default was every core: ``MNIST_MLP_THREADS=2``
on 2 cores reproduces it. ``--out`` also writes the table beside the JSON (``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    parser.add_argument("--out", default=None, help="write the figures to this .json (and the table to .md)")
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
    rows = []
    for variant in variants:
        median = statistics.median(times[variant])
        rows.append({"variant": variant, "median_s": median, "ratio": median / base, "threads": chosen[variant],
                     "times_s": times[variant]})
        print(f"{variant:28s} median {median:6.2f} s  ratio to {variants[0]} {median / base:5.2f}  "
              f"threads {chosen[variant]}  times {[round(t, 2) for t in times[variant]]}")
    if args.out:
        command = "python benchmarks/busy_cores.py " + " ".join(argv if argv is not None else sys.argv[1:])
        record = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
                  "machine": platform.processor() or platform.machine(), "busy_second_program": not args.quiet,
                  "epochs": args.epochs, "repeats": args.repeats, "load_average_end": os.getloadavg()[0],
                  "rows": rows}
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        lines = [f"# A fit beside a busy program: threads ({record['date']})", "",
                 f"`{command}`: the default pipeline on the embedded 6,000 images, {args.epochs} epochs, untracked, "
                 f"{'with' if not args.quiet else 'without'} a busy second program (`while True: pass`); "
                 f"{os.cpu_count()} cores; variants alternate, {args.repeats} fits each. "
                 "`MNIST_MLP_THREADS=2` is the default before the setting existed (every core).", "",
                 f"| variant | median fit time | / {variants[0]} | threads used | times (s) |",
                 "| --- | ---: | ---: | --- | --- |"]
        lines += [f"| {r['variant']} | {r['median_s']:.2f} s | {r['ratio']:.2f} | {r['threads']} | "
                  f"{', '.join(f'{t:.2f}' for t in r['times_s'])} |" for r in rows]
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
