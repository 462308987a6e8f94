"""Image preprocessing: row-wise flattening and fixed-range min-max scaling."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

__all__ = ["FixedRangeScaler", "ImageFlattener"]


def _as_image_array(X):
    """``check_array`` for n-d images, with clear errors for ragged input."""
    try:
        return check_array(X, dtype="numeric", allow_nd=True, input_name="images")
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise ValueError(f"images must be a rectangular array; got ragged input ({exc})") from None
        raise


class ImageFlattener(TransformerMixin, BaseEstimator):
    """Flatten images row-wise to one feature per pixel.

    Accepts ``(n, height, width)``, ``(n, height, width, 1)`` and already
    flat ``(n, height * width)`` arrays; any other shape is a ``ValueError``.
    Keeps the input dtype, so uint8 images stay small until scaled. NaN, inf,
    strings, sparse and empty input are rejected.

    Parameters
    ----------
    image_shape : tuple of int or None, default=(28, 28)
        ``(height, width)`` of one image. None learns the per-sample shape
        from the data given to ``fit`` (any number of dimensions) and
        requires the same shape afterwards.

    Attributes
    ----------
    n_features_in_ : int
        Features after flattening (``height * width``).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        The column names of a DataFrame given to ``fit`` (one column per
        pixel), when they are all strings; ``transform`` then requires the same
        columns in the same order, as scikit-learn's transformers do.
    image_shape_ : tuple of int
        The per-sample shape accepted (before flattening).

    Examples
    --------
    >>> import numpy as np
    >>> from mnist_mlp import ImageFlattener
    >>> ImageFlattener().fit_transform(np.zeros((5, 28, 28), dtype=np.uint8)).shape
    (5, 784)
    """

    def __init__(self, image_shape=(28, 28)):
        self.image_shape = image_shape

    def _flatten(self, X, shape):
        X = _as_image_array(X)
        n_pixels = int(np.prod(shape))
        if X.shape[1:] == (*shape, 1):  # a trailing channel axis of size 1
            X = X[..., 0]
        if X.shape[1:] == tuple(shape) or (X.ndim == 2 and X.shape[1] == n_pixels):
            return X.reshape(len(X), n_pixels)
        dims = ", ".join(map(str, shape))
        accepted = f"(n, {dims}), (n, {dims}, 1) or (n, {n_pixels})"
        if X.ndim == 2:
            raise ValueError(
                f"X has {X.shape[1]} features, but ImageFlattener is expecting {n_pixels} "
                f"features as input: images must have shape {accepted}"
            )
        raise ValueError(f"images must have shape {accepted}; got {X.shape}")

    def fit(self, X, y=None):
        """Check the shape of ``X`` and record the image shape.

        Parameters
        ----------
        X : array-like of images
        y : ignored

        Returns
        -------
        self : ImageFlattener
        """
        # Column names only: the array checks are _flatten's, which know images.
        validate_data(self, X, reset=True, skip_check_array=True, ensure_2d=False)
        if self.image_shape is None:
            shape = _as_image_array(X).shape[1:]
        else:
            shape = tuple(int(d) for d in self.image_shape)
        self.n_features_in_ = self._flatten(X, shape).shape[1]
        self.image_shape_ = shape
        return self

    def transform(self, X):
        """Flatten ``X`` row-wise.

        Parameters
        ----------
        X : array-like of images

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "image_shape_")
        validate_data(self, X, reset=False, skip_check_array=True, ensure_2d=False)
        return self._flatten(X, self.image_shape_)

    def get_feature_names_out(self, input_features=None):
        """Pixel names ``pixel_<index>`` in row-major order, or the table's own.

        A table (a DataFrame fitted with column names, or ``input_features``)
        keeps its column names: flattening it changes nothing.
        """
        check_is_fitted(self, "image_shape_")
        if input_features is None and not hasattr(self, "feature_names_in_"):
            return np.array([f"pixel_{i}" for i in range(self.n_features_in_)], dtype=object)
        return OneToOneFeatureMixin.get_feature_names_out(self, input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


class FixedRangeScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Min-max scale with a fixed range: ``(X - data_min) / (data_max - data_min)``.

    The study's scaling, pixel / 255: unlike scikit-learn's per-feature
    ``MinMaxScaler`` it learns nothing from the data, so every image is
    scaled alike whatever the batch. Values outside the range, NaN and inf
    are rejected rather than silently passed to the network.

    Parameters
    ----------
    data_min : float, default=0.0
        Value mapped to 0.
    data_max : float, default=255.0
        Value mapped to 1.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen in fit.

    Examples
    --------
    >>> import numpy as np
    >>> from mnist_mlp import FixedRangeScaler
    >>> FixedRangeScaler().fit_transform(np.array([[0, 51, 255]], dtype=np.uint8))
    array([[0. , 0.2, 1. ]], dtype=float32)
    """

    _parameter_constraints = {"data_min": [Real], "data_max": [Real]}

    def __init__(self, data_min=0.0, data_max=255.0):
        self.data_min = data_min
        self.data_max = data_max

    def _check_range(self, X):
        low, high = X.min(), X.max()
        if low < self.data_min or high > self.data_max:
            raise ValueError(
                f"FixedRangeScaler expects values in [{self.data_min}, {self.data_max}]; "
                f"got values from {low} to {high}"
            )

    def fit(self, X, y=None):
        """Validate ``X`` and the range; nothing is learned from the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : FixedRangeScaler
        """
        self._validate_params()
        if not self.data_max > self.data_min:
            raise ValueError(
                f"FixedRangeScaler needs data_max > data_min; got data_min={self.data_min}, "
                f"data_max={self.data_max}"
            )
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=True)
        self._check_range(X)
        return self

    def transform(self, X):
        """Scale ``X`` to [0, 1] as float32.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray, same shape as X
            float32 for integer or float32 input, float64 for float64 input.
        """
        check_is_fitted(self, "n_features_in_")
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        self._check_range(X)
        # Integers become float32 (what Keras computes in); floats keep their dtype.
        return ((X - self.data_min) / (self.data_max - self.data_min)).astype(X.dtype, copy=False)

    def inverse_transform(self, X):
        """Map scaled values back to the original range."""
        check_is_fitted(self, "n_features_in_")
        X = check_array(X, dtype=[np.float32, np.float64])
        return X * (self.data_max - self.data_min) + self.data_min

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
