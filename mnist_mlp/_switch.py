"""The tracking on/off switch, importable without importing MLflow."""

from __future__ import annotations

import contextvars
import os

#: Set to 0, false, no or off to turn tracking off for every fit in the process.
TRACKING_ENV = "MNIST_MLP_TRACKING"

#: The tracking context a search hands to each of its fits (a ``tracking.FitContext``).
#: Defined here so that checking the switch never imports MLflow.
FIT_CONTEXT = contextvars.ContextVar("mnist_mlp_fit_context", default=None)


def tracking_enabled(param=True):
    """Whether a fit with ``tracking=param`` logs to MLflow.

    Parameters
    ----------
    param : bool
        The estimator's ``tracking`` parameter.

    Returns
    -------
    bool
        False if ``param`` is False. Otherwise True for a fit a tracked search
        handed its context to (the search decided, wherever the fit runs: a
        worker's own environment does not override it), else True unless
        ``MNIST_MLP_TRACKING`` says off.
    """
    if not param:
        return False
    if FIT_CONTEXT.get() is not None:
        return True
    env = os.environ.get(TRACKING_ENV, "").strip().lower()
    return env not in {"0", "false", "no", "off"}
