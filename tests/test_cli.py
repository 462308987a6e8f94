"""The mnist-mlp command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mnist_mlp.cli import main
from mnist_mlp.data import load_mnist
from tests.helpers import child_process, error_lines, run_child


def test_fit_on_embedded_data_writes_results(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_DATA_DIR", raising=False)
    out = tmp_path / "result.json"
    code = main(["fit", "--epochs", "3", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "from embedded" in printed and "test accuracy" in printed
    assert f"data: {load_mnist().describe()}\n" in printed  # the CLI's default is Python's, said alike
    assert "(3 epochs, 57 weight updates; compiled loop, " in printed
    result = json.loads(out.read_text())
    assert result["n_train"] == 6000 and result["epochs_run"] == 3
    assert result["weight_updates"] == 3 * 19  # ceil(4800 / 256) steps per epoch
    assert result["test_accuracy"] > 0.85


def test_fit_takes_the_dropout_papers_knobs(tmp_path, capsys, monkeypatch):
    """Input dropout, max-norm, a schedule, early stopping and shuffling reach the estimator from
    the command line, train in the compiled loop and are recorded in the JSON and the run."""
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MNIST_MLP_DATA_DIR", raising=False)
    monkeypatch.setenv("MNIST_MLP_TRACKING", "1")
    out, uri = tmp_path / "result.json", f"sqlite:///{tmp_path}/runs.db"
    assert main(["fit", "--epochs", "4", "--hidden-layer-sizes", "64", "--input-dropout", "0.2", "--dropout", "0.3",
                 "--max-norm", "3", "--learning-rate-schedule", "cosine", "--early-stopping",
                 "--n-iter-no-change", "2", "--tol", "0", "--shuffle", "yes", "--tracking-uri", uri,
                 "--json", str(out)]) == 0
    assert "compiled loop" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {k: result["params"][k] for k in ("input_dropout", "max_norm", "learning_rate", "early_stopping",
                                             "n_iter_no_change", "tol", "shuffle")} == {
        "input_dropout": 0.2, "max_norm": 3.0, "learning_rate": "cosine", "early_stopping": True,
        "n_iter_no_change": 2, "tol": 0.0, "shuffle": True}
    assert result["test_accuracy"] > 0.8
    run = MlflowClient(uri).get_run(result["run_id"])
    # the run's names: "learning_rate" is the initial rate there (as the study's runs say), as on the command line
    assert {k: run.data.params[k] for k in ("input_dropout", "max_norm", "learning_rate_schedule", "learning_rate",
                                            "early_stopping", "n_iter_no_change", "shuffle")} == {
        "input_dropout": "0.2", "max_norm": "3.0", "learning_rate_schedule": "cosine", "learning_rate": "0.001",
        "early_stopping": "true", "n_iter_no_change": "2", "shuffle": "true"}
    rates = [m.value for m in MlflowClient(uri).get_metric_history(result["run_id"], "learning_rate")]
    assert len(rates) == result["epochs_run"] and rates == sorted(rates, reverse=True) and rates[0] > rates[-1]


@pytest.mark.parametrize("argv", [["fit", "--max-norm", "big"], ["fit", "--early-stopping", "maybe"],
                                  ["fit", "--learning-rate-schedule", "linear"]])
def test_bad_knob_values_are_argument_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and argv[1] in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--alpha", "-1", "--penalty", "l2", "--epochs", "1"], "alpha"),
        (["fit", "--early-stopping", "--validation-split", "0", "--epochs", "1"], "early_stopping"),
        (["fit", "--input-dropout", "1.5", "--epochs", "1"], "input_dropout"),
        (["fit", "--data-dir", "/no/such/dir"], "does not exist"),
        (["fit", "--optimizer", "adamm"], "optimizer"),
    ],
)
def test_errors_are_reported_cleanly(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnist-mlp: error:") and message in err


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--hidden-layer-sizes", "128,x"])
    assert exc.value.code == 2
    assert "comma-separated" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_ends_the_run_killed_not_running(tmp_path):
    import os
    import signal
    import time

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    env.pop("MNIST_MLP_DATA_DIR", None)
    with child_process([sys.executable, "-m", "mnist_mlp", "fit", "--epochs", "100000"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        client, deadline = MlflowClient(uri), time.monotonic() + 200
        while time.monotonic() < deadline:  # wait until it trains, with epochs logged
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            runs = client.search_runs(["0"]) if (tmp_path / "mlflow.db").exists() else []
            if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "terminated" in err and "Traceback" not in err
    (run,) = client.search_runs(["0"])
    assert run.info.status == "KILLED"
    assert "SIGTERM" in run.data.tags["error"]


@pytest.mark.slow
def test_ctrl_c_ends_the_runs_killed_with_one_line_and_status_130(tmp_path):
    import os
    import signal
    import time

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1"}
    env.pop("MNIST_MLP_DATA_DIR", None)
    # The child answers SIGINT as at a terminal even when this test runs as a background job,
    # and is ended (with anything it started) however the test ends.
    with child_process([sys.executable, "-m", "mnist_mlp", "study", "2.2", "--epochs", "100000", "--n-train", "600"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        # A fresh checkout compiles the loop first (about 100 s on 2 idle cores, longer on a busy
        # machine; a signal cannot stop a compilation midway): wait until a fit trains.
        client, deadline = MlflowClient(uri), time.monotonic() + 600
        while time.monotonic() < deadline:  # wait until a fit trains, with epochs logged
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            runs = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
                    if r.data.tags.get("role") == "fold"] if (tmp_path / "mlflow.db").exists() else []
            if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    assert error_lines(err) == ["mnist-mlp: interrupted; the runs in progress were ended KILLED"], err[-2000:]
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.info.status for r in runs} == {"KILLED"} and len(runs) >= 2  # the search and its fit


def test_help_runs_as_a_module():
    proc = run_child([sys.executable, "-m", "mnist_mlp", "--help"])
    assert proc.returncode == 0 and "fit" in proc.stdout


def test_import_is_quick_and_tensorflow_free():
    code = "import sys, mnist_mlp; from mnist_mlp import load_mnist; print('tensorflow' in sys.modules)"
    proc = run_child([sys.executable, "-c", code])
    assert proc.stdout.strip() == "False"
    assert proc.stderr == ""


@pytest.mark.slow
def test_tensorflow_start_up_noise_is_hidden():
    code = "from mnist_mlp import MLPClassifier"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = run_child([sys.executable, "-c", code], env=env)
    assert proc.returncode == 0
    assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr


@pytest.mark.slow
def test_a_first_fit_into_a_new_store_prints_no_mlflow_set_up_noise(tmp_path):
    import os

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/new.db", "MNIST_MLP_TRACKING": "1"}
    env.pop("MNIST_MLP_DATA_DIR", None)
    proc = run_child([sys.executable, "-m", "mnist_mlp", "fit", "--epochs", "1"], env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "database tables" not in proc.stderr + proc.stdout and (tmp_path / "new.db").exists()


def test_study_command_runs_a_section_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    out = tmp_path / "study.json"
    assert main(["study", "2.3", "--epochs", "1.0", "--n-train", "300", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["experiments"][0]["section"] == "2.3" and result["wall_time_s"] > 0
    from mnist_mlp.study import load_experiment

    out = capsys.readouterr().out
    # The section's table: setting, seeds, ours beside the study's, the difference, fit time.
    assert "2.3 SGD" in out and "quick fidelity: 1 epoch, 300 training images" in out
    assert "accuracy % (ours)" in out and "accuracy % (study)" in out and "Δ pts" in out
    published = load_experiment("2.3").published[0]["accuracy"]
    assert f"{published:.2f}" in out and "Quick run: not comparable" in out


def test_study_all_is_the_studys_own_sections_and_section_4_runs_when_named(monkeypatch, capsys):
    from mnist_mlp import cli

    ran = []
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    monkeypatch.setattr(cli, "_study_in_turn", lambda names, splits, args: ran.append(names) or [])
    assert main(["study", "all"]) == 0 and main(["study", "4"]) == 0
    assert ran == [["2.1", "2.2", "2.3", "2.4.1", "2.4.2", "2.5.1", "2.5.2", "3"], ["4"]]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    assert "run only when named: 4 (the Dropout paper's MLPs)" in " ".join(capsys.readouterr().out.split())


def test_study_rejects_unknown_sections_before_any_work(capsys):
    assert main(["study", "2.9"]) == 2
    assert "unknown experiment '2.9'" in capsys.readouterr().err


def test_report_command(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/empty.db"
    assert main(["report", "--tracking-uri", uri, "--output", str(tmp_path / "r")]) == 0
    assert "Not run yet" in (tmp_path / "r" / "report.md").read_text()


def test_report_and_study_say_where_the_environment_differs_from_the_committed_reports(tmp_path, capsys,
                                                                                       monkeypatch):
    from mnist_mlp.study import environment

    committed = tmp_path / "committed.json"
    committed.write_text(json.dumps({"environment": {"numpy": ["1.0.0"]}}))
    monkeypatch.setattr(environment, "COMMITTED_REPORT", committed)
    uri = f"sqlite:///{tmp_path}/empty.db"
    assert main(["report", "--tracking-uri", uri, "--output", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "differs from the one the committed study report came from (numpy " in err
    assert "1.0.0 there" in err and "-c constraints.txt" in err
    committed.write_text(json.dumps({"environment": {}}))
    assert main(["report", "--tracking-uri", uri, "--output", str(tmp_path / "r")]) == 0
    assert "differs" not in capsys.readouterr().err


def test_progress_display_counts_fits_and_epochs(monkeypatch):
    from mnist_mlp.study.progress import _DISPLAYS, progress_display

    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    with progress_display("demo", 2, enabled=True) as callback:
        display = _DISPLAYS[callback.key]
        epochs = next(t for t in display.progress.tasks if t.id == display.epochs)
        assert not epochs.visible  # no "epochs 0/?" before a fit starts
        for _ in range(2):
            callback.set_params({"epochs": 3})
            callback.on_train_begin()
            assert epochs.visible and epochs.completed == 0 and epochs.total == 3
            assert "validation accuracy" not in epochs.fields["note"]  # never the previous fit's figure
            for epoch in range(3):
                callback.on_epoch_end(epoch, {"val_accuracy": 0.5})
            callback.on_train_end()
        callback.on_epoch_end(2, {"val_accuracy": 0.91234})
        callback.on_fit_reused()  # a fit resumed from a finished run: counted, and said
        tasks = {t.description: t for t in display.progress.tasks}
        assert tasks["demo"].completed == 3 and epochs.completed == 3
        assert tasks["demo"].fields["note"] == "1 reused"
        assert epochs.fields["note"] == "validation accuracy 0.9123"
    with progress_display("later", None, enabled=True) as callback:
        (task,) = [t for t in _DISPLAYS[callback.key].progress.tasks if t.description == "later"]
        assert not task.visible  # no "0/?" before the total is known
        callback.set_total(4)
        assert task.visible and task.total == 4
    with progress_display("quiet", 2, enabled=False) as callback:
        callback.on_train_end()  # no display: a no-op
    assert callback.key not in _DISPLAYS


def test_progress_names_the_fit_that_is_training(tmp_path, monkeypatch):
    from mnist_mlp.study.progress import _DISPLAYS, progress_display
    from mnist_mlp.tracking import FitRun

    monkeypatch.setenv("MNIST_MLP_TRACKING", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    with progress_display("study 2.4.1", 9, enabled=True) as callback:
        display = _DISPLAYS[callback.key]
        epochs = next(t for t in display.progress.tasks if t.id == display.epochs)
        with FitRun.open(run_name="alpha=0.1 seed=2 fold=0") as run, run.as_current():
            callback.set_params({"epochs": 3})
            callback.on_train_begin()
        assert epochs.description.strip() == "alpha=0.1 seed=2 fold=0"


@pytest.mark.slow
@pytest.mark.parametrize(
    "entry, params",
    [
        ("main", ["-P", "epochs=1", "-P", "hidden_layer_sizes=32", "-P", "penalty=l2"]),
        ("study", ["-P", "experiment=2.3", "-P", "epochs=1", "-P", "n_train=300"]),
    ],
)
def test_mlproject_entry_points(entry, params, tmp_path):
    """`mlflow run . --env-manager local -e ENTRY` works and files runs under the project's run."""
    import os
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    root = Path(__file__).resolve().parents[1]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MNIST_MLP_TRACKING": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = run_child([str(Path(sys.executable).parent / "mlflow"), "run", str(root), "--env-manager", "local",
                      "-e", entry, *params], env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs and {r.info.status for r in runs} == {"FINISHED"}
    project = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == entry]
    assert len(project) == 1
    linked = [r for r in runs if project[0].info.run_id in
              (r.data.tags.get("mlflow.parentRunId"), r.data.tags.get("launched_by"))]
    assert linked  # our runs hang below the project's run
    # Named after its command, and describing (linking) every run it started.
    assert project[0].info.run_name.startswith(f"mlflow run: {'fit' if entry == 'main' else 'study 2.3'}")
    note = project[0].data.tags["mlflow.note.content"]
    assert all(r.info.run_id in note for r in linked)
    if entry == "main":
        assert project[0].data.params["penalty"] == "l2"
        (fit,) = linked
        assert fit.info.run_name.startswith("MLP 32 adam") and " l2=" in fit.info.run_name
        assert fit.data.params["penalty"] == "l2" and "test_accuracy" in fit.data.metrics


