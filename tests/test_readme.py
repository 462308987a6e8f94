"""The README's and the documentation's shell examples run as written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _block_after(heading, page="README.md"):
    text = (ROOT / page).read_text()
    start = text.index(heading)
    return re.search(r"```bash\n(.*?)```", text[start:], re.S).group(1)


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, install_and_test = _block_after("## Set up and run").strip().splitlines()
    assert install_and_run.endswith(".venv/bin/mnist-mlp fit")
    assert install_and_test.endswith(".venv/bin/python -m pytest")
    assert install_and_test in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.slow
def test_the_serving_example_answers_digits_as_pasted(tmp_path):
    block = _block_after("## Serve a logged model", "docs/serving.md")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)  # the block's $PWD/.venv
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MNIST_MLP_TRACKING")}
    process = subprocess.Popen(["bash", "-euc", block], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=400)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the server, should `kill %1` have missed its children
        except ProcessLookupError:
            pass
    assert process.returncode == 0, err[-2000:]
    answer = json.loads(out.strip().splitlines()[-1])
    # The same model in this process, on the same example, and the example's true labels.
    import mlflow

    from mnist_mlp import load_mnist

    served = tmp_path / "served" / "model"  # what the block downloaded
    example = json.loads((served / "serving_input_example.json").read_text())["inputs"]
    expected = mlflow.pyfunc.load_model(str(served)).predict(example).tolist()
    assert answer == {"predictions": expected}, answer
    (_, y_train), _ = load_mnist()
    assert sum(p == t for p, t in zip(expected, y_train[:5])) >= 4  # a trained model, not chance
