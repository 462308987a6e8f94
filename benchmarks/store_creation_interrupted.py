"""A first fit cut by Ctrl-C while it makes a new SQLite store: are the user's later runs kept?

    python benchmarks/store_creation_interrupted.py --trials 6
    PYTHONPATH=<checkout of d42565d> python benchmarks/store_creation_interrupted.py --trials 6

Results: benchmarks/results/store_creation_interrupted_{before,after}.txt (this output, saved).

Each trial, in a fresh folder, three processes one after the other into the
same ``sqlite:///mlflow.db`` (issue 29's report):

1. a first fit of the package, sent SIGINT at a random moment (seeded) of
   the first 4.5 s after its imports: the store's creation, or the fit;
2. the user logs 3 runs with plain ``mlflow.start_run`` (named ``user run i``);
3. another fit of the package.

Prints, per trial, the moment of the interrupt, whether the ``.creating``
marker was left, what each later process ended with, the store's runs by
status and how many of the user's 3 runs are in it; then the totals.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FIT = textwrap.dedent("""
    import sys
    from mnist_mlp import make_pipeline
    from mnist_mlp.data import load_embedded_mnist
    # Imported before 'ready', so the signal falls in the fit: its first ~4 s make the store.
    import mlflow, mnist_mlp.tracking.runs, mnist_mlp.tracking.fit_logging, mnist_mlp.training.loop
    (x, y), _ = load_embedded_mnist()
    print("ready", flush=True)
    make_pipeline(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(x[:300], y[:300])
    print("fit done", flush=True)
""")

_USER = textwrap.dedent("""
    import mlflow
    for i in range(3):
        with mlflow.start_run(run_name=f"user run {i}"):
            mlflow.log_param("i", i)
    print("user runs done", flush=True)
""")


def _outcome(done):
    """"ok", or the last line of a failed process's stderr (its error)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return "ok" if done.returncode == 0 else f"exit {done.returncode}: {(lines or [''])[-1][:160]}"


def _counts(db):
    """Runs by status and the user's runs kept, read with sqlite3 (whatever state the store is in)."""
    if not db.exists():
        return {}, 0
    try:
        with sqlite3.connect(db) as con:
            statuses = dict(con.execute("SELECT status, count(*) FROM runs GROUP BY status"))
            users = con.execute("SELECT count(*) FROM runs WHERE name LIKE 'user run %'").fetchone()[0]
    except sqlite3.Error as exc:
        return {f"unreadable: {exc}": 1}, 0
    return statuses, users


def trial(folder, delay, env):
    db = folder / "mlflow.db"
    first = subprocess.Popen([sys.executable, "-c", _FIT], cwd=folder, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "ready", first.communicate()[1][-2000:]
        time.sleep(delay)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=300)
    finally:
        first.kill()
        first.wait()
    marker = (folder / "mlflow.db.creating").exists()
    user = subprocess.run([sys.executable, "-c", _USER], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    later = subprocess.run([sys.executable, "-c", _FIT], cwd=folder, env=env, capture_output=True, text=True,
                           timeout=300)
    statuses, users = _counts(db)
    return {"delay": delay, "marker": marker, "user": _outcome(user), "fit": _outcome(later), "statuses": statuses, "user_runs": users}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=float, default=4.5, help="seconds after the imports to draw the SIGINT in")
    args = parser.parse_args(argv)
    draw = random.Random(args.seed)
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db",
           "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    env.pop("MNIST_MLP_TRACKING", None)
    kept = total = 0
    for number in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="store-interrupted-") as folder:
            result = trial(Path(folder), round(draw.uniform(0, args.window), 2), env)
        kept, total = kept + result["user_runs"], total + 3
        print(f"trial {number}: SIGINT at {result['delay']:.2f}s, marker left: {result['marker']}, "
              f"runs by status {dict(sorted(result['statuses'].items()))}, user's runs kept "
              f"{result['user_runs']}/3\n    user: {result['user']}\n    later fit: {result['fit']}", flush=True)
    print(f"user's runs kept: {kept} of {total}")
    return 0 if kept == total else 1


if __name__ == "__main__":
    sys.exit(main())
