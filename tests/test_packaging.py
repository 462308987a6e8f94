"""Packaging metadata stays consistent: conda.yaml lists pyproject's dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _conda_pip_requirements():
    lines = (ROOT / "conda.yaml").read_text().splitlines()
    start = lines.index("  - pip:") + 1
    return {line.strip()[2:].strip() for line in lines[start:] if line.strip().startswith("- ")}


def test_conda_yaml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _conda_pip_requirements() == set(project["dependencies"])


def test_embedded_data_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "_data/*.npz" in config["tool"]["setuptools"]["package-data"]["mnist_mlp"]
    assert (ROOT / "mnist_mlp" / "_data" / "mnist_subset.npz").is_file()


def test_pipelines_install_inside_the_package_not_at_the_top_level():
    import importlib.util

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["package-dir"] == {"mnist_mlp.pipelines": "pipelines"}
    assert "pipelines" not in config["tool"]["setuptools"]["packages"]
    spec = importlib.util.find_spec("mnist_mlp.pipelines.l2_rmsprop")
    assert spec is not None and Path(spec.origin).resolve() == ROOT / "pipelines" / "l2_rmsprop.py"
