"""Model selection: tracked searches, resuming them, running them on a cluster, the study's split.

The contract other folders use:

- :class:`GridSearchCV`, :class:`HalvingGridSearchCV`: scikit-learn's, with a
  parent run, a child run per candidate x fold and a ``refit`` child holding
  the model (every fit's with ``log_models="all"``); an interrupted search
  resumes (``resume``), and a search by accuracy or macro F1 reuses the
  fits of one by the other;
- :class:`HyperbandSearchCV`: Hyperband over epochs (the study's tuner),
  rungs continuing training, every bracket and rung a tagged child run;
- :class:`TrainValidationSplit`: train on the head, validate on the last
  fraction, as Keras's ``validation_split``;
- :func:`on_cluster`: run a search's fits on a Dask cluster;
- :func:`epochs_per_fit`: the epochs of a search's longest fit.

Modules: ``search`` (the tracked searches), ``hyperband`` (Hyperband over
epochs), ``resume`` (fit fingerprints, reuse of
finished runs), ``companion_scores`` (every classifier fit also scored by
accuracy and macro F1, so that a search by another of them can reuse it),
``cluster`` (Dask), ``split``. The one place that reaches into
scikit-learn's search internals sits below tracking and this folder alike:
:mod:`mnist_mlp.sklearn_internals`.
"""

from __future__ import annotations

from mnist_mlp._lazy import lazy_exports

_EXPORTS = {
    "GridSearchCV": "search",
    "HalvingGridSearchCV": "search",
    "epochs_per_fit": "search",
    "HyperbandSearchCV": "hyperband",
    "TrainValidationSplit": "split",
    "on_cluster": "cluster",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
