"""IDX reading and validation, and the loaders' fall-back order."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from mnist_mlp.data import (
    DATA_DIR_ENV,
    FASHION_MNIST_DEBIAN_DIR,
    IDXFormatError,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
    read_idx,
)


def _write_idx(path, array, magic_type=0x08):
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(data)


def _make_dataset(directory, n_train=20, n_test=10, gz=True):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        _write_idx(directory / f"{stem}{suffix}", array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_reads_a_valid_directory(tmp_path, gz):
    arrays = _make_dataset(tmp_path, gz=gz)
    (x_train, y_train), (x_test, y_test) = splits = load_idx_dataset(tmp_path)
    assert x_train.dtype == np.uint8 and x_train.shape == (20, 28, 28)
    np.testing.assert_array_equal(x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    assert y_train.dtype == np.int64
    assert splits.name == "mnist" and splits.source == str(tmp_path)


def test_reads_keras_style_npz(tmp_path, embedded):
    (x_train, y_train), (x_test, y_test) = embedded
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    (a, b), (c, d) = load_idx_dataset(tmp_path)
    np.testing.assert_array_equal(a, x_train)
    np.testing.assert_array_equal(d, y_test)
    (a, _), _ = load_idx_dataset(tmp_path / "mnist.npz")
    assert len(a) == len(x_train)


def test_truncated_file_names_the_file(tmp_path):
    _make_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte.gz.*truncated"):
        load_idx_dataset(tmp_path)


def test_corrupted_gzip_names_the_file(tmp_path):
    _make_dataset(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])  # cut mid-stream
    with pytest.raises(IDXFormatError, match="t10k-labels-idx1-ubyte.gz"):
        load_idx_dataset(tmp_path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(IDXFormatError, match="t10k-labels-idx1-ubyte.gz"):
        load_idx_dataset(tmp_path)


def test_bad_magic_number(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(IDXFormatError, match="magic"):
        read_idx(path)


def test_wrong_image_size_labels_out_of_range_and_count_mismatch(tmp_path):
    _make_dataset(tmp_path)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((20, 27, 27)))
    with pytest.raises(IDXFormatError, match=r"expected \(n, 28, 28\)"):
        load_idx_dataset(tmp_path)
    _make_dataset(tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(20, 12))
    with pytest.raises(IDXFormatError, match="labels outside 0-9"):
        load_idx_dataset(tmp_path)
    _make_dataset(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9))
    with pytest.raises(IDXFormatError, match="10 test images but 9 test labels"):
        load_idx_dataset(tmp_path)


def test_missing_directory_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    _make_dataset(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path)


def test_environment_variable_is_honoured(tmp_path, monkeypatch):
    _make_dataset(tmp_path, n_train=30)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    (x_train, _), _ = splits = load_mnist()
    assert len(x_train) == 30 and splits.source == str(tmp_path)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""
    import socket

    def refused(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "getaddrinfo", refused)
    monkeypatch.setattr(socket.socket, "connect", refused)


def _keras_cache(tmp_path, monkeypatch, embedded, n_train=50):
    """A Keras-style ``mnist.npz`` cache under tmp_path with ``n_train`` training images."""
    (x_train, y_train), (x_test, y_test) = embedded
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "datasets" / "mnist.npz"
    np.savez(path, x_train=x_train[:n_train], y_train=y_train[:n_train], x_test=x_test[:5], y_test=y_test[:5])
    return path


def test_default_is_the_embedded_subset_said_and_offline(monkeypatch, tmp_path, caplog, embedded, no_network):
    """No directory: the embedded subset, as the CLI loads it, even beside a Keras cache; an INFO line says so."""
    import logging

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    _keras_cache(tmp_path, monkeypatch, embedded)
    with caplog.at_level(logging.INFO, logger="mnist_mlp.data"):
        (x_train, _), (x_test, _) = splits = load_mnist()
    assert splits.source == "embedded" and (len(x_train), len(x_test)) == (6000, 1000)
    assert "MNIST: mnist-embedded from embedded: 6,000 train, 1,000 test images" in caplog.text
    assert load_mnist("embedded").source == "embedded"


def test_full_comes_from_the_data_folder_then_the_keras_cache(monkeypatch, tmp_path, embedded, no_network):
    _make_dataset(tmp_path, n_train=30)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    (x_train, _), _ = splits = load_mnist("full")
    assert len(x_train) == 30 and splits.source == str(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV)
    cache = _keras_cache(tmp_path / "keras", monkeypatch, embedded, n_train=50)
    (x_train, _), _ = splits = load_mnist("full")
    assert len(x_train) == 50 and splits.source == str(cache) and splits.name == "mnist"


def test_full_found_nowhere_is_an_error_naming_both_ways(monkeypatch, tmp_path, no_network):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"set {DATA_DIR_ENV} .* or pass download=True"):
        load_mnist("full")
    with pytest.raises(ValueError, match="download=True applies to source='full' only"):
        load_mnist(download=True)


def test_download_is_checked_and_kept_whole(monkeypatch, tmp_path, embedded):
    """download=True: the file lands in Keras's cache if its SHA-256 is right, else nothing does."""
    import hashlib

    import mnist_mlp.data as data

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    served = _keras_cache(tmp_path / "server", monkeypatch, embedded, n_train=40)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(data, "MNIST_URL", served.as_uri())
    monkeypatch.setattr(data, "MNIST_SHA256", "0" * 64)
    with pytest.raises(OSError, match="SHA-256 .* nothing was saved"):
        load_mnist("full", download=True)
    assert list((tmp_path / "keras" / "datasets").iterdir()) == []  # no partial file left
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(served.read_bytes()).hexdigest())
    (x_train, _), _ = splits = load_mnist("full", download=True)
    assert len(x_train) == 40 and splits.source == str(tmp_path / "keras" / "datasets" / "mnist.npz")