def test_mlproject_passes_every_declared_parameter():
    """Every parameter an entry point declares appears in its command (a known MLflow-example bug)."""
    import re
    from pathlib import Path

    import yaml

    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "MLproject").read_text())
    for name, entry in project["entry_points"].items():
        used = set(re.findall(r"\{(\w+)\}", entry["command"]))
        assert used == set(entry["parameters"]), name


def test_the_cli_and_mlproject_defaults_are_the_estimators():
    """One source of defaults: the estimator's. The CLI's ``fit`` and MLproject's
    ``main`` may differ only where they say so (a seeded run by default)."""
    import inspect
    from pathlib import Path

    import yaml

    from mnist_mlp import MLPClassifier
    from mnist_mlp.cli import build_parser

    estimator = {name: p.default for name, p in inspect.signature(MLPClassifier).parameters.items()
                 if p.default is not inspect.Parameter.empty}
    deliberate = {"random_state": 0}  # the CLI and MLproject seed a run; the estimator leaves it to the user

    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    cli = {a.dest: a.default for a in fit._actions if a.dest in estimator}
    assert len(cli) >= 19, sorted(cli)
    for name, value in cli.items():
        assert value == deliberate.get(name, estimator[name]), (name, value, estimator[name])

    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "MLproject").read_text())
    main = {k: v["default"] for k, v in project["entry_points"]["main"]["parameters"].items()}
    names = {"learning_rate": "learning_rate_init", "learning_rate_schedule": "learning_rate"}
    from mnist_mlp.cli import _boolean, _optional_float
    as_estimator = {
        "hidden_layer_sizes": lambda v: tuple(int(s) for s in v.split(",")),
        "penalty": lambda v: None if v == "none" else v,
        "max_norm": _optional_float, "early_stopping": _boolean, "shuffle": _boolean,
        "epochs": int, "batch_size": int, "random_state": int, "n_iter_no_change": int,
    }
    compared = 0
    for key, value in main.items():
        name = names.get(key, key)
        if name in estimator:
            value = as_estimator.get(name, lambda v: v)(value)
            assert value == deliberate.get(name, estimator[name]), (key, value, estimator[name])
            compared += 1
    assert compared >= 18


