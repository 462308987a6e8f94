"""Whether a fit records, and under which parent run: decided here, once.

The estimator, the tracked pipeline and the tracked searches all start their
fit with ``with decide(self) as records:``. It answers from, in order:

1. the object's ``tracking`` parameter (objects without one, the searches,
   record), and then :func:`~mnist_mlp.tracking.tracking_enabled`: a search's
   :class:`~mnist_mlp.tracking.FitContext` in force (it decided, wherever the
   fit runs), else the ``MNIST_MLP_TRACKING`` environment variable;
2. for a fit that records, the parent: the run the object carried when it was
   pickled (:func:`carried`), made the fit's parent for the block when no
   search, pipeline or active run here says otherwise; every other parent
   (an enclosing pipeline's run, a search's context, the user's active run)
   is found where the run is opened (:func:`~mnist_mlp.tracking.owned_run`,
   in the order ``runs`` documents).

For a fit that records, MLflow's autologging is off in the block: the package
records its own fits, once (``docs/interop.md``). Light: MLflow is imported only for a fit that
records.
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
        Entries to add to its pickled state: the run active in this process,
        when the estimator records, MLflow is loaded (without it no run can be
        active) and no search or pipeline of ours decides already
        (:func:`~mnist_mlp.tracking.runs.context_to_inherit`); else empty.
    """
    if "mlflow" not in sys.modules or not tracking_enabled(getattr(estimator, "tracking", True)):
        return {}
    from mnist_mlp.tracking import runs

    inherited = runs.context_to_inherit()
    return {} if inherited is None else {_CARRIED: inherited}
