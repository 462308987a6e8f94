"""What a run is called and what it says about itself, for a person reading the MLflow UI.

A run's name says what sets it apart, first: the MLflow UI's Run Name column
cuts names short, so a search's child leads with the parameters that vary in
its search, then its seed and fold (``alpha=0.1 seed=0 fold=0``); its study
section is in its experiment's name and its ``section`` tag, never repeated
in front. A standalone fit names its salient settings
(``MLP 128-256 adam lr=0.001 epochs=100 seed=0``). Every fit also
records its scale (epochs, training rows, dataset) as ``scale.*`` tags and
in its description (MLflow's ``mlflow.note.content``), so that a quick run is
never taken for a full one.
"""

from __future__ import annotations

__all__ = ["NOTE_TAG", "counted", "fit_description", "fit_run_name", "format_value", "grid_values", "scale_tags",
           "setting", "short_key", "standalone_run_name"]

#: The tag MLflow shows as a run's (or an experiment's) description.
NOTE_TAG = "mlflow.note.content"

# Parameter names as a person reads them in a run's name.
_SHORT = {"hidden_layer_sizes": "hidden", "learning_rate_init": "lr", "random_state": "seed",
          "batch_size": "batch", "kernel_initializer": "init", "validation_split": "val_split"}


def short_key(key):
    """``classifier__learning_rate_init`` -> ``lr``; ``classifier__optimizer__rho`` -> ``rho``."""
    last = key.rsplit("__", 1)[-1]
    return _SHORT.get(last, last)


def format_value(value):
    """A parameter value, short: ``(128, 256)`` -> ``128-256``, ``1e-06``, ``0.001``, a class name."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "-".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    from mnist_mlp.tracking.values import describe

    text = str(describe(value))
    return text if len(text) <= 32 else text[:31] + "…"


def grid_values(param_grid):
    """``{parameter: [its distinct values, in order]}`` over a search's grid (a dict, or a list of
    dicts, of value lists): what a search varies, and over what."""
    values = {}
    for grid in param_grid if isinstance(param_grid, list) else [param_grid]:
        for key, options in grid.items():
            seen = values.setdefault(key, {})
            for value in options:
                seen.setdefault(repr(value), value)
    return {key: list(seen.values()) for key, seen in values.items()}


def setting(key, value):
    """``alpha=0.1``: one parameter as it appears in a run's name."""
    return f"{short_key(key)}={format_value(value)}"


def fit_run_name(parameters, varying, *, role=None, seed=None, fold=None, resource=None):
    """The name of a search's fit: the varying parameters, seed and fold, then its role.

    Parameters
    ----------
    parameters : dict
        The candidate's parameters.
    varying : sequence of str
        The parameters that take more than one value in the search, in order.
    role : str, default=None
        What the fit is, when not a fold (``"refit"``), last in the name.
    seed : int, default=None
        The fit's random state, when the search does not vary it already.
    fold : int, default=None
    resource : tuple (name, value), default=None
        A successive-halving budget: ``("epochs", 9)`` or ``("rows", 4000)``.
    """
    parts = [setting(k, parameters[k]) for k in varying if k in parameters and short_key(k) != "seed"]
    if resource is not None:
        parts.append(f"{resource[0]}={format_value(resource[1])}")
    seeds = [parameters[k] for k in varying if k in parameters and short_key(k) == "seed"]
    seed = seeds[0] if seeds else seed
    if seed is not None:
        parts.append(f"seed={format_value(seed)}")
    if fold is not None:
        parts.append(f"fold={fold}")
    if role:
        parts.append(role)
    return " ".join(parts) or role or "fit"


def standalone_run_name(estimator, *, sample_weighted=False):
    """The salient settings of an ``MLPClassifier``'s fit: ``MLP 128-256 adam lr=0.001 epochs=100 seed=0``.

    A fit whose loss weighs its samples says so, after its regularisation:
    ``class_weight=balanced`` (``class_weight=dict`` for weights per class,
    given in full in its ``class_weight`` param) and ``sample_weighted``
    (summarised in its ``sample_weight`` tag) when ``sample_weighted``.
    """
    params = estimator.get_params(deep=False)
    parts = ["MLP", format_value(params["hidden_layer_sizes"]), format_value(params["optimizer"]),
             setting("learning_rate_init", params["learning_rate_init"])]
    if params.get("penalty"):
        parts.append(f"{params['penalty']}={format_value(params['alpha'])}")
    if params.get("dropout"):
        parts.append(setting("dropout", params["dropout"]))
    if params.get("class_weight") is not None:
        weights = params["class_weight"]
        parts.append(f"class_weight={weights if isinstance(weights, str) else type(weights).__name__}")
    if sample_weighted:
        parts.append("sample_weighted")
    parts += [setting("batch_size", params["batch_size"]), setting("epochs", params["epochs"])]
    if params.get("random_state") is not None and isinstance(params["random_state"], int):
        parts.append(setting("random_state", params["random_state"]))
    return " ".join(parts)


def scale_tags(epochs, n_train, n_validation, dataset):
    """The fit's scale as tags: ``scale.epochs``, ``scale.train_rows``, ``scale.validation_rows``,
    ``scale.dataset``."""
    return {"scale.epochs": epochs, "scale.train_rows": n_train, "scale.validation_rows": n_validation,
            "scale.dataset": dataset}


def fit_description(name, epochs, n_train, n_validation, dataset, *, fidelity=None, continued_from=0):
    """A fit's description (Markdown): what it is and at what scale.

    ``epochs``: the network's epochs in all; ``continued_from``: the epochs
    it had before this fit (a Hyperband rung continuing the previous one).
    ``fidelity``: a study's label such as ``quick: 3 epochs, 3,000 images``,
    or None outside the study.
    """
    rows = f"{n_train:,} rows" + (f" of {dataset}" if dataset and dataset != "unspecified" else "")
    validated = f", validated on {n_validation:,}" if n_validation else ", no validation rows"
    trained = counted(epochs, "epoch")
    if continued_from:
        trained = f"{counted(epochs - continued_from, 'more epoch')} (continuing from {continued_from}, {epochs} in all)"
    text = f"**{name}**\n\nTrained {trained} on {rows}{validated}."
    if fidelity:
        text += f"\n\nStudy fidelity: {fidelity}."
    return text


def counted(n, noun):
    """``1 epoch``, ``3 epochs``, ``1,200 fits``."""
    n = int(n)
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
