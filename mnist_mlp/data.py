"""MNIST-format data: IDX readers, validation and the loaders.

``load_mnist()`` loads what the command line loads: the directory named in
``MNIST_MLP_DATA_DIR`` if set, else the small subset embedded in the package,
so that the quick start and the tests work with no network and no extra
files. The full MNIST is loaded only when asked for (``source="full"``, or a
directory), and downloaded only with ``download=True``: the data never switch
silently, and nothing waits on a network that is not there.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_DIR_ENV",
    "DOWNLOAD_TIMEOUT_S",
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

#: Seconds ``load_mnist("full", download=True)`` waits for the server (to connect, and for each read).
DOWNLOAD_TIMEOUT_S = 30

#: Where Keras downloads MNIST from, and the file's SHA-256 (keras.datasets.mnist's own).
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

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

    def describe(self):
        """One line naming the data and their size, as the loaders log it and the CLI prints it.

        Returns
        -------
        str
            E.g. ``"mnist-embedded from embedded: 6,000 train, 1,000 test images"``.
        """
        (x_train, _), (x_test, _) = self
        return f"{self.name} from {self.source}: {len(x_train):,} train, {len(x_test):,} test images"

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


def _keras_cache():
    """Where Keras keeps its downloaded ``mnist.npz`` (``$KERAS_HOME``, else ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"


def _download_mnist(target, timeout):
    """Download Keras's ``mnist.npz`` to ``target``: checked against its SHA-256, then moved there whole."""
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading MNIST from %s to %s", MNIST_URL, target)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".mnist-", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(MNIST_URL, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != MNIST_SHA256:
            raise OSError(f"SHA-256 {digest.hexdigest()}, expected {MNIST_SHA256}")
        os.replace(partial, target)
    except OSError as exc:  # URLError, a timeout and a refused connection are all OSErrors
        raise OSError(f"MNIST download from {MNIST_URL} failed ({exc}); nothing was saved. Without a "
                      f"network, put the four IDX files in a folder and set {DATA_DIR_ENV}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def _load_full_mnist(download, timeout):
    """The full MNIST from ``$MNIST_MLP_DATA_DIR``, else Keras's cache, else (asked to) a download."""
    data_dir = os.environ.get(DATA_DIR_ENV)
    if data_dir:
        return load_idx_dataset(data_dir, name="mnist")
    cached = _keras_cache()
    if not cached.is_file():
        if not download:
            raise FileNotFoundError(
                f"the full MNIST is in neither ${DATA_DIR_ENV} (unset) nor Keras's cache ({cached}): set "
                f"{DATA_DIR_ENV} to a folder of the four IDX files, or pass download=True")
        _download_mnist(cached, timeout)
    return load_idx_dataset(cached, name="mnist")


def load_mnist(source=None, *, download=False, timeout=DOWNLOAD_TIMEOUT_S):
    """Load MNIST: by default what the command line loads, and never a silent switch.

    Parameters
    ----------
    source : {None, "embedded", "full"}, str or os.PathLike, default=None
        - None: the directory in the ``MNIST_MLP_DATA_DIR`` environment variable if it is set,
          else the embedded subset: what ``mnist-mlp`` loads without ``--data-dir``.
        - ``"embedded"``: the 6,000 training and 1,000 test images shipped in the package
          (:func:`load_embedded_mnist`).
        - ``"full"``: the 60,000 and 10,000 images, from ``MNIST_MLP_DATA_DIR``, else Keras's
          cache (``~/.keras/datasets/mnist.npz``), else downloaded there if ``download``.
        - a path: a directory of the IDX files or ``mnist.npz``, or such an ``.npz``
          (:func:`load_idx_dataset`); give a folder named ``full`` as ``Path("full")``.

        A directory that is named but missing or broken is an error, never silently replaced.
    download : bool, default=False
        With ``source="full"`` and no local copy, download Keras's ``mnist.npz`` (11 MB) into
        Keras's cache, checked against its SHA-256. Nothing else ever touches the network.
    timeout : float, default=30
        Seconds the download waits for the server to connect or send more.

    Returns
    -------
    DatasetSplits
        ``(x_train, y_train), (x_test, y_test)`` with ``.name`` and ``.source``; an INFO log
        line says which (:meth:`DatasetSplits.describe`).

    Raises
    ------
    FileNotFoundError
        For a missing directory, or ``"full"`` found nowhere without ``download``.
    OSError
        When the download fails (no network, a timeout, a wrong checksum).
    ValueError
        For ``download=True`` with any ``source`` but ``"full"``.

    Examples
    --------
    >>> from mnist_mlp import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = splits = load_mnist("embedded")
    >>> splits.describe()
    'mnist-embedded from embedded: 6,000 train, 1,000 test images'
    """
    keyword = source if isinstance(source, str) and source in ("embedded", "full") else None
    if download and keyword != "full":
        raise ValueError(f"download=True applies to source='full' only; got source={source!r}")
    if keyword == "full":
        splits = _load_full_mnist(download, timeout)
    elif keyword == "embedded":
        splits = load_embedded_mnist()
    elif source is not None or os.environ.get(DATA_DIR_ENV):
        splits = load_idx_dataset(source if source is not None else os.environ[DATA_DIR_ENV], name="mnist")
    else:
        splits = load_embedded_mnist()
    logger.info("MNIST: %s", splits.describe())
    return splits


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
