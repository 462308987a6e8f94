"""The study's pipeline: flatten images row-wise -> min-max scale -> MLPClassifier."""

from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from mnist_mlp.estimator import MLPClassifier
from mnist_mlp.preprocessing import FixedRangeScaler, ImageFlattener

__all__ = ["make_pipeline"]

_SCALERS = {"fixed": FixedRangeScaler, "minmax": MinMaxScaler}


def make_pipeline(*, scaler="fixed", image_shape=(28, 28), **classifier_params):
    """Return an unfitted ``Pipeline(flatten -> scale -> classifier)``.

    Parameters
    ----------
    scaler : {"fixed", "minmax"}, default="fixed"
        ``"fixed"``: the study's pixel / 255 (:class:`FixedRangeScaler`), the
        same for every image whatever the batch. ``"minmax"``: scikit-learn's
        per-feature ``MinMaxScaler``, fitted on the training data.
    image_shape : tuple of int, default=(28, 28)
        Height and width of the images.
    **classifier_params
        Parameters of :class:`MLPClassifier` (``epochs=10``,
        ``optimizer="rmsprop"``, ``optimizer__rho=0.99``, ...).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Steps ``"flatten"``, ``"scale"`` and ``"classifier"``; grid keys take
        the usual form, e.g. ``classifier__alpha``.

    Examples
    --------
    >>> from mnist_mlp import make_pipeline
    >>> pipe = make_pipeline(epochs=5, batch_size=128)
    >>> [name for name, _ in pipe.steps]
    ['flatten', 'scale', 'classifier']
    >>> pipe.get_params()["classifier__epochs"]
    5
    """
    if scaler not in _SCALERS:
        raise ValueError(f"The 'scaler' parameter must be one of {sorted(_SCALERS)}; got {scaler!r}")
    return Pipeline(
        [
            ("flatten", ImageFlattener(image_shape=image_shape)),
            ("scale", _SCALERS[scaler]()),
            ("classifier", MLPClassifier(**classifier_params)),
        ]
    )
