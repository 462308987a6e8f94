"""The MLflow UI over a quick study store, in a real headless browser: checked, then photographed.

Builds a quick study store (section 2.4.1 at 3 epochs on 3,000 images, and
``mnist-mlp tune`` with a small budget, which registers ``mnist-mlp@champion``),
serves it with ``mlflow server`` and opens it in Debian's Chromium through
Playwright (its Python driver only: Playwright's own browser download cannot
reach the internet here, so it drives ``/usr/bin/chromium``). It checks what a
person must see at a glance, and fails (exit status 1, naming what) if the UI
shows:

- a section's child runs without readable names (alpha, seed, fold: what varies, first),
  or any MLflow-generated name (``secretive-hog-987``);
- no logged model in the Models column or the Logged models tab;
- no ``champion`` alias on the registered ``mnist-mlp``.

Then it writes screenshots to ``docs/ui/``: the runs table, the chart view of
the section's learning curves, the Logged models tab, the registered champion.

    pip install -e '.[ui]'                     # playwright, the driver
    apt-get install chromium                   # Debian's browser
    python benchmarks/ui_screenshots.py --data-dir ../shared/data/mnist

``tests/test_ui.py`` runs the same checks on a smaller store. ``--run STORE_URI RUN_ID
--output PATH.png`` photographs one run's page of an existing store instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# MLflow's generated run names: adjective-animal-number.
GENERATED_NAME = re.compile(r"^[a-z]+-[a-z]+-\d{1,4}$")
VIEWPORT = {"width": 1600, "height": 1000}


def build_store(store, *, data_dir=None, epochs=3, n_train=3000, tune_epochs=3, final_epochs=2):
    """A quick study store in ``store``: section 2.4.1 and a small tune (a registered champion)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db", "MNIST_MLP_TRACKING": "1"}
    data = ["--data-dir", str(Path(data_dir).resolve())] if data_dir else []  # the CLI runs in store
    cli = [sys.executable, "-m", "mnist_mlp"]
    for args in (["study", "2.4.1", "--epochs", str(epochs), "--n-train", str(n_train)],
                 ["tune", "--epochs", str(tune_epochs), "--final-epochs", str(final_epochs), "--n-train", str(n_train)]):
        subprocess.run([*cli, *args, *data], env=env, cwd=store, check=True, capture_output=True, text=True)
    return f"sqlite:///{store}/mlflow.db"


@contextlib.contextmanager
def served(uri, workdir):
    """``mlflow server`` over ``uri`` on a free local port; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(Path(workdir) / "server.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {Path(workdir, 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _open(browser, url, *, wait_ms=4000):
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.wait_for_timeout(wait_ms)
    with contextlib.suppress(Exception):  # MLflow's assistant panel, where this version shows it
        page.get_by_role("button", name="Close").click(timeout=2000)
    with contextlib.suppress(Exception):  # the UI's "Model training" mode (it opens in "GenAI")
        page.get_by_text("Model training", exact=True).click(timeout=2000)
        page.wait_for_timeout(1000)
    return page


def _widen_run_names(page, pixels=240):
    header = page.locator(".ag-header-cell", has_text="Run Name").first
    box = header.locator(".ag-header-cell-resize").bounding_box()
    if box:
        page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + pixels, box["y"] + box["height"] / 2, steps=10)
        page.mouse.up()


def _expand(page, parent_name):
    """Open a parent run's children in the runs table (the tree toggle left of its name)."""
    link = page.get_by_text(parent_name).first
    box = link.bounding_box()
    page.mouse.click(box["x"] - 30, box["y"] + box["height"] / 2)
    page.wait_for_timeout(1500)


