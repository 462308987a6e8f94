"""MLflow's autologging, suspended inside this package's own fits.

With ``mlflow.sklearn.autolog()`` or ``mlflow.autolog()`` on, MLflow patches
the ``fit`` of scikit-learn's estimators and of ``keras.Model``. Inside an
``MLPClassifier`` fit that would record implementation details as if they
were the user's work: scikeras fits a label-encoder ``Pipeline`` (a
top-level run of its own, with a model), a fit that falls back to
``keras.Model.fit`` starts TensorFlow's autologging (which needs TensorBoard,
and crashes without it), and a tracked pipeline or search would be logged a
second time beside its own run. So the package's own fits run with
autologging suspended: what a user's autolog records is the scikit-learn
objects the user fits (a plain ``Pipeline``, ``GridSearchCV``), never what
happens inside this package's estimators (``docs/interop.md``).

Only MLflow's public ``mlflow.utils.autologging_utils.disable_autologging``
is used. It switches autologging off process-wide, not per thread, and is not
re-entrant: :func:`autolog_suspended` counts the blocks in flight (nested fits,
threads) and restores autologging when the last one ends.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading

__all__ = ["autolog_suspended"]

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_depth = 0
_disabled = None  # MLflow's context manager, entered while _depth > 0


def _disabler():
    """MLflow's context manager that disables autologging, or None if this MLflow has none."""
    try:
        from mlflow.utils.autologging_utils import disable_autologging
    except ImportError as exc:  # an MLflow that moved it: autologging stays as the user set it
        logger.warning("cannot suspend MLflow autologging inside mnist_mlp's fits (%s)", exc)
        return None
    return disable_autologging()


@contextlib.contextmanager
def autolog_suspended():
    """Run the block with MLflow's autologging off (for every thread), then restore it.

    Costs nothing where MLflow is not imported: then no autologging can be on.
    """
    global _depth, _disabled
    if "mlflow" not in sys.modules:
        yield
        return
    with _LOCK:
        if _depth == 0:
            _disabled = _disabler()
            if _disabled is not None:
                _disabled.__enter__()
        _depth += 1
    try:
        yield
    finally:
        with _LOCK:
            _depth -= 1
            if _depth == 0 and _disabled is not None:
                _disabled.__exit__(None, None, None)
                _disabled = None
