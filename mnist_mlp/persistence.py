"""A fitted estimator as plain data: what pickle, joblib, skops and MLflow save.

A fitted :class:`~mnist_mlp.MLPClassifier` is saved as its parameters, its
fitted attributes (classes, history, coefficients, ...) and its network as
arrays: the Keras model's weights and its optimizer's variables (step count
and slots, so that a ``warm_start`` fit or ``partial_fit`` after loading
continues exactly). Nothing of Keras's own pickling, no Keras object, no
function: the Keras model, scikeras's label and feature encoders and the
callbacks are built again from that data when the estimator is loaded. So
``pickle``, ``joblib``, ``cloudpickle`` and ``skops.io`` all save it, and a
loaded estimator predicts exactly what the saved one did.

skops loads only the types it is told to trust; :func:`skops_trusted_types`
lists this package's:

>>> import mnist_mlp
>>> mnist_mlp.skops_trusted_types()[:2]
['mnist_mlp.estimator.MLPClassifier', 'mnist_mlp.pipeline.TrackedPipeline']
"""

from __future__ import annotations

import numpy as np

__all__ = ["NETWORK_KEY", "plain_state", "restore_network", "skops_trusted_types"]

#: The key of the network's arrays in a saved estimator's state.
NETWORK_KEY = "_network_arrays"

# Fitted attributes rebuilt on load rather than saved: Keras objects, scikeras's
# encoders (scikit-learn pipelines of scikeras classes), Keras callbacks, and the
# final Dense kernels and biases (the model's weights: saved once, below).
_REBUILT = ("model_", "target_encoder_", "feature_encoder_", "_fit_callbacks", "_predict_callbacks",
            "coefs_", "intercepts_")
# Fitted numpy dtypes, saved as their string form (skops does not trust numpy.dtype by default).
_DTYPES = ("X_dtype_", "y_dtype_")


def skops_trusted_types():
    """The types of this package that a saved model holds, for ``skops.io.load``.

    Returns
    -------
    list of str
        Give it as ``trusted`` to ``skops.io.load`` or as
        ``skops_trusted_types`` to ``mlflow.sklearn.log_model``.

    Examples
    --------
    >>> import skops.io as sio  # doctest: +SKIP
    >>> pipe = sio.load("model.skops", trusted=mnist_mlp.skops_trusted_types())  # doctest: +SKIP
    """
    return [
        "mnist_mlp.estimator.MLPClassifier",
        "mnist_mlp.pipeline.TrackedPipeline",
        "mnist_mlp.preprocessing.FixedRangeScaler",
        "mnist_mlp.preprocessing.ImageFlattener",
    ]


def plain_state(state, model):
    """``state`` (a fitted estimator's ``__dict__`` copy) with its Keras objects as arrays.

    Parameters
    ----------
    state : dict
        Modified in place and returned.
    model : keras.Model
        The fitted, compiled model.

    Returns
    -------
    dict
        Only plain data: numbers, strings, lists, dicts and arrays.
    """
    for key in _REBUILT:
        state.pop(key, None)
    for key in _DTYPES:
        if key in state:
            state[key] = np.dtype(state[key]).str
    optimizer = model.optimizer
    state[NETWORK_KEY] = {
        "weights": [np.array(w) for w in model.get_weights()],
        # Step count, learning rate and slots; empty for an optimizer never built.
        "optimizer": [np.array(v.numpy()) for v in optimizer.variables] if optimizer is not None else [],
    }
    return state


def restore_network(estimator, arrays):
    """Rebuild a loaded estimator's Keras model, encoders and callbacks from plain data.

    Parameters
    ----------
    estimator : MLPClassifier
        Its parameters and fitted attributes already set.
    arrays : dict
        What :func:`plain_state` saved under :data:`NETWORK_KEY`.

    Raises
    ------
    ValueError
        If the saved arrays do not fit the network the parameters build
        (a state edited by hand, or saved by an incompatible version).
    """
    for key in _DTYPES:
        if key in vars(estimator):
            setattr(estimator, key, np.dtype(getattr(estimator, key)))
    classes = np.asarray(estimator.classes_)
    # Fitted as the first fit did, on categories found in the labels (classes_ is their sorted
    # unique values): given explicitly, OneHotEncoder would turn string labels into objects.
    estimator.target_encoder_ = estimator.target_encoder.set_params(categories="auto").fit(classes)
    estimator.feature_encoder_ = estimator.feature_encoder.fit(
        np.zeros((1, estimator.n_features_in_), np.float32))
    estimator._initialize_callbacks()
    model = estimator._build_keras_model()
    try:
        model.set_weights(arrays["weights"])
    except ValueError as exc:
        raise ValueError(f"the saved weights do not fit the network of {type(estimator).__name__}: {exc}") from None
    saved = arrays["optimizer"]
    if saved:
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        variables = optimizer.variables
        if len(variables) != len(saved) or any(v.shape != a.shape for v, a in zip(variables, saved)):
            raise ValueError(
                f"the saved optimizer state ({len(saved)} arrays) does not fit the "
                f"{type(optimizer).__name__} optimizer the parameters build ({len(variables)} variables)"
            )
        for variable, value in zip(variables, saved):
            variable.assign(value)
    estimator.model_ = model
    estimator.coefs_, estimator.intercepts_ = estimator.dense_weights()
