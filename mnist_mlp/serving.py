"""The served model: it checks every request against what it was trained on.

A model logged by this package keeps MLflow's ``sklearn`` flavour
(``mlflow.sklearn.load_model`` returns the fitted pipeline, unchanged), but
its ``python_function`` flavour, the one ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` use, loads through this module. Before predicting, it
checks the input against the model's :class:`InputContract`, written into the
model's ``MLmodel`` metadata when it was logged:

- a batch of the training shape, ``(n, 28, 28)``, ``(n, 28, 28, 1)`` or ``(n, 784)``,
  with at least one row;
- numbers only, all finite;
- for a model trained on integer pixels (uint8), whole numbers within the
  dtype's range: an image scaled to [0, 1] is refused, never cast to zeros;
- for an image model, images the right way round: a network trained on
  light digits on a dark background answers an inverted image (dark ink on
  light paper, what a photo gives) with a confident, wrong digit, so images
  whose border brightness is nearer the inverted training images' than the
  training images' own are refused (:class:`Background`, learned in fit).

A request that breaks one gets HTTP 400 with a message of a few dozen words
naming the problem, and nothing else: no copy of the input, no traceback.
A table (CSV, or JSON ``dataframe_split``) for an image model must have the
pixel positions ``0..783`` as its columns, as ``pandas.DataFrame.to_csv(index=False)``
writes them: a CSV without that header line would lose its first image to it.

MLflow's own schema enforcement would instead cast a float image to uint8
silently (7.9 -> 7, 0.5 -> 0) and answer a confident wrong digit; so an array
model's signature declares only its outputs, and this module is its input
schema. A fitted pipeline applies the same contract in-process
(:meth:`InputContract.check_values`). A model trained on a DataFrame keeps its column
names and types in the signature as well.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np

__all__ = ["CONTRACT_KEY", "FORWARD_KEY", "Background", "InputContract", "InvalidInputError", "ServedModel",
           "example_rows"]

#: Key of the contract in the logged model's ``MLmodel`` metadata.
CONTRACT_KEY = "mnist_mlp_input_contract"
#: Key, in the logged model's ``python_function`` flavour, of the file holding its
#: forward model (:func:`mnist_mlp.inference.forward_model`, pickled).
FORWARD_KEY = "mnist_mlp_forward_model"


def example_rows(X, n=5):
    """The first ``n`` rows of ``X`` as given: a DataFrame stays one (its column
    names are part of the model's signature); anything else becomes an array."""
    if hasattr(X, "iloc") and hasattr(X, "columns"):
        return X.iloc[:n]
    try:
        return np.asarray(X[:n])
    except TypeError:  # array-likes that only convert (no slicing): np.asarray first
        return np.asarray(X)[:n]


class InvalidInputError(ValueError):
    """An input the model was not trained for, with a message naming the problem."""


def _preview(value, limit=24):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class Background:
    """Which way round the training images are: the brightness of their borders.

    A handwritten digit or a garment lies in the middle of its image; the
    border is background. The mean of each image's border pixels keeps to one
    side (test images, 0..255: MNIST 0..8, Fashion-MNIST 0..95), and an
    inverted image's border to the other (247..255 and 160..255). The mean of
    all its pixels would not do: an inverted bright garment is darker than a
    normal one (Fashion-MNIST: 7.9..181 normal, 74..247 inverted). Measured by
    ``benchmarks/inverted_input.py``.

    The refusal threshold is the middle of the training pixel range: halfway
    between the training borders' 0.1 % .. 99.9 % quantiles and the same
    quantiles inverted, so the margin is as wide as it can be on either side.
    A photo with a grey rather than black background still passes; an
    inverted image does not. It applies only where those quantiles lie wholly
    on one side of the middle (training images all dark-backed, or all
    light-backed); training images of both kinds give no rule.

    Parameters
    ----------
    image_shape : tuple of int
        ``(height, width)`` of one image (a trailing channel axis allowed).
    border_mean : tuple of float
        The 0.1 % and 99.9 % quantiles of the training images' border means.
    pixel_range : tuple of float
        The lowest and highest training pixel values.
    """

    image_shape: tuple
    border_mean: tuple
    pixel_range: tuple

    QUANTILES = (0.001, 0.999)

    @staticmethod
    def border_means(array, image_shape):
        """Mean of each image's outermost rows and columns; ``array`` of ``n`` images, any layout."""
        images = np.asarray(array).reshape(len(array), *image_shape[:2], -1)
        border = [images[:, 0], images[:, -1], images[:, 1:-1, 0], images[:, 1:-1, -1]]
        return np.concatenate([b.reshape(len(images), -1) for b in border], axis=1).mean(axis=1, dtype=np.float64)

    @classmethod
    def from_images(cls, X, image_shape):
        """The background of training images ``X``, ``(n, *image_shape)`` or flattened."""
        array = np.asarray(X)
        low, high = np.quantile(cls.border_means(array, image_shape), cls.QUANTILES)
        return cls(tuple(int(d) for d in image_shape), (float(low), float(high)),
                   (float(array.min()), float(array.max())))

    def check(self, array):
        """Raise :class:`InvalidInputError` for images whose background is the other way round.

        Input whose samples do not hold one image each is left to the shape checks.
        """
        array = np.asarray(array)
        if not len(array) or array[0].size != np.prod(self.image_shape):
            return
        lo, hi = self.pixel_range
        middle = (lo + hi) / 2
        dark = self.border_mean[1] < middle
        if not dark and self.border_mean[0] <= middle:
            return  # training images with dark and light backgrounds: no side to refuse
        means = self.border_means(array, self.image_shape)
        wrong = np.flatnonzero(means > middle if dark else means < middle)
        if len(wrong):
            trained, seen = ("dark", "light") if dark else ("light", "dark")
            raise InvalidInputError(
                f"input image {wrong[0]} has a {seen} background (border mean {means[wrong[0]]:.0f} of "
                f"{lo:g}..{hi:g}); this model was trained on a {trained} one (border mean "
                f"{self.border_mean[0]:.0f}..{self.border_mean[1]:.0f}): send {seen} ink on {trained} "
                f"paper, e.g. {lo + hi:g} - x for an inverted image"
            )


@dataclasses.dataclass(frozen=True)
class InputContract:
    """What one input row looks like to a fitted model.

    Parameters
    ----------
    sample_shape : tuple of int
        Shape of one sample, e.g. ``(28, 28)`` for images or ``(4,)`` for a table.
    dtype : str
        The training data's NumPy dtype, e.g. ``"uint8"``. An integer dtype
        makes whole numbers within its range a requirement.
    columns : tuple of str or None
        The training DataFrame's column names, in order (None for arrays).
    background : Background or None
        For an image model, which way round its training images are; None
        for a table, whose rows have no background.
    """

    sample_shape: tuple
    dtype: str
    columns: tuple | None = None
    background: Background | None = None

    @classmethod
    def from_training(cls, X, image_shape=None):
        """The contract of a model fitted on ``X`` (array-like or DataFrame).

        ``image_shape`` (two dimensions or more, e.g. ``(28, 28)``) says that
        each sample of ``X`` is an image: its :class:`Background` is then learned
        from all of ``X``. Without it (a table, a bare classifier), none is.
        """
        columns = tuple(str(c) for c in X.columns) if hasattr(X, "columns") else None
        array = np.asarray(X)
        background = (Background.from_images(array, image_shape)
                      if image_shape is not None and len(image_shape) >= 2 else None)
        return cls(tuple(int(n) for n in array.shape[1:]), str(array.dtype), columns, background)

    def to_dict(self):
        return {"sample_shape": list(self.sample_shape), "dtype": self.dtype,
                "columns": None if self.columns is None else list(self.columns),
                "background": None if self.background is None else {
                    k: list(v) for k, v in dataclasses.asdict(self.background).items()}}

    @classmethod
    def from_dict(cls, data):
        columns, background = data.get("columns"), data.get("background")
        return cls(tuple(data["sample_shape"]), data["dtype"], None if columns is None else tuple(columns),
                   None if background is None else Background(**{k: tuple(v) for k, v in background.items()}))

    @property
    def n_features(self):
        return int(np.prod(self.sample_shape, dtype=np.int64))

    def _accepted_shapes(self):
        """One sample's shapes: as trained, with a channel axis of 1 (images), flattened."""
        shapes = [self.sample_shape]
        if len(self.sample_shape) >= 2:
            shapes.append((*self.sample_shape, 1))
        if (self.n_features,) != self.sample_shape:
            shapes.append((self.n_features,))
        return shapes

    def _shapes(self):
        shapes = self._accepted_shapes()
        text = [str(("n", *s)).replace("'", "") for s in shapes]
        return ", ".join(text[:-1]) + " or " + text[-1] if len(text) > 1 else text[0]

    def describe(self):
        """What the model takes, in a sentence: ``a batch of shape (n, 28, 28) or (n, 784), uint8 0..255``."""
        dtype = np.dtype(self.dtype)
        values = f"whole numbers {np.iinfo(dtype).min}..{np.iinfo(dtype).max}" if dtype.kind in "ui" else "numbers"
        columns = f", columns {', '.join(self.columns)}" if self.columns is not None else ""
        return f"a batch of shape {self._shapes()}, {self.dtype} {values}{columns}"

    def check(self, data):
        """Return ``data`` as the model's input, or raise :class:`InvalidInputError`.

        Parameters
        ----------
        data : array-like, list or DataFrame
            A batch of samples.

        Returns
        -------
        ndarray or DataFrame
            The same values in the training dtype (integer-valued floats become
            uint8 for a uint8 model); a DataFrame keeps the training columns, in
            their training order.

        Raises
        ------
        InvalidInputError
            Naming the first problem found, in a message of a few words.
        """
        frame = None
        if hasattr(data, "columns"):  # a DataFrame (CSV, MLflow's "dataframe_split" and friends)
            if self.columns is None:
                self._check_positions(data.columns)
            else:
                names = [str(c) for c in data.columns]
                missing = [c for c in self.columns if c not in names]
                if missing:
                    raise InvalidInputError(f"input is missing columns {_preview(missing, 80)}")
                data = data.rename(columns=str)[list(self.columns)]
                frame = data
            array = data.to_numpy()
        else:
            try:
                array = np.asarray(data)
            except ValueError:  # ragged nested lists
                raise InvalidInputError("input rows have different lengths") from None
        if array.ndim == 0:
            raise InvalidInputError(f"input is a single value; this model takes a batch, shape {self._shapes()}")
        if array.size == 0:
            raise InvalidInputError(f"empty input: send a batch of at least one sample, shape {self._shapes()}")
        array = self._numbers(array)
        if array.shape[1:] not in self._accepted_shapes():
            hint = ("; one sample must still be sent as a batch of one, [sample]"
                    if array.shape == self.sample_shape else "")
            raise InvalidInputError(f"input has shape {array.shape}; this model takes shape {self._shapes()}{hint}")
        if not np.isfinite(array).all():
            raise InvalidInputError("input has NaN or infinite values")
        dtype = np.dtype(self.dtype)
        if dtype.kind in "uib":
            array = self._whole_numbers(array, dtype)
        elif dtype.kind == "f":
            array = array.astype(dtype, copy=False)
        if self.background is not None:
            self.background.check(array)
        if frame is not None:
            return frame.__class__(array.reshape(len(array), -1), columns=list(self.columns), index=frame.index)
        return array

    def check_values(self, X):
        """Refuse values a model trained on this contract's dtype would misread.

        The in-process half of the contract (a fitted :func:`mnist_mlp.make_pipeline`
        calls it before predicting or scoring): for a model trained on whole
        numbers (uint8 images, ints), finite numeric input with fractions, e.g.
        an image scaled to [0, 1], or values outside the dtype's range is refused,
        and for an image model, images the other way round (:class:`Background`),
        with the served model's message. Shape, NaN, text and column names are
        left to the model's own (scikit-learn's) checks; a float table model
        takes any values.

        Parameters
        ----------
        X : array-like or DataFrame

        Raises
        ------
        InvalidInputError
            A ``ValueError`` naming the problem.
        """
        dtype = np.dtype(self.dtype)
        if dtype.kind not in "uib" and self.background is None:
            return
        try:
            array = np.asarray(X)
        except ValueError:  # ragged: the model's own checks say so
            return
        if array.dtype.kind in "iuf" and array.ndim and array.size and np.isfinite(array).all():
            if dtype.kind in "uib":
                self._whole_numbers(array, dtype)
            if self.background is not None:
                self.background.check(array)

    def _check_positions(self, columns):
        """A table for an array model: its columns are the feature positions, in order.

        MLflow reads a CSV's first line as its header; a CSV sent without one
        would have its first image taken for column names (and that image lost).
        """
        names = [str(c) for c in columns]
        if names != [str(i) for i in range(len(names))]:
            last = self.n_features - 1
            what = "pixel" if len(self.sample_shape) > 1 else "feature"
            raise InvalidInputError(
                f"a table's columns must be the {what} positions 0..{last}, as its header line; got "
                f"{_preview(names[:3], 40)}: send a CSV with the header 0,1,...,{last} "
                "(pandas: DataFrame(images.reshape(len(images), -1)).to_csv(index=False)) or JSON {\"inputs\": images}"
            )

    def _numbers(self, array):
        kinds = "iuf" + ("b" if np.dtype(self.dtype).kind == "b" else "")
        if array.dtype.kind in kinds:
            return array
        if array.dtype.kind == "O":  # mixed JSON values: numbers pass, anything else names itself
            missing = object()
            bad = next((v for v in array.ravel()
                        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))), missing)
            if bad is missing:
                return array.astype(np.float64)
        else:
            bad = array.ravel()[0]
            bad = bad.item() if hasattr(bad, "item") else bad
        raise InvalidInputError(f"input values must be numbers; got {_preview(bad)}")

    @staticmethod
    def _whole_numbers(array, dtype):
        lo, hi = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        if array.dtype.kind == "f" and not (array == np.round(array)).all():
            if array.min() >= 0 and array.max() <= 1:
                # uint8 images: 0..255; a wide integer type (int64) has no scale to suggest.
                narrow = hi <= np.iinfo(np.uint16).max
                raw, send = ((f"{dtype} values {lo}..{hi}", f"round(x * {hi})") if narrow
                             else (f"whole numbers ({dtype})", "the values unscaled"))
                raise InvalidInputError(
                    f"input looks scaled to [0, 1]; this model takes raw {raw}, as it was trained: send {send}"
                )
            fraction = array[array != np.round(array)].flat[0]
            raise InvalidInputError(f"input values must be whole numbers {lo}..{hi} ({dtype}); got {fraction:g}")
        if array.min() < lo or array.max() > hi:
            raise InvalidInputError(
                f"input values must lie in {lo}..{hi} ({dtype}); got {array.min():g}..{array.max():g}"
            )
        return array.astype(dtype, copy=False)


