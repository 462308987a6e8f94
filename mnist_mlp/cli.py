"""The ``mnist-mlp`` command line."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["main"]


def _layer_sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 128,256; got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive; got {text!r}")
    return sizes


def _build_parser():
    parser = argparse.ArgumentParser(
        prog="mnist-mlp",
        description="Train, study and tune Keras MLPs on MNIST the scikit-learn way.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="fit one pipeline and evaluate it on the test set",
        description="Fit flatten -> scale -> MLPClassifier and report test metrics. "
        "Defaults are the study's default network; the data default to the embedded subset.",
    )
    data = fit.add_argument_group("data")
    data.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    data.add_argument(
        "--data-dir",
        help="directory of IDX files or mnist.npz (default: $MNIST_MLP_DATA_DIR, else the "
        "embedded subset)",
    )
    data.add_argument("--scaler", choices=["fixed", "minmax"], default="fixed")
    model = fit.add_argument_group("model")
    model.add_argument("--hidden-layer-sizes", type=_layer_sizes, default=(128, 256), metavar="N,N")
    model.add_argument("--activation", default="relu")
    model.add_argument("--optimizer", default="adam")
    model.add_argument("--learning-rate", type=float, default=0.001, dest="learning_rate_init")
    model.add_argument("--kernel-initializer", default="glorot_uniform")
    model.add_argument("--penalty", choices=["l1", "l2"], default=None)
    model.add_argument("--alpha", type=float, default=1e-4)
    model.add_argument("--dropout", type=float, default=0.0)
    training = fit.add_argument_group("training")
    training.add_argument("--batch-size", type=int, default=256)
    training.add_argument("--epochs", type=int, default=100)
    training.add_argument("--validation-split", type=float, default=0.2)
    training.add_argument("--random-state", type=int, default=0)
    training.add_argument("--verbose", type=int, default=0, help="Keras verbosity (0, 1, 2)")
    fit.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return parser


def _load_data(args):
    from mnist_mlp.data import load_fashion_mnist, load_mnist

    if args.dataset == "fashion-mnist":
        return load_fashion_mnist(args.data_dir)
    return load_mnist(args.data_dir, download=False)


def _fit(args):
    from mnist_mlp.evaluation import evaluate
    from mnist_mlp.pipeline import make_pipeline

    splits = _load_data(args)
    (x_train, y_train), (x_test, y_test) = splits
    pipeline = make_pipeline(
        scaler=args.scaler,
        hidden_layer_sizes=args.hidden_layer_sizes,
        activation=args.activation,
        optimizer=args.optimizer,
        learning_rate_init=args.learning_rate_init,
        kernel_initializer=args.kernel_initializer,
        penalty=args.penalty,
        alpha=args.alpha,
        dropout=args.dropout,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_split=args.validation_split,
        random_state=args.random_state,
        verbose=args.verbose,
    )
    print(f"data: {splits.name} from {splits.source}: {len(x_train)} train, {len(x_test)} test")
    pipeline.fit(x_train, y_train)
    clf = pipeline[-1]
    scores = evaluate(pipeline, x_test, y_test)
    result = {
        "dataset": splits.name,
        "source": splits.source,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "params": {k: v for k, v in vars(args).items() if k not in ("command", "json")},
        "epochs_run": clf.n_iter_,
        "weight_updates": clf.n_weight_updates_,
        "fit_time_s": round(clf.fit_time_, 3),
        **{k: v for k, v in scores.items() if k != "confusion_matrix"},
        "final_val_accuracy": clf.history_.get("val_accuracy", [None])[-1],
    }
    print(
        f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f}, "
        f"macro F1 {result['test_f1_macro']:.4f}; fit {result['fit_time_s']:.1f} s, "
        f"{result['epochs_run']} epochs, {result['weight_updates']} weight updates"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0


def main(argv=None):
    """Run the ``mnist-mlp`` command line; returns the exit status."""
    args = _build_parser().parse_args(argv)
    try:
        return {"fit": _fit}[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mnist-mlp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