def check_and_photograph(url, uri, shots=None):
    """Check the UI (see the module docstring); write screenshots into ``shots`` if given.

    Returns
    -------
    list of str
        What is wrong; empty when the UI shows what it must.
    """
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    from mnist_mlp.study import load_experiment

    client = MlflowClient(uri)
    section = client.get_experiment_by_name(load_experiment("2.4.1").experiment_name)
    tuning = client.get_experiment_by_name(load_experiment("3").experiment_name)
    parent = client.search_runs([section.experiment_id], "tags.role = 'search'")[0]
    children = client.search_runs([section.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = _open(browser, f"{url}/#/experiments/{section.experiment_id}/runs")
            _expand(page, parent.info.run_name)
            _widen_run_names(page)
            shown = [line.split("\n") for line in page.locator(".ag-row").all_inner_texts()]
            names = {cell for row in shown for cell in row}
            for child in children:
                name = child.info.run_name
                if name not in names:
                    problems.append(f"child run {child.info.run_id} is not shown by its name {name!r}")
                if not re.fullmatch(r"alpha=[\d.e-]+ seed=\d+ fold=\d+", name or ""):
                    problems.append(f"child run name {name!r} does not lead with its alpha, then seed and fold")
            problems += [f"an MLflow-generated run name is shown: {n!r}" for n in names if GENERATED_NAME.match(n)]
            if not any(cell.startswith("model") for cell in names):
                problems.append("the runs table's Models column shows no logged model")
            if shots:
                page.screenshot(path=str(shots / "runs.png"))
                page.locator("input[type=radio][value=CHART]").dispatch_event("click")  # the chart view
                page.wait_for_timeout(5000)
                page.screenshot(path=str(shots / "chart.png"))
            page.close()

            page = _open(browser, f"{url}/#/experiments/{tuning.experiment_id}/models")
            with contextlib.suppress(Exception):  # in "Model training" mode the tab is the sidebar's "Models"
                page.get_by_text("Models", exact=True).first.click(timeout=3000)
                page.wait_for_timeout(3000)
            text = page.inner_text("body")
            # The logged models table: its own columns, and models READY.
            if not ("Source run" in text and "Ready" in text):
                problems.append("the Logged models tab shows no logged model")
            if shots:
                page.screenshot(path=str(shots / "logged_models.png"))
            page.close()

            page = _open(browser, f"{url}/#/models/mnist-mlp")
            text = page.inner_text("body")
            if "champion" not in text:
                problems.append("the registered model mnist-mlp shows no champion alias")
            if shots:
                page.screenshot(path=str(shots / "champion.png"))
            page.close()
        finally:
            browser.close()
    return problems


def photograph_run(store_uri, run_id, path):
    """A screenshot of one run's page (its parameters, metrics and tags) in a store that exists:
    e.g. ``mnist-mlp tune --budget``'s parent run, kept by ``benchmarks/tune_budget.py --keep``."""
    import mlflow
    from playwright.sync_api import sync_playwright

    experiment_id = mlflow.MlflowClient(store_uri).get_run(run_id).info.experiment_id
    with tempfile.TemporaryDirectory() as workdir, served(store_uri, workdir) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = _open(browser, f"{url}/#/experiments/{experiment_id}")  # the "Model training" mode first
            page.goto(f"{url}/#/experiments/{experiment_id}/runs/{run_id}")
            page.wait_for_timeout(8000)
            with contextlib.suppress(Exception):  # the assistant panel opens again on this page
                page.get_by_role("button", name="Close").click(timeout=2000)
            page.screenshot(path=str(path), full_page=True)
            page.get_by_text("Model metrics", exact=True).click()  # best_score_so_far by epochs trained
            page.wait_for_timeout(6000)
            page.screenshot(path=str(Path(path).with_name(Path(path).stem + "_metrics.png")), full_page=True)
        finally:
            browser.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: the embedded subset)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "ui")
    parser.add_argument("--run", nargs=2, metavar=("STORE_URI", "RUN_ID"),
                        help="only photograph this run's page in this store, to OUTPUT (a .png path)")
    args = parser.parse_args(argv)
    if args.run:
        photograph_run(*args.run, args.output)
        print(f"ui: {args.output}")
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as store:
        uri = build_store(store, data_dir=args.data_dir)
        with served(uri, store) as url:
            problems = check_and_photograph(url, uri, shots=args.output)
    for problem in problems:
        print(f"ui: {problem}", file=sys.stderr)
    print(f"ui: {'FAILED' if problems else 'ok'}; screenshots in {args.output}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
