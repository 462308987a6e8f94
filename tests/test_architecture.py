"""The layout holds: no module imports another module's private name, and other
folders reach a folder only through the names its ``__init__`` exports."""

from __future__ import annotations

import ast
import importlib
import importlib.util
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


# -- layers and cycles -------------------------------------------------------------

#: The package's layers, lowest first: a module may import its own layer's modules
#: and those below, never one above. A name stands for a module or a folder.
LAYERS = (
    # the foundation: switches, the heavy libraries' one doors, data, plots, saved state,
    # the one reach into scikit-learn's search internals
    ("mnist_mlp", "mnist_mlp._lazy", "mnist_mlp._switch", "mnist_mlp.interrupts", "mnist_mlp._tensorflow",
     "mnist_mlp.data", "mnist_mlp.preprocessing", "mnist_mlp.plots", "mnist_mlp.persistence",
     "mnist_mlp.sklearn_internals"),
    ("mnist_mlp.training", "mnist_mlp.network", "mnist_mlp.inference"),  # the network: its loops, its forward pass
    ("mnist_mlp.serving",),  # a logged model's loader and input contract
    ("mnist_mlp.tracking",),  # every fit an MLflow run
    ("mnist_mlp.estimator", "mnist_mlp.evaluation"),
    ("mnist_mlp.pipeline", "mnist_mlp.model_selection"),
    ("mnist_mlp.study",),
    ("mnist_mlp.cli", "mnist_mlp.__main__"),
)


def _layer(module):
    matches = [(len(name), i) for i, layer in enumerate(LAYERS) for name in layer
               if module == name or (name != "mnist_mlp" and module.startswith(name + "."))]
    return max(matches)[1] if matches else None


def _import_graph():
    """``{module: modules it imports}``, at module level and inside functions alike.

    Both count: a function-level import defers loading (to keep ``import
    mnist_mlp`` light), it does not remove the dependency. A name a package
    exports lazily (``from mnist_mlp.tracking import decide``) counts as an
    import of the module that defines it.
    """
    trees = dict(_modules())

    def target(module, name):
        if f"{module}.{name}" in trees:
            return f"{module}.{name}"
        exports = getattr(importlib.import_module(module), "_EXPORTS", {}) if module in trees else {}
        if name in exports:
            return exports[name] if exports[name].startswith("mnist_mlp.") else f"{module}.{exports[name]}"
        return module

    graph = {}
    for name, tree in trees.items():
        imported = set()
        for module, names in _imports(tree):
            imported |= {target(module, n) for n in names} if names else {module}
        graph[name] = imported - {name}
    return graph


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, found = {}, {}, [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_sits_in_a_layer_and_imports_none_above_it():
    graph = _import_graph()
    assert [m for m in graph if _layer(m) is None] == []
    offences = [f"{name} (layer {_layer(name)}) imports {module} (layer {_layer(module)})"
                for name, imported in graph.items() for module in sorted(imported)
                if module in graph and _layer(module) > _layer(name)]
    assert not offences, offences


def test_no_import_cycle_between_modules():
    assert _cycles(_import_graph()) == []


def test_the_graph_sees_function_level_and_lazily_exported_imports():
    graph = _import_graph()
    assert "mnist_mlp.tracking.decision" in graph["mnist_mlp.estimator"]  # lazily exported by tracking
    assert "mnist_mlp.evaluation" in graph["mnist_mlp.pipeline"]  # imported inside a method
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- sizes -------------------------------------------------------------------------

def _code_size():
    spec = importlib.util.spec_from_file_location("_code_size", PACKAGE.parent / "scripts" / "code_size.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The Numba and XLA kernels: one compiled program each, which splitting would slow or complicate.
_KERNELS = ("mnist_mlp/training/kernels.py:", "mnist_mlp/training/xla.py:")


def test_the_classifier_has_at_most_300_lines_of_code():
    rows = _code_size().definitions()
    (size,) = [size for size, kind, where in rows if kind == "class" and where.endswith(" MLPClassifier")]
    assert size <= 300, size


def test_no_function_outside_the_kernels_is_longer_than_60_lines_of_code():
    rows = _code_size().definitions()
    long = [(size, where) for size, kind, where in rows
            if kind == "function" and size > 60 and not where.startswith(_KERNELS)]
    assert not long, long


def test_lines_of_code_leave_out_docstrings_comments_and_blank_lines():
    source = 'def f(x):\n    """Doc\n    string."""\n    # why\n\n    return (x +\n            1)\n'
    assert sorted(_code_size().code_lines(source)) == [1, 6, 7]
