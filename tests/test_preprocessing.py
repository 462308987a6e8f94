"""ImageFlattener and FixedRangeScaler."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from mnist_mlp import FixedRangeScaler, ImageFlattener


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 28, 28, 1), (4, 784)])
def test_flattener_accepts_the_three_layouts(shape):
    X = np.arange(np.prod(shape)).reshape(shape) % 256
    out = ImageFlattener().fit_transform(X)
    assert out.shape == (4, 784)
    np.testing.assert_array_equal(out, X.reshape(4, 784))


def test_flattening_is_row_wise():
    img = np.arange(28 * 28).reshape(1, 28, 28)
    out = ImageFlattener().fit_transform(img)
    np.testing.assert_array_equal(out[0, :28], img[0, 0])  # first row first
    np.testing.assert_array_equal(out[0, 28:56], img[0, 1])


def test_flattener_keeps_uint8():
    assert ImageFlattener().fit_transform(np.zeros((2, 28, 28), np.uint8)).dtype == np.uint8


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((3, 27, 27)), r"images must have shape \(n, 28, 28\)"),
        (np.zeros((3, 28, 28, 3)), r"got \(3, 28, 28, 3\)"),
        (np.zeros((3, 700)), "X has 700 features, but ImageFlattener is expecting 784"),
        (np.zeros((0, 28, 28)), "0 sample"),
        (np.full((2, 28, 28), np.nan), "NaN"),
        (np.full((2, 28, 28), np.inf), "infinity"),
        (np.full((2, 28, 28), "x"), "dtype='numeric' is not compatible|could not convert"),
        ([[1, 2, 3], [1, 2]], "ragged"),
    ],
)
def test_flattener_rejects_bad_images(X, message):
    with pytest.raises(ValueError, match=message):
        ImageFlattener().fit(X)


def test_flattener_checks_shape_at_transform_and_needs_fit():
    flat = ImageFlattener().fit(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match="28, 28"):
        flat.transform(np.zeros((2, 32, 32)))
    with pytest.raises(NotFittedError):
        ImageFlattener().transform(np.zeros((2, 28, 28)))


def test_flattener_records_a_tables_column_names_and_checks_them():
    import pandas as pd

    names = [f"px{i}" for i in range(784)]
    table = pd.DataFrame(np.arange(2 * 784).reshape(2, 784) % 256, columns=names)
    flat = ImageFlattener().fit(table)
    assert flat.feature_names_in_.tolist() == names
    np.testing.assert_array_equal(flat.transform(table), table.to_numpy())
    assert flat.get_feature_names_out().tolist() == names  # a table flattens to itself
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        flat.transform(table[names[::-1]])
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        flat.get_feature_names_out([f"q{i}" for i in range(784)])
    # Images carry no names: none recorded, and a refit on them forgets the table's.
    assert not hasattr(flat.fit(np.zeros((2, 28, 28))), "feature_names_in_")
    assert flat.get_feature_names_out()[0] == "pixel_0"


def test_flattener_learns_shape_when_none():
    flat = ImageFlattener(image_shape=None).fit(np.zeros((2, 32, 32, 3)))
    assert flat.image_shape_ == (32, 32, 3) and flat.n_features_in_ == 3072
    assert flat.transform(np.zeros((5, 32, 32, 3))).shape == (5, 3072)
    assert flat.get_feature_names_out()[:2].tolist() == ["pixel_0", "pixel_1"]


def test_scaler_is_pixel_over_255_whatever_the_batch():
    a = np.array([[0, 255, 51]], dtype=np.uint8)
    b = np.array([[0, 10, 51]], dtype=np.uint8)  # a batch with a smaller max
    scaler = FixedRangeScaler().fit(b)
    np.testing.assert_allclose(scaler.transform(a), [[0.0, 1.0, 0.2]])
    np.testing.assert_allclose(scaler.transform(b)[0, 2], 0.2)
    assert scaler.transform(a).dtype == np.float32
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(a)), a, atol=1e-4)


@pytest.mark.parametrize("bad", [-1.0, 256.0])
def test_scaler_rejects_values_outside_the_range(bad):
    X = np.zeros((2, 4))
    X[1, 2] = bad
    with pytest.raises(ValueError, match=r"values in \[0.0, 255.0\]"):
        FixedRangeScaler().fit(X)
    scaler = FixedRangeScaler().fit(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expects values"):
        scaler.transform(X)


def test_scaler_rejects_nan_and_bad_range():
    with pytest.raises(ValueError, match="NaN"):
        FixedRangeScaler().fit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="data_max > data_min"):
        FixedRangeScaler(data_min=1, data_max=1).fit(np.zeros((2, 2)))
