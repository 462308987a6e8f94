"""Inverted images (dark ink on light paper): answered or refused, in-process and served.

For MNIST and Fashion-MNIST, fits the study's pipeline on the training set
(tracking on, a fresh SQLite store), then sends ``--n`` normal and ``--n``
inverted (``255 - x``) test images, one image per call, to

- the fitted pipeline (``predict_proba``: in-process), and
- ``mlflow models serve`` of its logged model (``/invocations``: served),

and counts the answers (accuracy, median top probability) and the refusals
(``ValueError`` in-process, HTTP 400 served). Last, the whole test set,
normal, in-process in one call per image: how many normal images are refused;
and the range of two brightness statistics over the test images, normal and
inverted: each image's mean (the two overlap for Fashion-MNIST) and its
border's mean (they do not).

Usage: python benchmarks/inverted_input.py [--n 1000] [--epochs 5] [--mnist-dir DIR] [--out PATH]
Runs at any commit of this package (before the background check: nothing refused).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _in_process(pipe, images, labels):
    """Per image: the top probability and whether it is right, or None when refused."""
    answers = []
    for image, label in zip(images, labels):
        try:
            proba = pipe.predict_proba(image[np.newaxis])[0]
        except ValueError:
            answers.append(None)
            continue
        answers.append((float(proba.max()), bool(pipe.classes_[proba.argmax()] == label)))
    return answers


def _served(url, images, labels):
    from tests.test_servers import _post

    answers, messages = [], set()
    for image, label in zip(images, labels):
        status, answer, _ = _post(url, {"inputs": image[np.newaxis].tolist()})
        if status == 400:
            answers.append(None)
            messages.add(answer["message"])
        else:
            assert status == 200, answer
            answers.append((None, answer["predictions"][0] == label))
    return answers, sorted(messages)[:1]


def _brightness(images):
    """Lowest and highest, over the images, of each image's mean and of its border's mean.

    Computed here, not with mnist_mlp.serving.Background, so that it runs at commits without it.
    """
    x = images.astype(np.float64)
    border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1).mean(axis=1)
    return {name: [round(float(v.min()), 1), round(float(v.max()), 1)]
            for name, v in (("image_mean", x.mean(axis=(1, 2))), ("border_mean", border))}


def _summary(answers):
    answered = [a for a in answers if a is not None]
    top = [a[0] for a in answered if a[0] is not None]
    return {
        "n": len(answers),
        "refused": len(answers) - len(answered),
        "answered": len(answered),
        "accuracy_of_answered": round(float(np.mean([a[1] for a in answered])), 4) if answered else None,
        "wrong_answers": sum(not a[1] for a in answered),
        **({"median_top_probability": round(float(np.median(top)), 4)} if top else {}),
    }


def _dataset(name, pipe, uri, tmp, x_test, y_test, n):
    from tests.helpers import BIN, start_http_server

    rng = np.random.default_rng(0)
    pick = rng.choice(len(x_test), n, replace=False)
    normal, labels = x_test[pick], y_test[pick]
    inverted = 255 - normal
    result = {"in_process": {"normal": _summary(_in_process(pipe, normal, labels)),
                             "inverted": _summary(_in_process(pipe, inverted, labels))}}
    server, port = start_http_server(
        lambda port: [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{pipe.run_id_}/model",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        Path(tmp) / f"serve-{name}.log", "/ping", env={"MLFLOW_TRACKING_URI": uri},
    )
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        served_normal, _ = _served(url, normal, labels)
        served_inverted, messages = _served(url, inverted, labels)
    finally:
        server.stop()
    result["served"] = {"normal": _summary(served_normal),
                        "inverted": {**_summary(served_inverted), "message": messages[0] if messages else None}}
    whole = _in_process(pipe, x_test, y_test)
    result["whole_test_set"] = {"n": len(whole), "normal_refused": sum(a is None for a in whole)}
    result["brightness_min_max"] = {"test": _brightness(x_test), "test_inverted": _brightness(255 - x_test)}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="normal and inverted test images each")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mnist-dir", default="/work/shared/data/mnist")
    parser.add_argument("--fashion-dir", default=None, help="default: Debian's dataset-fashion-mnist")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/inverted_input.json"))
    args = parser.parse_args(argv)

    from mnist_mlp import make_pipeline
    from mnist_mlp.data import load_fashion_mnist, load_mnist

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    report = {"commit": commit, "epochs": args.epochs, "datasets": {}}
    loaders = {"mnist": lambda: load_mnist(args.mnist_dir), "fashion-mnist": lambda: load_fashion_mnist(args.fashion_dir)}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        os.environ.pop("MNIST_MLP_TRACKING", None)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        os.chdir(tmp)
        for name, load in loaders.items():
            (x_train, y_train), (x_test, y_test) = load()
            start = time.perf_counter()
            pipe = make_pipeline(epochs=args.epochs, random_state=0).fit(x_train, y_train)
            report["datasets"][name] = {"train_images": len(x_train), "fit_s": round(time.perf_counter() - start, 1),
                                        "contract": pipe.input_contract_,
                                        **_dataset(name, pipe, uri, tmp, x_test, y_test, args.n)}
            print(json.dumps({name: report["datasets"][name]}, indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