@functools.cache
def _refusal_type():
    """The MlflowException a served model raises for a request it refuses.

    MLflow's scoring server rewrites the message of an MlflowException raised
    by a model to ``Failed to predict data '<the input, printed>'. Error: <message>``
    (646 bytes, 26 lines of pixels for five images). This one keeps its first
    message, the reason, whatever is assigned to it later; the tests of
    tests/test_servers.py check that the served body is that reason.
    Created on first use: importing this module does not load MLflow.
    """
    from mlflow.exceptions import MlflowException

    class RefusedInput(MlflowException):
        @property
        def message(self):
            return self._reason

        @message.setter
        def message(self, value):
            if not hasattr(self, "_reason"):
                self._reason = value

    return RefusedInput


def _refusal(message, status="INVALID_PARAMETER_VALUE"):
    from mlflow.protos import databricks_pb2

    return _refusal_type()(message, error_code=getattr(databricks_pb2, status))


class ServedModel:
    """What ``mlflow.pyfunc.load_model`` returns for a model logged by this package.

    Parameters
    ----------
    model : fitted estimator or pipeline
    contract : InputContract or None
        None (a model logged before contracts existed): inputs are not checked.
    """

    def __init__(self, model, contract):
        self.model = model
        self.contract = contract

    def predict(self, data, params=None):
        """Predicted labels for ``data``, after checking it against the contract.

        Raises
        ------
        mlflow.exceptions.MlflowException
            INVALID_PARAMETER_VALUE (HTTP 400 when served) for input the model
            was not trained for; INVALID_STATE (HTTP 500) for a model whose
            training diverged, whose every answer would be meaningless. Its
            message is the reason alone, a line of at most a few hundred
            characters, even from MLflow's scoring server.
        """
        final = self.model[-1] if hasattr(self.model, "steps") else self.model
        if getattr(final, "diverged_", False):
            raise _refusal("this model diverged in training (its loss went NaN, infinite or above "
                           "1000); it has no meaningful answer to give", "INVALID_STATE")
        if self.contract is not None:
            try:
                data = self.contract.check(data)
            except InvalidInputError as exc:
                raise _refusal(str(exc)) from None
        try:
            return self.model.predict(data)
        except ValueError as exc:  # the model's own (scikit-learn's) checks: their first line
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise _refusal(reason if len(reason) <= 300 else reason[:297] + "...") from None


