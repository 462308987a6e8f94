"""Study sections side by side in worker processes: same results, longest first, stopped cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mnist_mlp.study import load_experiment
from mnist_mlp.study.side_by_side import STEP_COST_IN_ROWS, planned_work, run_side_by_side
from tests.helpers import child_process


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


@pytest.mark.parametrize("signum, status, line", [
    (signal.SIGINT, 130, "mnist-mlp: interrupted; the runs in progress were ended KILLED"),
    (signal.SIGTERM, 143, "mnist-mlp: terminated; the runs in progress were ended KILLED"),
])
def test_interrupting_the_study_stops_every_section_and_ends_their_runs_killed(tmp_path, signum, status, line):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    env.pop("MNIST_MLP_DATA_DIR", None)
    # Default SIGINT in the child whatever this process ignores (a background job ignores it);
    # the command and its workers are ended however the test ends.
    with child_process([sys.executable, "-m", "mnist_mlp", "study", "2.2,2.3", "--epochs", "100000",
                        "--n-train", "600", "--n-jobs", "2", "--json", str(tmp_path / "out.json")],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        # Workers of a fresh checkout compile the loop first (see test_cli's Ctrl-C test): wait for training.
        client, deadline = MlflowClient(uri), time.monotonic() + 600
        while time.monotonic() < deadline:  # wait until both sections train, with epochs logged
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            folds = [r for r in _all_runs(client) if r.data.tags.get("role") == "fold"] \
                if (tmp_path / "mlflow.db").exists() else []
            training = {r.data.tags.get("section") for r in folds if client.get_metric_history(r.info.run_id, "loss")}
            if training == {"2.2", "2.3"}:
                break
            time.sleep(0.5)
        proc.send_signal(signum)  # to the command only: it stops its workers itself
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == status, err[-2000:]
    assert err.strip().splitlines() == [line], err[-2000:]
    runs = _all_runs(client)
    assert {r.info.status for r in runs} == {"KILLED"}
    assert {r.data.tags.get("section") for r in runs} == {"2.2", "2.3"}
    assert not (tmp_path / "out.json").exists()  # no results written for an unfinished study


def test_the_command_line_runs_sections_side_by_side(tmp_path, tracked):
    from mnist_mlp.cli import main

    out = tmp_path / "study.json"
    assert main(["study", "2.3, 2.5.2", "--epochs", "1", "--n-train", "300", "--n-jobs", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [e["section"] for e in result["experiments"]] == ["2.3", "2.5.2"]
    assert {r.info.status for r in _all_runs(tracked)} == {"FINISHED"}
    assert main(["study", "2.3,2.3", "--epochs", "1"]) == 2  # each section once
