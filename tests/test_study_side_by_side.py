"""Study sections side by side in worker processes: same results, longest first, stopped cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mnist_mlp.study import load_experiment
from mnist_mlp.study.side_by_side import STEP_COST_IN_ROWS, planned_work, run_side_by_side
from tests.helpers import child_process, error_lines


def _all_runs(client):
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_planned_work_counts_rows_and_weighs_each_optimizer_step():
    search = load_experiment("2.1").make_search(epochs=10)  # batch sizes 1, 256 and 48,000
    assert planned_work(search, 1000) == pytest.approx(
        10 * 1000 * ((1 + STEP_COST_IN_ROWS) + (1 + STEP_COST_IN_ROWS / 256) + (1 + STEP_COST_IN_ROWS / 1000)))
    grid = load_experiment("2.4.1").make_search(epochs=10)  # 3 alphas x 3 seeds at batch 256
    assert planned_work(grid, 1000) == pytest.approx(9 * 10 * 1000 * (1 + STEP_COST_IN_ROWS / 256))
    tuning = load_experiment("3").make_search()  # Hyperband: its own epochs budget, then two final networks
    assert planned_work(tuning, 1000, final_epochs=50, final_fits=2) == pytest.approx(
        (360 + 2 * 50) * 1000 * (1 + STEP_COST_IN_ROWS / 256))


@pytest.mark.slow
def test_sections_side_by_side_give_what_they_give_in_turn_and_start_longest_first(tracked, embedded):
    """Two sections at once, each in a worker process, under the caller's active run: the same
    runs, the same figures (to the bit) as one after the other, filed under that run."""
    import mlflow

    from mnist_mlp.study import run_experiment

    kwargs = {"epochs": 2, "n_train": 900}
    names = ["2.3", "2.5.2", "2.2"]  # 2.2 has two candidates: the most work, so it starts first
    started, finished = [], []
    with mlflow.start_run(run_name="caller") as caller:
        side = run_side_by_side(names, embedded, n_jobs=2, on_start=started.append,
                                on_done=lambda name, result: finished.append(name), **kwargs)
    assert started == ["2.2", "2.3", "2.5.2"] and sorted(finished) == sorted(names)
    assert [r["section"] for r in side] == names  # in the order asked for
    runs = [r for r in _all_runs(tracked) if r.info.run_id != caller.info.run_id]
    assert {r.info.status for r in runs} == {"FINISHED"}
    tops = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]  # the sections' searches
    assert {r.data.tags.get("launched_by") for r in tops} == {caller.info.run_id}  # in other experiments
    assert sorted(r.data.tags["section"] for r in tops) == sorted(names)

    in_turn = [run_experiment(name, embedded, resume=False, **kwargs) for name in names]
    for a, b in zip(side, in_turn):
        assert [r["params"] for r in a["results"]] == [r["params"] for r in b["results"]]
        assert [r["validation_score"] for r in a["results"]] == [r["validation_score"] for r in b["results"]]
    by_name = {}
    for run in _all_runs(tracked):
        if "test_accuracy" in run.data.metrics and run.data.tags.get("role") == "fold":
            # Names lead with what varies inside a section's experiment: two sections may share one.
            by_name.setdefault((run.info.experiment_id, run.info.run_name), []).append(
                run.data.metrics["test_accuracy"])
    assert by_name and all(len(v) == 2 and v[0] == v[1] for v in by_name.values()), by_name


@pytest.mark.slow
def test_a_failing_section_stops_the_others_and_raises_its_own_error(tracked, embedded):
    with pytest.raises(ValueError, match="grid.*unknown|Invalid parameter|parameter") as caught:
        run_side_by_side(["2.3", "2.2"], embedded, n_jobs=2, epochs=1, n_train=300,
                         grid={"classifier__no_such_parameter": [1]})
    assert any("in its worker process" in note for note in caught.value.__notes__)
    assert "RUNNING" not in {r.info.status for r in _all_runs(tracked)}


def test_refuses_a_progress_display_and_zero_jobs(embedded):
    with pytest.raises(ValueError, match="n_jobs"):
        run_side_by_side(["2.3"], embedded, n_jobs=0)
    with pytest.raises(ValueError, match="progress"):
        run_side_by_side(["2.3"], embedded, n_jobs=2, progress=lambda *a: None)


def _left(runs):
    """The runs not KILLED, described for an assertion message."""
    return [(r.info.run_name, r.data.tags.get("role"), r.data.tags.get("section"), r.info.status,
             r.data.tags.get("error")) for r in runs if r.info.status != "KILLED"]


class _Drained:
    """A child's stderr, read as it comes: a child (or its workers) writing more than a pipe holds
    never blocks on a test that is not reading, and what it wrote goes in the failure message."""

    def __init__(self, stream):
        self.chunks = []
        self.reader = threading.Thread(target=lambda: self.chunks.extend(iter(stream.readline, "")), daemon=True)
        self.reader.start()

    def text(self, wait=10):
        self.reader.join(wait)  # EOF once the command and its workers have all ended
        return "".join(self.chunks)


# Started as a background job is: SIGINT ignored, which the command and its workers inherit.
_SIGINT_IGNORED = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


@contextlib.contextmanager
def _study_training(tmp_path, sigint_ignored=False):
    """``study 2.2,2.3 --n-jobs 2`` in a child (default SIGINT unless ``sigint_ignored``, ended with
    its workers however the test ends): yields ``(process, client, stderr)`` once both sections
    train with epochs logged."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    env.pop("MNIST_MLP_DATA_DIR", None)
    start = [sys.executable, "-c", _SIGINT_IGNORED] if sigint_ignored else [sys.executable]
    with child_process([*start, "-m", "mnist_mlp", "study", "2.2,2.3", "--epochs", "100000",
                        "--n-train", "600", "--n-jobs", "2", "--json", str(tmp_path / "out.json")],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        stderr = _Drained(proc.stderr)
        # Workers of a fresh checkout compile the loop first (see test_cli's Ctrl-C test): wait for training.
        client, deadline = MlflowClient(uri), time.monotonic() + 600
        while time.monotonic() < deadline:
            assert proc.poll() is None, stderr.text()[-2000:]
            folds = [r for r in _all_runs(client) if r.data.tags.get("role") == "fold"] \
                if (tmp_path / "mlflow.db").exists() else []
            training = {r.data.tags.get("section") for r in folds if client.get_metric_history(r.info.run_id, "loss")}
            if training == {"2.2", "2.3"}:
                break
            time.sleep(0.5)
        yield proc, client, stderr


def _workers(proc):
    import psutil

    return [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, line", [
    (signal.SIGINT, 130, "mnist-mlp: interrupted; the runs in progress were ended KILLED"),
    (signal.SIGTERM, 143, "mnist-mlp: terminated; the runs in progress were ended KILLED"),
])
def test_interrupting_the_study_stops_every_section_and_ends_their_runs_killed(tmp_path, signum, status, line):
    with _study_training(tmp_path) as (proc, client, stderr):
        sent = time.monotonic()
        proc.send_signal(signum)  # to the command only: it stops its workers itself
        proc.wait(timeout=180)
        err = stderr.text()
    took = time.monotonic() - sent
    runs = _all_runs(client)
    assert proc.returncode == status, err[-2000:]
    assert error_lines(err) == [line], (err[-2000:], _left(runs), f"{took:.1f} s")
    assert {r.info.status for r in runs} == {"KILLED"}, (_left(runs), f"{took:.1f} s")
    assert {r.data.tags.get("section") for r in runs} == {"2.2", "2.3"}
    assert not (tmp_path / "out.json").exists()  # no results written for an unfinished study


