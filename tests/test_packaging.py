"""Packaging metadata stays consistent: conda.yaml and python_env.yaml list pyproject's dependencies."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _conda_pip_requirements():
    lines = (ROOT / "conda.yaml").read_text().splitlines()
    start = lines.index("  - pip:") + 1
    return {line.strip()[2:].strip() for line in lines[start:] if line.strip().startswith("- ")}


def test_conda_yaml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _conda_pip_requirements() == set(project["dependencies"])


def test_python_env_yaml_matches_pyproject_and_is_the_projects_environment():
    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    assert set(env["dependencies"]) == set(project["dependencies"])
    assert yaml.safe_load((ROOT / "MLproject").read_text())["python_env"] == "python_env.yaml"


def _pins():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(";")[0].strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_constraints_pin_every_dependency_within_pyprojects_ranges():
    """The pins (scripts/update_pins.sh) stay a resolution of pyproject.toml: every requirement of the
    package and of the extras the README and CI install is pinned, to a version its range allows."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = _pins()
    for text in [*project["dependencies"], *extras["test"], *extras["docs"], *extras["dask"], *extras["ui"]]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt: run scripts/update_pins.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}: run scripts/update_pins.sh")


@pytest.mark.slow
def test_a_source_checkout_runs_without_installing(tmp_path):
    """`mlflow run .`'s own environment has the dependencies, not the package: python -m
    mnist_mlp from the checkout must still find the study's pipelines/ folder."""
    import subprocess
    import sys

    script = ("import sys\n"  # the editable install's finder off: as if the package were not installed
              "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(getattr(f, '__module__', '')).lower()]\n"
              "import mnist_mlp.pipelines.l2_rmsprop as m\n"
              "print(m.__file__)\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve() == ROOT / "pipelines" / "l2_rmsprop.py"


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
