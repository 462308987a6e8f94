"""Module attributes imported on first use (PEP 562), so that importing a folder stays quick."""

from __future__ import annotations

import importlib

__all__ = ["lazy_exports"]


def lazy_exports(package, exports):
    """``(__getattr__, __dir__)`` for ``package`` whose names live in ``exports``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Public name -> the module defining it: a submodule's name relative to
        ``package`` (``"runs"``) or a full module path (``"mnist_mlp.data"``).
    """
    names = sorted(exports)

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = exports[name] if exports[name].startswith("mnist_mlp.") else f"{package}.{exports[name]}"
        value = getattr(importlib.import_module(module), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__():
        return names

    return __getattr__, __dir__