@pytest.mark.parametrize("args", [
    ["study", "2.2", "--epochs", "0"], ["study", "2.2", "--n-train", "0"], ["study", "2.2", "--epochs", "-3"],
    ["study", "2.2", "--seeds", ","], ["tune", "--final-epochs", "0"], ["tune", "--n-train", "-1"],
])
def test_zero_or_negative_counts_are_refused(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "expected a positive whole number" in err or "expected at least one int" in err


def test_an_empty_count_keeps_the_studys_own_setting():
    """MLproject passes "" for a count not given."""
    from mnist_mlp.cli import build_parser

    args = build_parser().parse_args(["study", "2.2", "--epochs", "", "--n-train", "", "--seeds", ""])
    assert (args.epochs, args.n_train, args.seeds) == (None, None, None)


@pytest.mark.slow
def test_fit_says_where_its_run_is_and_predict_reads_it_back(tmp_path, capsys, monkeypatch):
    """--tracking-uri and --experiment file the run; the output names the store, the experiment and
    the mlflow ui line; predict loads the logged model and labels images through its contract."""
    import numpy as np
    from mlflow.tracking import MlflowClient
    from PIL import Image

    monkeypatch.delenv("MNIST_MLP_DATA_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MNIST_MLP_TRACKING", "1")
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--epochs", "2", "--verbose", "1", "--tracking-uri", "runs.db", "--experiment", "first try",
                 "--json", "fit.json"]) == 0
    printed = capsys.readouterr().out
    uri = f"sqlite:///{tmp_path / 'runs.db'}"
    run_id = json.loads((tmp_path / "fit.json").read_text())["run_id"]
    run = MlflowClient(uri).get_run(run_id)
    assert MlflowClient(uri).get_experiment(run.info.experiment_id).name == "first try"
    assert f"in experiment 'first try' of {uri}" in printed
    assert f"mlflow ui --backend-store-uri {uri}" in printed and f"/runs/{run_id}" in printed
    assert "\x1b[" not in printed and "Epoch 2/2" in printed  # Keras's bar, without colour codes off a terminal
    assert "MLFLOW_TRACKING_URI" not in os.environ  # main() leaves the environment as it found it

    (_, _), (x_test, y_test) = load_mnist()
    Image.fromarray(x_test[0]).save(tmp_path / "digit.png")
    np.save(tmp_path / "batch.npy", x_test[:4])
    np.save(tmp_path / "one.npy", x_test[1])  # one image, without its batch axis
    model = f"runs:/{run_id}/model"
    assert main(["predict", model, "digit.png", "batch.npy", "one.npy", "--tracking-uri", "runs.db"]) == 0
    labels = capsys.readouterr().out.split()
    expected = [x_test[0], *x_test[:4], x_test[1]]
    from mlflow.pyfunc import load_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    direct = load_model(model).predict(np.stack(expected))
    assert labels == [str(v) for v in direct] and len(labels) == 6
    assert main(["predict", model, "batch.npy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["labels"] == [int(v) for v in direct[1:5]]

    Image.fromarray(255 - x_test[0]).save(tmp_path / "photo.png")  # dark ink on light paper
    assert main(["predict", model, "photo.png"]) == 2
    assert "photo.png: input image 0 has a light background" in capsys.readouterr().err
    np.save(tmp_path / "scaled.npy", x_test[:2] / 255.0)
    assert main(["predict", model, "scaled.npy"]) == 2
    assert "scaled.npy: input looks scaled to [0, 1]" in capsys.readouterr().err
    assert main(["predict", "runs:/0123456789abcdef/model", "digit.png"]) == 2
    assert "cannot be loaded" in capsys.readouterr().err

    # The command itself (console_main: its exit skips the interpreter's teardown) ends, and prints
    # what main() printed; a hang in its exit (an idle thread pool's worker joined) once took 600 s.
    command = run_child([sys.executable, "-m", "mnist_mlp", "predict", model, "digit.png", "--tracking-uri", "runs.db"],
                        cwd=tmp_path, timeout=120)
    assert (command.returncode, command.stdout.split()) == (0, labels[:1]), command.stderr[-2000:]


def test_help_shows_the_defaults(capsys):
    from mnist_mlp.cli import build_parser

    for command, expected in (("fit", ["passes over the training data (default: 100)", "(default: 128,256)"]),
                              ("tune", ["(default: hyperband)"]), ("study", ["(default: 1)"])):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(e in text for e in expected), (command, text)


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("900", 900), ("2.5m", 150), (" 1H5M10S ", 3910),
    ("", None),  # MLproject's "not given"
])
def test_budget_durations_parse(text, seconds):
    from mnist_mlp.cli import build_parser

    assert build_parser().parse_args(["tune", "--budget", text]).budget == seconds


@pytest.mark.parametrize("text", ["15 minutes", "m", "1m1h", "-5m", "0s", "0", "15x", "h30"])
def test_a_bad_budget_is_an_argument_error(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", f"--budget={text}"])
    assert exit_info.value.code == 2
    assert "argument --budget: expected a duration" in capsys.readouterr().err


def test_a_budget_refuses_the_options_it_does_not_use_before_any_work(capsys):
    assert main(["tune", "--budget", "1m", "--method", "grid"]) == 2
    assert "tune --budget runs Hyperband over its own space" in capsys.readouterr().err
