"""The mnist-mlp command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mnist_mlp.cli import main


def test_fit_on_embedded_data_writes_results(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MNIST_MLP_DATA_DIR", raising=False)
    out = tmp_path / "result.json"
    code = main(["fit", "--epochs", "3", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "from embedded" in printed and "test accuracy" in printed
    result = json.loads(out.read_text())
    assert result["n_train"] == 6000 and result["epochs_run"] == 3
    assert result["weight_updates"] == 3 * 19  # ceil(4800 / 256) steps per epoch
    assert result["test_accuracy"] > 0.85


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "--alpha", "-1", "--penalty", "l2", "--epochs", "1"], "alpha"),
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


def test_help_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "mnist_mlp", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "fit" in proc.stdout


def test_import_is_quick_and_tensorflow_free():
    code = "import sys, mnist_mlp; from mnist_mlp import load_mnist; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False"
    assert proc.stderr == ""


def test_tensorflow_start_up_noise_is_hidden():
    code = "from mnist_mlp import MLPClassifier"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr
