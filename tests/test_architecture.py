"""The layout holds: no module imports another module's private name, and other
folders reach a folder only through the names its ``__init__`` exports."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_mlp"
FOLDERS = ("training", "tracking", "model_selection", "study")
# Modules that exist to hold one library's internals, and may import them.
_PRIVATE_MODULES_ALLOWED = {"mnist_mlp._tensorflow", "mnist_mlp._switch"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("mnist_mlp", *path.relative_to(PACKAGE).with_suffix("").parts))
        yield name.removesuffix(".__init__"), ast.parse(path.read_text())


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_mlp"):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mnist_mlp"):
                    yield alias.name, []


def test_no_module_imports_another_modules_private_name():
    offences = []
    for name, tree in _modules():
        for module, names in _imports(tree):
            private = [n for n in names if n.startswith("_")]
            if private and module != name:
                offences.append(f"{name}: from {module} import {private}")
    assert not offences, offences


def test_other_folders_use_a_folder_through_its_contract():
    """``from mnist_mlp.<folder>.<module> import x`` from outside the folder is a
    reach past its ``__init__`` (the tracking folder's light ``values`` and the
    study's experiments are part of their contracts' modules and allowed)."""
    allowed = {"mnist_mlp.tracking.values", "mnist_mlp.study.experiments", "mnist_mlp.training.seeding"}
    offences = []
    for name, tree in _modules():
        for module, _ in _imports(tree):
            parts = module.split(".")
            if len(parts) >= 3 and parts[1] in FOLDERS and not name.startswith(f"mnist_mlp.{parts[1]}") \
                    and module not in allowed:
                offences.append(f"{name} imports {module}")
    assert not offences, offences


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_contract_name_resolves(folder):
    package = importlib.import_module(f"mnist_mlp.{folder}")
    assert package.__doc__ and len(package.__all__) >= 3
    for name in package.__all__:
        assert getattr(package, name) is not None, name


def test_importing_the_package_loads_neither_tensorflow_nor_mlflow():
    import subprocess
    import sys

    code = ("import sys, mnist_mlp, mnist_mlp.tracking, mnist_mlp.training, mnist_mlp.study, "
            "mnist_mlp.model_selection; print(sorted(m for m in ('tensorflow', 'mlflow', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert out == "[]", out
