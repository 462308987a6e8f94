"""Model selection: tracked searches, resuming them, running them on a cluster, the study's split.

The contract other folders use:

- :class:`GridSearchCV`, :class:`HalvingGridSearchCV`: scikit-learn's, with a
  parent run, a child run per candidate x fold and a ``refit`` child holding
  the model; an interrupted search resumes (``resume``);
- :class:`TrainValidationSplit`: train on the head, validate on the last
  fraction, as Keras's ``validation_split``;
- :func:`on_cluster`: run a search's fits on a Dask cluster.

Modules: ``search`` (the tracked searches; the one place that reaches into
scikit-learn's search internals), ``resume`` (fit fingerprints, reuse of
finished runs), ``cluster`` (Dask), ``split``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "GridSearchCV": "search",
    "HalvingGridSearchCV": "search",
    "TrainValidationSplit": "split",
    "on_cluster": "cluster",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