@pytest.mark.slow
def test_a_study_started_as_a_background_job_ignores_ctrl_c_and_stops_on_sigterm(tmp_path):
    """SIGINT ignored by its parent (``mnist-mlp study ... &``): a Ctrl-C to the whole group stops
    nothing; SIGTERM to the whole group stops the command and every worker, runs KILLED."""
    import psutil

    with _study_training(tmp_path, sigint_ignored=True) as (proc, client, stderr):
        workers = _workers(proc)
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(3)
        assert proc.poll() is None and all(w.is_running() for w in workers), stderr.text()[-2000:]
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=180)
        gone, alive = psutil.wait_procs(workers, timeout=30)
        err = stderr.text()
    took = time.monotonic() - sent
    runs = _all_runs(client)
    assert proc.returncode == 143 and not alive, err[-2000:]
    assert error_lines(err) == ["mnist-mlp: terminated; the runs in progress were ended KILLED"], err[-2000:]
    assert {r.info.status for r in runs} == {"KILLED"}, (_left(runs), f"{took:.1f} s")


@pytest.mark.slow
def test_a_worker_that_dies_leaves_no_run_running(tmp_path):
    """A worker killed outright cannot end its runs: the command ends them KILLED, saying why,
    stops the other section, and fails naming the section."""
    with _study_training(tmp_path) as (proc, client, stderr):
        victim = _workers(proc)[0]
        victim.kill()
        proc.wait(timeout=180)
        err = stderr.text()
    runs = _all_runs(client)
    assert proc.returncode == 1, err[-2000:]
    assert "its worker process died (exit code -9)" in err, err[-2000:]
    assert {r.info.status for r in runs} == {"KILLED"}, _left(runs)
    died = [r for r in runs if "exit code -9" in r.data.tags.get("error", "")]
    assert died and len({r.data.tags["section"] for r in died}) == 1  # the dead worker's own runs
    assert f"study section {died[0].data.tags['section']}: its worker process ended (exit code -9)" in err


