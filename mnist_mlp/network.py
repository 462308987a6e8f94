"""The network an ``MLPClassifier``'s parameters describe: each part checked, and the Keras model built.

A bad value is a ``ValueError`` naming the estimator's parameter.
"""

from __future__ import annotations

from numbers import Integral

from mnist_mlp._tensorflow import keras

from scikeras._utils import unflatten_params  # noqa: E402  (after keras)

__all__ = ["OPTIMIZERS", "activation", "build", "hidden_layer_sizes", "initializer", "optimizer"]

#: Optimizers accepted by name, mapped to their Keras classes.
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "adamax": keras.optimizers.Adamax,
    "nadam": keras.optimizers.Nadam,
}

# scikit-learn's MLPClassifier names, accepted as aliases of Keras's.
_ACTIVATION_ALIASES = {"identity": "linear", "logistic": "sigmoid"}


def hidden_layer_sizes(value):
    """``hidden_layer_sizes`` (an int or a non-empty sequence of positive ints) as a list of int."""
    sizes = [value] if isinstance(value, Integral) else list(value)
    if not sizes or not all(isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(
            "The 'hidden_layer_sizes' parameter of MLPClassifier must be a positive "
            f"int or a non-empty sequence of positive ints. Got {value!r}."
        )
    return [int(s) for s in sizes]


def activation(value):
    """The Keras name of the ``activation`` parameter, scikit-learn's aliases resolved."""
    name = _ACTIVATION_ALIASES.get(value, value)
    try:
        keras.activations.get(name)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"The 'activation' parameter of MLPClassifier must be a Keras activation; got {value!r} ({exc})"
        ) from None
    return name


def optimizer(value, learning_rate, routed):
    """A fresh Keras optimizer for one fit.

    Parameters
    ----------
    value : str, keras.optimizers.Optimizer class or instance
        The ``optimizer`` parameter: a name in :data:`OPTIMIZERS`, a class, or
        a configured instance (copied).
    learning_rate : float
        ``learning_rate_init``, for a name or class, unless ``routed`` sets it.
    routed : dict
        The ``optimizer__*`` settings, without their prefix.

    Returns
    -------
    keras.optimizers.Optimizer
    """
    routed = dict(routed)
    if isinstance(value, str):
        if value.lower() not in OPTIMIZERS:
            raise ValueError(
                f"The 'optimizer' parameter of MLPClassifier must be one of "
                f"{sorted(OPTIMIZERS)}, a Keras optimizer class or instance. Got {value!r}."
            )
        value = OPTIMIZERS[value.lower()]
    if isinstance(value, keras.optimizers.Optimizer):
        if routed:
            raise ValueError(
                f"optimizer__ parameters {sorted(routed)} cannot be combined with an "
                "optimizer instance; set them on the instance or pass its class"
            )
        return type(value).from_config(value.get_config())
    if not (isinstance(value, type) and issubclass(value, keras.optimizers.Optimizer)):
        raise ValueError(
            "The 'optimizer' parameter of MLPClassifier must be a name, a Keras "
            f"optimizer class or instance. Got {value!r}."
        )
    routed.setdefault("learning_rate", learning_rate)
    try:
        return unflatten_params(items=value, params=routed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"optimizer__ parameters {routed} rejected by {value.__name__}: {exc}") from None


def initializer(value):
    """A new kernel initializer for one layer, from the ``kernel_initializer`` parameter."""
    if isinstance(value, keras.initializers.Initializer):
        # A fresh copy per layer: an unseeded copy draws its seed inside
        # scikeras's seeded build, so random_state governs it.
        return type(value).from_config(value.get_config())
    try:
        return keras.initializers.get(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"The 'kernel_initializer' parameter of MLPClassifier must be a Keras "
            f"initializer or its name; got {value!r} ({exc})"
        ) from None


def build(params, n_features, n_classes, compile_kwargs):
    """The compiled ``keras.Sequential``: Dense hidden layers (each with its dropout), then a softmax.

    ``params``: the estimator's ``hidden_layer_sizes``, ``activation``, ``kernel_initializer``
    (hidden and output layers), ``penalty`` (hidden kernels only), ``alpha``, ``dropout``,
    ``input_dropout`` (a Dropout before the first Dense) and ``max_norm`` (Keras's
    ``MaxNorm(max_norm, axis=0)`` on every hidden kernel; None for none).
    """
    penalty = {"l1": keras.regularizers.L1, "l2": keras.regularizers.L2}.get(params["penalty"])
    hidden = activation(params["activation"])
    layers = [keras.Input(shape=(n_features,), name="pixels")]
    if params["input_dropout"] > 0:
        layers.append(keras.layers.Dropout(params["input_dropout"], name="input_dropout"))
    constraint = None if params["max_norm"] is None else keras.constraints.MaxNorm(params["max_norm"])
    for i, units in enumerate(hidden_layer_sizes(params["hidden_layer_sizes"]), start=1):
        layers.append(keras.layers.Dense(
            units, activation=hidden, kernel_initializer=initializer(params["kernel_initializer"]),
            kernel_regularizer=penalty(params["alpha"]) if penalty else None, kernel_constraint=constraint,
            name=f"hidden_{i}"))
        if params["dropout"] > 0:
            layers.append(keras.layers.Dropout(params["dropout"], name=f"dropout_{i}"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax",
                                     kernel_initializer=initializer(params["kernel_initializer"]), name="output"))
    model = keras.Sequential(layers, name="mlp")
    model.compile(**compile_kwargs)
    return model
