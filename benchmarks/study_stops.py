"""A study stopped at random moments: does it stop within 10 s, exit 130 (143), leave nothing RUNNING or alive?

Starts ``mnist-mlp study 2.2,2.3 --n-jobs 2`` (two quick sections side by
side, each in a worker process; the embedded data, 600 rows, epochs enough to
outlast the trial) in a process group of its own with a fresh SQLite store,
waits a random time (uniform in ``--earliest``..``--latest`` s after the start:
during imports, compilation, or training; with ``--moment training``, after
its first fit has opened its run), then stops it:

- ``--mode sigint``: SIGINT to the whole group, as Ctrl-C at a terminal does
  (expected exit status 130);
- ``--mode background``: started with SIGINT ignored, as a shell starts a
  background job; SIGINT to the group first (nothing must stop), then SIGTERM
  to the group, as ``kill %1`` does (expected exit status 143).

Each trial records the seconds from the stop to the command's exit and to the
last process of its group gone, its exit status, and the store's runs by
status 5 s later. ``--python`` picks the interpreter (another checkout's
virtualenv measures its code).

Usage::

    python benchmarks/study_stops.py --mode sigint --trials 25 --out benchmarks/results/study_stops_after_sigint.json
    python benchmarks/study_stops.py --python /work/before30/.venv/bin/python --mode background --trials 25 ...
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from interrupted_search import group_members, kill_group, running_folds, statuses  # noqa: E402  (the same store and group reads)

_LIMIT_S = 10.0


def _sigint(disposition):
    """A ``preexec_fn`` setting the command's SIGINT: this script may itself run as a background
    job (SIGINT ignored, which a child inherits), and the trial must not depend on that."""
    return lambda: signal.signal(signal.SIGINT, disposition)


def once(python, mode, folder, wait_s, moment="start"):
    db = Path(folder) / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MNIST_MLP_TRACKING": "1"}
    env.pop("MNIST_MLP_DATA_DIR", None)
    command = [python, "-m", "mnist_mlp", "study", "2.2,2.3", "--n-jobs", "2", "--epochs", "100000",
               "--n-train", "600"]
    log = Path(folder) / "stderr.txt"  # a file, not a pipe: a full pipe would block the command
    with open(log, "w") as stderr:
        disposition = signal.SIG_IGN if mode == "background" else signal.SIG_DFL
        child = subprocess.Popen(command, cwd=folder, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=stderr, preexec_fn=_sigint(disposition))
    pgid = child.pid
    ignored_sigint = None
    try:
        deadline = time.monotonic() + 300
        while moment == "training" and running_folds(db) < 1 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(wait_s)
        if mode == "background":
            os.killpg(pgid, signal.SIGINT)  # a Ctrl-C at the terminal does not reach a background job; if one did
            time.sleep(1.0)
            ignored_sigint = child.poll() is None
        started = time.monotonic()
        os.killpg(pgid, signal.SIGTERM if mode == "background" else signal.SIGINT)
        # Every member of the group until it is gone: when the command and each worker (and anything
        # else it started) were last seen, in seconds after the stop.
        rc, exit_s, seen = None, None, {}
        while time.monotonic() - started < 120:
            members = group_members(pgid)
            now = round(time.monotonic() - started, 2)
            for pid in members:
                with contextlib.suppress(psutil.Error):
                    seen.setdefault(pid, [" ".join(psutil.Process(pid).cmdline())[-100:], now])[1] = now
            if rc is None and (rc := child.poll()) is not None:
                exit_s = time.monotonic() - started
            if rc is not None and not members:
                break
            time.sleep(0.05)
        exit_s = exit_s if exit_s is not None else time.monotonic() - started
        gone_s = time.monotonic() - started
        left = group_members(pgid)
        time.sleep(5)
        runs = statuses(db)
        err = log.read_text()
    finally:
        kill_group(child)
    expected = 143 if mode == "background" else 130
    ok = (rc == expected and gone_s <= _LIMIT_S and not left and "RUNNING" not in runs
          and ignored_sigint in (None, True))
    return {"wait_s": round(wait_s, 2), "rc": rc, "exit_s": round(exit_s, 2), "all_gone_s": round(gone_s, 2),
            "processes_left": len(left), "last_seen_s": sorted(seen.values(), key=lambda m: m[1]),
            "runs_5s_later": runs, "ignored_sigint": ignored_sigint, "ok": ok,
            "stderr_tail": err.strip().splitlines()[-3:]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--mode", choices=["sigint", "background"], default="sigint")
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--earliest", type=float, default=1.0)
    parser.add_argument("--latest", type=float, default=25.0)
    parser.add_argument("--moment", choices=["start", "training"], default="start",
                        help="count the random wait from the command's start, or from its first fit training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    trials = []
    for _ in range(args.trials):
        with tempfile.TemporaryDirectory() as folder:
            trials.append(once(args.python, args.mode, folder, rng.uniform(args.earliest, args.latest), args.moment))
        print(json.dumps(trials[-1]), flush=True)
    summary = {
        "command": "mnist-mlp study 2.2,2.3 --n-jobs 2 --epochs 100000 --n-train 600",
        "python": args.python, "mode": args.mode, "moment": args.moment,
        "wait_s": [args.earliest, args.latest], "trials": len(trials),
        "ok": sum(t["ok"] for t in trials),
        "stopped_within_10s": sum(t["rc"] is not None and t["all_gone_s"] <= _LIMIT_S for t in trials),
        "expected_exit_status": sum(t["rc"] == (143 if args.mode == "background" else 130) for t in trials),
        "none_running": sum("RUNNING" not in t["runs_5s_later"] for t in trials),
        "no_process_left": sum(t["processes_left"] == 0 for t in trials),
        "max_all_gone_s": max(t["all_gone_s"] for t in trials),
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "trials": trials}, indent=1) + "\n")


if __name__ == "__main__":
    main()
