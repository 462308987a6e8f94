"""How a value is written down in a run, a fingerprint or a results file: one helper for each use.

- :func:`describe`: a readable, stable string for an object given as a
  parameter (an optimizer or initializer instance or class, a name);
- :func:`param_value`: a parameter value as a run logs it (strings as they
  are, everything else as JSON), cut to MLflow's limit;
- :func:`jsonable`: a nested structure with anything JSON cannot hold
  described, for results files and recorded search results.
"""

from __future__ import annotations

import json
import math

__all__ = ["describe", "finite", "jsonable", "param_value"]

#: MLflow's limit on a param value.
MAX_PARAM_LENGTH = 6000


def describe(obj):
    """A stable, readable string for an optimizer/initializer given as object, class or name.

    >>> describe("Adam"), describe(None), describe(dict)
    ('adam', 'none', 'dict')
    """
    if isinstance(obj, str) or obj is None:
        return str(obj).lower()
    if isinstance(obj, type):
        return obj.__name__
    try:
        config = {k: v for k, v in obj.get_config().items() if v is not None and k != "name"}
    except AttributeError:
        return type(obj).__name__
    args = ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
    return f"{type(obj).__name__}({args})"


def jsonable(value):
    """``value`` with every part JSON cannot hold described (see :func:`describe`).

    >>> jsonable({"sizes": (128, 256), "alpha": 1e-4, "init": None})
    {'sizes': [128, 256], 'alpha': 0.0001, 'init': None}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # a NumPy scalar
        return value.item()
    return describe(value)


def param_value(value):
    """A parameter value as a run logs it: strings as they are, the rest as JSON.

    >>> param_value("relu"), param_value((128, 256)), param_value(0.1), param_value(None)
    ('relu', '[128, 256]', '0.1', 'null')
    """
    text = value if isinstance(value, str) else json.dumps(jsonable(value))
    return text[:MAX_PARAM_LENGTH]


def finite(value):
    """A metric value MLflow stores on every backend: NaN stays, +-inf becomes +-max float.

    A diverged loss then stays visible as huge.
    """
    value = float(value)
    if math.isinf(value):
        return math.copysign(1.7976931348623157e308, value)
    return value