def _load_pyfunc(path):
    """MLflow's loader-module hook: the model directory -> :class:`ServedModel`.

    A model logged with its forward model (:mod:`mnist_mlp.inference`) predicts
    from its weight arrays, without TensorFlow; an older one, or one whose
    network is not computed there, through its ``sklearn`` flavour.
    """
    import pickle
    from pathlib import Path

    from mlflow.models import Model

    saved = Model.load(path)
    metadata = saved.metadata or {}
    contract = metadata.get(CONTRACT_KEY)
    if isinstance(contract, str):
        contract = json.loads(contract)
    contract = None if contract is None else InputContract.from_dict(contract)
    forward = saved.flavors.get("python_function", {}).get(FORWARD_KEY)
    if forward is not None:
        with open(Path(path) / forward, "rb") as file:
            return ServedModel(pickle.load(file), contract)
    import mlflow.sklearn

    served = ServedModel(mlflow.sklearn.load_model(path), contract)
    if served.contract is not None and served.contract.columns is None:
        # One prediction now compiles the prediction kernels (Numba, seconds), so that
        # the server's first request does not wait for it (9.5 s measured).
        zeros = np.zeros((1, *served.contract.sample_shape), dtype=served.contract.dtype)
        try:
            served.model.predict(zeros)
        except Exception:  # noqa: BLE001 - a warm-up only: the real request will say what is wrong
            pass
    return served
