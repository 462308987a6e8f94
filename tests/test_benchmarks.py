"""The committed benchmark scripts still fit the package's layout (they run for minutes, so
here only what they reach into is checked)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_tracking_overhead_stages_exist():
    bench = _load("tracking_overhead")
    for where, name, _ in bench.STAGES:
        module_name, _, owner = where.partition(":")
        module = importlib.import_module(f"mnist_mlp.{module_name}")
        target = getattr(module, owner) if owner else module
        assert callable(getattr(target, name)), (where, name)


def test_the_step_equivalence_script_reads_the_kernel_tests():
    bench = _load("step_equivalence")
    assert {"CASES", "GRADIENT_CASES", "UPDATE_CASES"} <= set(vars(bench.t))


def test_the_mutation_check_names_text_that_exists_once():
    spec = importlib.util.spec_from_file_location("_mutation_check", ROOT / "scripts" / "mutation_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert (ROOT / script.TEST).is_file()
    for name, _, path, text, _ in script.MUTANTS:
        assert (ROOT / path).read_text().count(text) == 1, name


@pytest.mark.slow
def test_the_gpu_crossover_script_writes_a_table_the_device_choice_reads(tmp_path, monkeypatch):
    """No GPU here: its CPU dry run checks the plumbing (the table it writes is one ``auto`` reads,
    under a device name no GPU has, so it never acts on it)."""
    from mnist_mlp.training import devices

    monkeypatch.delenv(devices.CROSSOVER_ENV, raising=False)
    monkeypatch.delenv("MNIST_MLP_DATA_DIR", raising=False)
    bench = _load("gpu_crossover")
    out = tmp_path / "crossover.json"
    # The embedded subset (no data directory), its first 2,000 images: tests never train on the full MNIST.
    assert bench.main(["--data-dir", "", "--n-train", "2000", "--cpu-dry-run", "--hidden", "16,16",
                       "--batch-sizes", "512", "--epochs", "2", "--output", str(out)]) == 0
    monkeypatch.setenv(devices.CROSSOVER_ENV, str(out))
    table = devices.crossover_table()
    assert table["device"] == "CPU (dry run)" and len(table["points"]) == 1
    assert table["points"][0][:2] == (devices.n_parameters([784, 16, 16, 10]), 512)
    faster = table["points"][0][3] < table["points"][0][2]
    assert (devices.gpu_choice([784, 16, 16, 10], 512, gpus=["CPU (dry run)"]) is not None) == faster
    assert devices.gpu_choice([784, 16, 16, 10], 512, gpus=["NVIDIA H200"]) is None


def test_the_budget_benchmark_reads_what_tune_budget_writes():
    """benchmarks/tune_budget.py reads run_budget_tuning's keys (the 15-minute run is the lead's)."""
    import inspect

    from mnist_mlp.study import run_budget_tuning

    bench = _load("tune_budget")
    documented = inspect.getdoc(run_budget_tuning)
    source = inspect.getsource(bench.main)
    for key in ("search_budget_s", "spent_s", "epochs", "fits", "best_score_history", "final_epochs",
                "final_estimate_s"):
        assert f'bought["{key}"]' in source and f"``{key}``" in documented, key