@pytest.mark.slow
def test_workers_stop_and_end_their_runs_when_the_command_is_killed(tmp_path):
    """``kill -9`` of the command: its workers notice, stop as if told to, and end their runs KILLED."""
    import psutil

    with _study_training(tmp_path) as (proc, client, stderr):
        workers = _workers(proc)
        assert len(workers) == 2
        proc.kill()
        proc.wait(timeout=60)
        # They stop within seconds; one that cannot ends its runs itself after the 60 s grace.
        gone, alive = psutil.wait_procs(workers, timeout=90)
        assert not alive, ("workers still running after their command was killed", stderr.text()[-3000:])
    runs = _all_runs(client)
    assert {r.info.status for r in runs} == {"KILLED"}, _left(runs)
    # Each worker stopped itself (its own stop request), not the fallback after the grace period.
    assert {r.data.tags.get("error") for r in runs} == {"Stopped: stopped by SIGTERM"}, _left(runs)


_STUCK_WORKER = """
import multiprocessing, sys, time

def worker(uri):
    from mnist_mlp import interrupts
    from mnist_mlp.study import side_by_side
    from mnist_mlp.tracking import FitRun

    side_by_side._STOP_GRACE_S = 2
    with interrupts.handled():
        FitRun.open(run_name="stuck", tracking_uri=uri)
        side_by_side._stop_when_orphaned()
        ready = False
        while True:  # a main thread that swallows every stop, from before it says it is ready
            try:
                if not ready:
                    ready = True  # (the stop comes only once "ready" is read: printed inside the try)
                    print("ready", flush=True)
                time.sleep(100)
            except BaseException:
                pass

if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=worker, args=sys.argv[1:], daemon=True)
    process.start()
    print(process.pid, flush=True)
    process.join()
"""


@pytest.mark.slow
def test_a_worker_that_cannot_stop_after_its_command_died_ends_its_runs_and_exits(tmp_path):
    """Nobody is left to end the runs of a worker whose command was killed and whose main thread
    does not stop: it ends them itself after the grace period, and exits."""
    import psutil
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    script = tmp_path / "command.py"
    script.write_text(_STUCK_WORKER)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    with child_process([sys.executable, script, uri], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True) as proc:
        stderr = _Drained(proc.stderr)
        worker = psutil.Process(int(proc.stdout.readline()))
        assert proc.stdout.readline().strip() == "ready", stderr.text()[-2000:]
        proc.kill()
        proc.wait(timeout=60)
        gone, alive = psutil.wait_procs([worker], timeout=60)
        assert not alive, "the stuck worker outlived its grace period"
    [run] = MlflowClient(uri).search_runs([e.experiment_id for e in MlflowClient(uri).search_experiments()])
    assert run.info.status == "KILLED", stderr.text()[-3000:]
    assert "did not stop within 2 s" in run.data.tags["error"]


@pytest.mark.slow
def test_the_command_line_runs_sections_side_by_side(tmp_path, tracked):
    from mnist_mlp.cli import main

    out = tmp_path / "study.json"
    assert main(["study", "2.3, 2.5.2", "--epochs", "1", "--n-train", "300", "--n-jobs", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [e["section"] for e in result["experiments"]] == ["2.3", "2.5.2"]
    assert {r.info.status for r in _all_runs(tracked)} == {"FINISHED"}
    assert main(["study", "2.3,2.3", "--epochs", "1"]) == 2  # each section once
