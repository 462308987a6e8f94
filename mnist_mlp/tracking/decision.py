"""Whether a fit records, and under which parent run: decided here, once.

The estimator, the tracked pipeline and the tracked searches start their fit
with ``with decide(self) as records:``. A fit records unless its ``tracking``
parameter is False or :func:`~mnist_mlp.tracking.tracking_enabled` says off (a
search's :class:`~mnist_mlp.tracking.FitContext` in force overrides the
``MNIST_MLP_TRACKING`` environment variable). Its parent is the run it carried
through a pickle (:func:`carried`), else what
:func:`~mnist_mlp.tracking.owned_run` finds as the run opens (``runs``'s
order: an enclosing pipeline's run, a search's context, an active run).
Light: MLflow is imported only for a fit that records.
"""

from __future__ import annotations

import contextlib
import sys

from mnist_mlp._switch import tracking_enabled
from mnist_mlp.tracking.autolog import autolog_suspended

__all__ = ["carried", "decide"]

# The attribute an unpickled estimator holds its parent run in until its fit reads it.
_CARRIED = "_inherited_run"


@contextlib.contextmanager
def decide(fitted):
    """Decide whether the fit of ``fitted`` in the block records, and set its parent run.

    Parameters
    ----------
    fitted : object
        The estimator, pipeline step or search being fitted: its ``tracking``
        attribute (True where it has none) and the run it carried through a
        pickle (:func:`carried`, used once).

    Yields
    ------
    bool
        Whether the fit records. When it does, a fit opened in the block files
        its run under the parent decided here, with MLflow's autologging off.
    """
    inherited = vars(fitted).pop(_CARRIED, None)
    if not tracking_enabled(getattr(fitted, "tracking", True)):
        yield False  # MLflow's autologging, if on, records an untracked pipeline or search
        return
    from mnist_mlp.tracking import runs

    with autolog_suspended(), runs.inherited_run(inherited):
        yield True


def carried(estimator):
    """What an unfitted estimator pickled now takes along, so that its fit elsewhere finds its parent.

    scikit-learn's searches and ``cross_validate`` send clones to worker
    processes by pickling them; MLflow's active run does not exist there.

    Parameters
    ----------
    estimator : object
        Being pickled; its ``tracking`` attribute (True where it has none).

    Returns
    -------
    dict
        Entries for its pickled state: the run active in this process, where
        it records and no search or pipeline of ours decides already; else empty.
    """
    if "mlflow" not in sys.modules or not tracking_enabled(getattr(estimator, "tracking", True)):
        return {}
    from mnist_mlp.tracking import runs

    inherited = runs.context_to_inherit()
    return {} if inherited is None else {_CARRIED: inherited}
