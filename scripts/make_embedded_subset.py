"""Rebuild the MNIST subset embedded in the package, reproducibly.

Draws, with a fixed seed, 600 training and 100 test images of each digit from
the full MNIST IDX files, keeps them in their original order, and writes
``mnist_mlp/_data/mnist_subset.npz``. Run from the repository root:

    python scripts/make_embedded_subset.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from mnist_mlp.data import N_CLASSES, load_idx_dataset

OUTPUT = Path(__file__).resolve().parents[1] / "mnist_mlp" / "_data" / "mnist_subset.npz"


def stratified_indices(labels, per_class, seed):
    """Indices of ``per_class`` samples of each class, drawn with ``seed``, sorted."""
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == digit), size=per_class, replace=False)
        for digit in range(N_CLASSES)
    ]
    return np.sort(np.concatenate(chosen))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="directory of the full MNIST IDX files")
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_idx_dataset(args.data_dir)
    train = stratified_indices(y_train, args.train_per_class, args.seed)
    test = stratified_indices(y_test, args.test_per_class, args.seed + 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        x_train=x_train[train],
        y_train=y_train[train].astype(np.uint8),
        x_test=x_test[test],
        y_test=y_test[test].astype(np.uint8),
        train_indices=train.astype(np.int32),
        test_indices=test.astype(np.int32),
    )
    # Hash the contents, not the file: zip headers carry the write time.
    digest = hashlib.sha256(np.concatenate([train, test]).tobytes()).hexdigest()
    print(f"wrote {args.output} ({len(train)} train, {len(test)} test), indices sha256 {digest[:16]}")


if __name__ == "__main__":
    main()
