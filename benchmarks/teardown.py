"""What a process's exit costs after our imports: Python's own exit against ``interrupts.exit_process``.

A child process imports a set of modules, writes the time and ends, either
as Python ends (``sys.exit``: its teardown clears every module, then
TensorFlow's C++ destructors run) or through
:func:`mnist_mlp.interrupts.exit_process` (the same ``atexit`` handlers, then
``os._exit``), as the ``mnist-mlp`` command and a study's workers now do. The
figure is the wall time from that last line to the process's end as its
parent sees it, the median of ``--repeats`` runs, the two exits alternated
run by run so that both see the same machine load. Three sets of imports: the
estimator (TensorFlow: a fit, a study worker), MLflow with scikit-learn
(``mnist-mlp predict``), and the package alone.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/teardown.py --repeats 5

Writes ``benchmarks/results/teardown.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMPORTS = {"estimator (TensorFlow)": "import mnist_mlp.estimator",
           "mlflow + scikit-learn (predict)": "import mlflow.pyfunc, sklearn.pipeline",
           "mnist_mlp alone": "import mnist_mlp"}
EXITS = {"python": "sys.exit(0)", "exit_process": "interrupts.exit_process(0)"}


def once(imports, exit_line, env):
    code = (f"import sys, time\nfrom mnist_mlp import interrupts\n{imports}\n"
            f"sys.stdout.write(repr(time.time())); sys.stdout.flush()\n{exit_line}\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"{imports!r} / {exit_line!r} exited {done.returncode}: {done.stderr[-1500:]}")
    return ended - float(done.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "teardown.json")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    figures = {}
    for name, imports in IMPORTS.items():
        runs = {exit_name: [] for exit_name in EXITS}
        for _ in range(args.repeats):
            for exit_name, exit_line in EXITS.items():
                runs[exit_name].append(round(once(imports, exit_line, env), 3))
        medians = {exit_name: statistics.median(values) for exit_name, values in runs.items()}
        figures[name] = {"imports": imports, "seconds": runs, "median_s": medians,
                         "saved_s": round(medians["python"] - medians["exit_process"], 3)}
        print(f"{name}: exit {medians['python']:.2f} s with Python's teardown, "
              f"{medians['exit_process']:.2f} s with exit_process", flush=True)
    record = {"command": "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/teardown.py "
                         + " ".join(sys.argv[1:] if argv is None else argv),
              "repeats": args.repeats, "cpus": os.cpu_count(), "load_average_after": os.getloadavg()[0],
              "figures": figures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
