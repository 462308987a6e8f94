"""MNIST-format data: IDX readers, validation and the loaders' fall-back order.

``load_mnist`` looks, in this order, at a directory (argument, then the
``MNIST_MLP_DATA_DIR`` environment variable), the Keras cache or download, and
finally the small subset embedded in the package, so that the quick start and
the tests work with no network and no extra files.
"""

from __future__ import annotations

import gzip
import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR_ENV",
    "DatasetSplits",
    "IDXFormatError",
    "IMAGE_SUFFIXES",
    "load_embedded_mnist",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "read_idx",
    "read_inputs",
]

logger = logging.getLogger(__name__)

#: Environment variable naming a directory that holds MNIST (IDX files or ``mnist.npz``).
DATA_DIR_ENV = "MNIST_MLP_DATA_DIR"

#: Where Debian's ``dataset-fashion-mnist`` package puts its files.
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10

_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_EMBEDDED = "mnist_subset.npz"


class IDXFormatError(ValueError):
    """A data file is corrupted, truncated or not what its name says."""


class DatasetSplits(tuple):
    """``((x_train, y_train), (x_test, y_test))`` that also says where it came from.

    It unpacks like the tuple ``keras.datasets.mnist.load_data()`` returns.

    Attributes
    ----------
    name : str
        Data set name, e.g. ``"mnist"`` or ``"fashion-mnist"``.
    source : str
        Where it was read from: a path, ``"keras"`` or ``"embedded"``.
    """

    def __new__(cls, train, test, *, name, source):
        self = super().__new__(cls, (tuple(train), tuple(test)))
        self.name = name
        self.source = source
        return self

    def __getnewargs_ex__(self):
        return (self[0], self[1]), {"name": self.name, "source": self.source}

    def __repr__(self):
        (x_train, _), (x_test, _) = self
        return (
            f"DatasetSplits(name={self.name!r}, source={self.source!r}, "
            f"n_train={len(x_train)}, n_test={len(x_test)})"
        )


def read_idx(path):
    """Read one IDX file (optionally gzip-compressed) into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. A name ending in ``.gz`` is decompressed.

    Returns
    -------
    numpy.ndarray
        The array, with the shape and dtype the file's header declares.

    Raises
    ------
    IDXFormatError
        If the file is not valid gzip, has a bad magic number or is shorter
        or longer than its header declares. The message names the file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError
        raise IDXFormatError(f"{path}: cannot be read as IDX data ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise IDXFormatError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_len:
        raise IDXFormatError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[raw[2]]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        raise IDXFormatError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) "
            f"but the file holds {actual} bytes; it is truncated or corrupted"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def _find_idx_file(directory, stem):
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory}: no {stem}.gz or {stem} file")


def _validated(arrays, origin):
    """Check shapes, dtypes, counts and label range of the four arrays."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise IDXFormatError(
                f"{origin}: {split} images have shape {x.shape}, expected (n, 28, 28)"
            )
        if y.ndim != 1:
            raise IDXFormatError(f"{origin}: {split} labels have shape {y.shape}, expected (n,)")
        if len(x) != len(y):
            raise IDXFormatError(
                f"{origin}: {len(x)} {split} images but {len(y)} {split} labels"
            )
        if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
            raise IDXFormatError(
                f"{origin}: {split} labels outside 0-{N_CLASSES - 1} "
                f"(min {y.min()}, max {y.max()})"
            )
        if x.dtype != np.uint8:
            raise IDXFormatError(f"{origin}: {split} images are {x.dtype}, expected uint8")
    return (
        (arrays["x_train"], arrays["y_train"].astype(np.int64)),
        (arrays["x_test"], arrays["y_test"].astype(np.int64)),
    )


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = set(_IDX_FILES) - set(npz.files)
            if missing:
                raise IDXFormatError(f"{path}: missing arrays {sorted(missing)}")
            return {key: npz[key] for key in _IDX_FILES}
    except (OSError, ValueError, EOFError) as exc:
        if isinstance(exc, IDXFormatError):
            raise
        raise IDXFormatError(f"{path}: cannot be read as an npz archive ({exc})") from exc