def test_download_from_an_unreachable_server_fails_within_its_timeout(monkeypatch, tmp_path):
    """A server that accepts and never answers: an OSError after the timeout, not a hang."""
    import socket
    import time

    import mnist_mlp.data as data

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(data, "MNIST_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/mnist.npz")
        start = time.perf_counter()
        with pytest.raises(OSError, match="MNIST download from .* failed"):
            load_mnist("full", download=True, timeout=0.5)
        assert time.perf_counter() - start < 10
    assert list((tmp_path / "datasets").iterdir()) == []


def test_embedded_subset_is_stratified_real_mnist(embedded):
    (x_train, y_train), (x_test, y_test) = embedded
    assert x_train.shape == (6000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert (np.bincount(y_train) == 600).all() and (np.bincount(y_test) == 100).all()
    assert 0.10 < x_train.mean() / 255 < 0.16  # MNIST's mean intensity is 0.1307


def test_embedded_subset_matches_the_full_files(shared_mnist, embedded):
    """The embedded images are byte-identical to the full MNIST at the recorded indices."""
    from importlib import resources

    (x_full, y_full), (xt_full, yt_full) = load_mnist(shared_mnist)
    with np.load(resources.files("mnist_mlp") / "_data" / "mnist_subset.npz") as npz:
        train_idx, test_idx = npz["train_indices"], npz["test_indices"]
    (x_train, y_train), (x_test, y_test) = embedded
    np.testing.assert_array_equal(x_full[train_idx], x_train)
    np.testing.assert_array_equal(y_full[train_idx], y_train)
    np.testing.assert_array_equal(xt_full[test_idx], x_test)
    assert len(x_full) == 60000 and len(xt_full) == 10000


def test_rebuild_script_is_reproducible(shared_mnist, tmp_path, embedded):
    from scripts.make_embedded_subset import main

    out = tmp_path / "subset.npz"
    main(["--data-dir", str(shared_mnist), "--output", str(out)])
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["x_train"], embedded[0][0])
        np.testing.assert_array_equal(npz["y_test"], embedded[1][1])


def test_fashion_mnist_loads_through_the_same_code(tmp_path):
    from pathlib import Path

    if Path(FASHION_MNIST_DEBIAN_DIR).is_dir():
        (x_train, y_train), (x_test, _) = splits = load_fashion_mnist()
        assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
        assert splits.name == "fashion-mnist"
        assert set(np.unique(y_train)) == set(range(10))
    else:  # same format: a copy of any IDX directory loads the same way
        _make_dataset(tmp_path)
        assert load_fashion_mnist(tmp_path).name == "fashion-mnist"


def test_splits_pickle_and_repr(embedded):
    import pickle

    again = pickle.loads(pickle.dumps(embedded))
    assert again.source == "embedded" and "n_train=6000" in repr(again)
    np.testing.assert_array_equal(again[0][0], embedded[0][0])
