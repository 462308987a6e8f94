"""Section 2.5.1 of the study in plain Keras, outside mnist_mlp: Keras 2 or 3.

The study published 82.26 % test accuracy (loss 1.49) for RMSprop (0.001,
rho 0.99) + L1 0.01 on the hidden layers + dropout 0.3, 100 epochs at batch
256 on the first 48,000 training images. This script builds exactly that
network with nothing but Keras, so that the figure can be checked in the
framework the study used (Keras 2, TensorFlow 2.15) as well as in Keras 3.
It reads the IDX files itself: it needs only TensorFlow and NumPy.

    python -m venv /tmp/keras2
    /tmp/keras2/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2"
    /tmp/keras2/bin/python benchmarks/plain_keras_2_5_1.py --data-dir ../shared/data/mnist \\
        --seeds 0,1,2 --output benchmarks/results/plain_keras2_2.5.1.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _idx(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    import numpy as np

    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load(data_dir, stem):
    (path,) = sorted(Path(data_dir).glob(f"{stem}*"))[:1]
    return _idx(path)


def _keras():
    import tensorflow as tf

    try:
        import keras
    except ImportError:
        return tf.keras, tf.__version__
    if str(getattr(keras, "__version__", "")).startswith("3"):
        return keras, keras.__version__
    return tf.keras, f"tf.keras {tf.__version__}"  # Keras 2, as TensorFlow <= 2.15 ships it


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    keras, version = _keras()

    x_train = _load(args.data_dir, "train-images").reshape(-1, 784).astype("float32") / 255
    y_train = keras.utils.to_categorical(_load(args.data_dir, "train-labels"), 10)
    x_test = _load(args.data_dir, "t10k-images").reshape(-1, 784).astype("float32") / 255
    y_test = keras.utils.to_categorical(_load(args.data_dir, "t10k-labels"), 10)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow, as the study
        l1 = keras.regularizers.l1(0.01)
        model = keras.Sequential([
            keras.Input((784,)),
            keras.layers.Dense(128, activation="relu", kernel_regularizer=l1),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(256, activation="relu", kernel_regularizer=l1),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.001, rho=0.99),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        history = model.fit(x_train, y_train, batch_size=256, epochs=args.epochs,
                            validation_split=0.2, shuffle=False, verbose=0)
        fit_s = time.perf_counter() - start
        loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
        row = {"seed": seed, "test_accuracy_percent": round(100 * accuracy, 2), "test_loss": round(loss, 4),
               "final_val_accuracy": round(history.history["val_accuracy"][-1], 4), "fit_s": round(fit_s, 1)}
        print(json.dumps(row), flush=True)
        results.append(row)
    accuracies = [r["test_accuracy_percent"] for r in results]
    mean = sum(accuracies) / len(accuracies)
    sd = (sum((a - mean) ** 2 for a in accuracies) / max(len(accuracies) - 1, 1)) ** 0.5
    summary = {"section": "2.5.1", "keras": version, "epochs": args.epochs, "results": results,
               "mean_test_accuracy_percent": round(mean, 2), "sd_test_accuracy_percent": round(sd, 2),
               "published_test_accuracy_percent": 82.26, "published_loss": 1.49}
    if args.output:
        args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
