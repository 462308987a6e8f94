"""The tracking on/off switch, importable without importing MLflow."""

from __future__ import annotations

import os

#: Set to 0, false, no or off to turn tracking off for every fit in the process.
TRACKING_ENV = "MNIST_MLP_TRACKING"


def tracking_enabled(param=True):
    """Whether a fit with ``tracking=param`` logs to MLflow.

    Parameters
    ----------
    param : bool
        The estimator's ``tracking`` parameter.

    Returns
    -------
    bool
        False if ``param`` is False or ``MNIST_MLP_TRACKING`` says off.
    """
    env = os.environ.get(TRACKING_ENV, "").strip().lower()
    return bool(param) and env not in {"0", "false", "no", "off"}