def load_idx_dataset(data_dir, *, name="mnist"):
    """Load an MNIST-format data set from a directory.

    Parameters
    ----------
    data_dir : str or os.PathLike
        A directory holding the four standard IDX files
        (``train-images-idx3-ubyte[.gz]`` and the like) or a Keras-style
        ``mnist.npz``; or the path of such an ``.npz`` file itself.
    name : str, default="mnist"
        The data set's name, recorded on the result.

    Returns
    -------
    DatasetSplits
        ``(x_train, y_train), (x_test, y_test)``: uint8 images of shape
        ``(n, 28, 28)`` and int64 labels in 0-9.

    Raises
    ------
    FileNotFoundError
        If the directory does not exist or holds neither layout.
    IDXFormatError
        If a file is corrupted, truncated or inconsistent with the others.
    """
    path = Path(data_dir).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return DatasetSplits(*_validated(_load_npz(path), path), name=name, source=str(path))
    if not path.is_dir():
        raise FileNotFoundError(f"data directory {path} does not exist")
    if not (path / "train-images-idx3-ubyte.gz").exists() and (path / "mnist.npz").is_file():
        npz = path / "mnist.npz"
        return DatasetSplits(*_validated(_load_npz(npz), npz), name=name, source=str(npz))
    arrays = {key: read_idx(_find_idx_file(path, stem)) for key, stem in _IDX_FILES.items()}
    return DatasetSplits(*_validated(arrays, path), name=name, source=str(path))


def load_embedded_mnist():
    """Load the small, class-stratified MNIST subset shipped with the package.

    6,000 training and 1,000 test images drawn from the real MNIST, 600 and
    100 of each digit, in their original order. ``scripts/make_embedded_subset.py``
    rebuilds it from the full IDX files.

    Returns
    -------
    DatasetSplits
    """
    ref = resources.files("mnist_mlp") / "_data" / _EMBEDDED
    with resources.as_file(ref) as path:
        arrays = _load_npz(path)
    return DatasetSplits(*_validated(arrays, _EMBEDDED), name="mnist-embedded", source="embedded")


def _load_keras_mnist():
    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
    if cached.is_file():
        return DatasetSplits(*_validated(_load_npz(cached), cached), name="mnist", source=str(cached))
    from mnist_mlp._tensorflow import keras

    train, test = keras.datasets.mnist.load_data()
    return DatasetSplits(train, test, name="mnist", source="keras")


def load_mnist(data_dir=None, *, download=True):
    """Load MNIST from the first place that has it.

    Parameters
    ----------
    data_dir : str or os.PathLike, default=None
        A directory with the IDX files or ``mnist.npz`` (see
        :func:`load_idx_dataset`). When None, the ``MNIST_MLP_DATA_DIR``
        environment variable is used if set. A directory that is named but
        missing or broken is an error, never silently replaced.
    download : bool, default=True
        With no directory, try the Keras cache and then Keras's download.
        If that fails (no network), or with ``download=False``, fall back to
        the embedded subset and log a warning.

    Returns
    -------
    DatasetSplits
        ``(x_train, y_train), (x_test, y_test)`` with ``.name`` and ``.source``.

    Examples
    --------
    >>> from mnist_mlp import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist(download=False)
    >>> x_train.shape[1:], x_train.dtype.name
    ((28, 28), 'uint8')
    """
    data_dir = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        return load_idx_dataset(data_dir, name="mnist")
    if download:
        try:
            return _load_keras_mnist()
        except Exception as exc:  # no network, proxy, broken cache: any of these
            logger.warning("MNIST download failed (%s); using the embedded subset", exc)
    else:
        logger.info("no MNIST directory given; using the embedded subset")
    return load_embedded_mnist()


def load_fashion_mnist(data_dir=None):
    """Load Fashion-MNIST (same IDX format, 10 clothing classes).

    Parameters
    ----------
    data_dir : str or os.PathLike, default=None
        Directory with the four IDX files. Defaults to where Debian's
        ``dataset-fashion-mnist`` package installs them.

    Returns
    -------
    DatasetSplits
    """
    return load_idx_dataset(data_dir or FASHION_MNIST_DEBIAN_DIR, name="fashion-mnist")


#: Image file suffixes :func:`read_inputs` reads with Pillow.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def read_inputs(paths):
    """Images to predict on, from files: each a batch, in the order given.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Image files (PNG, JPEG, ...; read as 8-bit grayscale: one image
        each), IDX files (``t10k-images-idx3-ubyte``, optionally ``.gz``)
        or NumPy ``.npy`` files (one sample, or a batch of them).

    Returns
    -------
    list of numpy.ndarray
        One array per file, as stored: an image file gives shape
        ``(1, height, width)``, uint8. Nothing is resized or rescaled: the
        model's input contract decides what it accepts.

    Raises
    ------
    FileNotFoundError
        For a missing file.
    ValueError
        For a file that cannot be read as any of these.
    """
    arrays = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            try:
                arrays.append(np.load(path, allow_pickle=False))
            except ValueError as exc:
                raise ValueError(f"{path}: cannot be read as a .npy array ({exc})") from None
        elif suffix in IMAGE_SUFFIXES:
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as image:
                    arrays.append(np.asarray(image.convert("L"))[np.newaxis])
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"{path}: cannot be read as an image ({exc})") from None
        else:
            arrays.append(read_idx(path))
    return arrays
