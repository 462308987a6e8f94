"""The MLflow UI in a real headless browser (Debian's Chromium, driven by Playwright).

Runs ``benchmarks/ui_screenshots.py``'s checks over a small study store: a
section's children show readable names, the Models column and the Logged
models tab show models, the registered ``mnist-mlp`` has its champion. Then
breaks the store on purpose (a child renamed as MLflow would name it) and
watches the check catch it. Skipped where Chromium or Playwright is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the ui extra (playwright) is not installed")
if not shutil.which("chromium"):
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # a browser, and the study store it reads


def _script():
    spec = importlib.util.spec_from_file_location("ui_screenshots", ROOT / "benchmarks" / "ui_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(900)
def test_the_ui_shows_named_runs_logged_models_and_the_champion(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from mnist_mlp.study import load_experiment

    monkeypatch.delenv("MNIST_MLP_DATA_DIR", raising=False)
    ui = _script()
    uri = ui.build_store(tmp_path, epochs=1, n_train=600, tune_epochs=3, final_epochs=1)
    shots = tmp_path / "shots"
    shots.mkdir()
    with ui.served(uri, tmp_path) as url:
        assert ui.check_and_photograph(url, uri, shots=shots) == []
        assert {p.name for p in shots.iterdir()} == {"runs.png", "chart.png", "logged_models.png", "champion.png"}
        # Broken on purpose: a child with MLflow's kind of name must be caught.
        client = MlflowClient(uri)
        section = client.get_experiment_by_name(load_experiment("2.4.1").experiment_name)
        child = client.search_runs([section.experiment_id], "tags.role = 'fold'")[0]
        client.set_tag(child.info.run_id, "mlflow.runName", "secretive-hog-987")
        problems = ui.check_and_photograph(url, uri)
    assert any("secretive-hog-987" in p for p in problems), problems
