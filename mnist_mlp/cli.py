"""The ``mnist-mlp`` command line: ``fit``, ``study``, ``tune``, ``report`` and ``predict``.

Every command that records runs ends by saying where they are (the store and
experiment) and the ``mlflow ui`` line that opens them; ``--help`` shows
each option's default. ``docs/cli.md`` is the user's guide.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

from mnist_mlp import interrupts
from mnist_mlp.tracking import counted

__all__ = ["console_main", "main"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default as a user would type it (``128,256``, not ``(128, 256)``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "%(default)" in text or not action.option_strings or default is None or default is False \
                or default == argparse.SUPPRESS:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        return f"{text} (default: {shown})".strip()


def _tracking_uri(text):
    """A tracking URI as given, or a path made one: ``runs.db`` -> ``sqlite:///<abs>/runs.db``."""
    if "://" in text or text.startswith("sqlite:") or text.startswith("databricks"):
        return text
    path = Path(text).expanduser().resolve()
    return f"sqlite:///{path}" if path.suffix == ".db" else path.as_uri()


def _whole(text):
    """An int, also written as a float (MLproject passes numbers as floats: "100.0")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}")
    return int(value)


def _optional_count(text):
    """A positive whole number, or "" for "not given" (the study's own setting).

    Zero and negative counts are refused (exit status 2): ``--epochs 0`` once
    silently meant the study's 100 epochs.
    """
    if text.strip() == "":
        return None
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number; got {text!r}")
    return value


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def _duration(text):
    """Seconds from "90s", "15m", "1h", "1h30m" or plain seconds ("900"), positive; "" for "not given"."""
    if text.strip() == "":
        return None
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 15m, 1h or 1h30m; got {text!r}")
    hours, minutes, seconds = (float(part or 0) for part in match.groups())
    total = 3600 * hours + 60 * minutes + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration above zero; got {text!r}")
    return total


def _penalty(text):
    if text.lower() in ("none", ""):
        return None
    if text.lower() not in ("l1", "l2"):
        raise argparse.ArgumentTypeError(f"expected l1, l2 or none; got {text!r}")
    return text.lower()


def _optional_float(text):
    """A number, or "none" / "" for None (MLproject passes every parameter, so "none" stands for absent)."""
    if text.strip().lower() in ("none", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or none; got {text!r}") from None


def _boolean(text):
    """yes/no, true/false, 1/0 (MLproject passes a flag's value as a word)."""
    value = {"true": True, "yes": True, "1": True, "1.0": True,
             "false": False, "no": False, "0": False, "0.0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false; got {text!r}")
    return value


def _layer_sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 128,256; got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive; got {text!r}")
    return sizes


def build_parser():
    """The ``mnist-mlp`` argument parser: one sub-command per job, each built by its own function."""
    parser = argparse.ArgumentParser(
        prog="mnist-mlp",
        description="Train, study and tune Keras MLPs on MNIST the scikit-learn way. Every fit is an "
                    "MLflow run; each command ends with where its runs are and how to open them.",
        formatter_class=_HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, **kwargs):
        return commands.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    for add in (_add_fit_command, _add_study_command, _add_tune_command, _add_report_command,
                _add_predict_command):
        add(command)
    return parser


def _add_fit_command(command):
    fit = command(
        "fit",
        help="fit one pipeline and evaluate it on the test set",
        description="Fit flatten -> scale -> MLPClassifier and report test metrics. "
        "Defaults are the study's default network; the data default to the embedded subset.",
    )
    data = fit.add_argument_group("data")
    _add_data_args(data)
    data.add_argument("--scaler", choices=["fixed", "minmax"], default="fixed",
                      help="fixed: pixels / 255; minmax: scikit-learn's MinMaxScaler")
    model = fit.add_argument_group("model")
    model.add_argument("--hidden-layer-sizes", type=_layer_sizes, default=(128, 256), metavar="N,N",
                       help="units of each hidden layer")
    model.add_argument("--activation", default="relu", help="a Keras activation")
    model.add_argument("--optimizer", default="adam", help="adam, rmsprop, sgd or another Keras optimizer")
    model.add_argument("--learning-rate", type=float, default=0.001, dest="learning_rate_init",
                       help="the optimizer's learning rate")
    model.add_argument("--kernel-initializer", default="glorot_uniform", help="a Keras initializer")
    model.add_argument("--penalty", type=_penalty, default=None, help="l1, l2 or none (default: none)")
    model.add_argument("--alpha", type=float, default=1e-4, help="strength of --penalty")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout rate after each hidden layer")
    model.add_argument("--input-dropout", type=float, default=0.0, help="dropout rate on the inputs")
    model.add_argument("--max-norm", type=_optional_float, default=None, metavar="C",
                       help="max-norm bound on each hidden unit's incoming weights, or none")
    training = fit.add_argument_group("training")
    training.add_argument("--learning-rate-schedule", dest="learning_rate",
                          choices=["constant", "invscaling", "adaptive", "cosine"], default="constant",
                          help="scikit-learn's schedules, or a cosine decay to the last epoch")
    training.add_argument("--early-stopping", type=_boolean, nargs="?", const=True, default=False, metavar="BOOL",
                          help="stop when the validation accuracy stalls; keep the best epoch's weights")
    training.add_argument("--n-iter-no-change", type=_whole, default=10,
                          help="epochs without improvement that --early-stopping and 'adaptive' wait")
    training.add_argument("--tol", type=float, default=1e-4, help="the least improvement that counts")
    training.add_argument("--shuffle", type=_boolean, nargs="?", const=True, default=False, metavar="BOOL",
                          help="shuffle the training rows each epoch (the study does not)")
    training.add_argument("--batch-size", type=_whole, default=256, help="samples per weight update")
    training.add_argument("--epochs", type=_whole, default=100, help="passes over the training data")
    training.add_argument("--validation-split", type=float, default=0.2,
                          help="fraction held out from the end of the training data")
    training.add_argument("--random-state", type=_whole, default=0, help="seed of weights, dropout, shuffling")
    training.add_argument("--verbose", type=int, default=0,
                          help="Keras verbosity: 0, 1 (a bar per epoch; 2 when output is not a terminal), 2")
    _add_threads_arg(training)
    _add_tracking_args(fit, "MLflow experiment of the run (default: $MLFLOW_EXPERIMENT_NAME, else Default)")
    fit.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")


def _add_study_command(command):
    study = command(
        "study", help="run study experiments, tracked in MLflow",
        description="Run one experiment of the study (a section such as 2.2) or all of them. "
        "Each is a search whose candidates are also scored on the test set.",
    )
    study.add_argument("experiment", help="a study section (2.1, 2.2, 2.3, 2.4.1, 2.4.2, 2.5.1, "
                       "2.5.2, 3), several separated by commas, or 'all' (the study's sections); "
                       "beyond the study, run only when named: 4 (the Dropout paper's MLPs)")
    _add_data_args(study)
    study.add_argument("--epochs", type=_optional_count,
                       help="override the study's epochs (quick runs; default: the section's, 100 for most)")
    study.add_argument("--n-train", type=_optional_count,
                       help="use only the first N training images (default: all)")
    study.add_argument("--seeds", type=_int_list,
                       help="random states to repeat each run with, e.g. 0,1,2 (empty: the section's)")
    study.add_argument("--n-jobs", type=_whole, default=1,
                       help="fits at once: with several sections, that many sections side by side, each "
                            "in a process of its own, the longest first; with one, its search's n_jobs")
    study.add_argument("--refit", action="store_true",
                       help="refit everything, even fits an interrupted run already finished")
    study.add_argument("--scheduler", help="run the fits on the Dask cluster at this address "
                       "(tcp://host:8786); tracking must then be an MLflow server")
    _add_threads_arg(study)
    _add_tracking_args(study, _STUDY_EXPERIMENT_HELP)
    study.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")


def _add_tune_command(command):
    tune = command(
        "tune", help="section 3: tune by Hyperband over epochs, then train the best afresh",
        description="Search hidden sizes, L2 alpha and learning rate for validation accuracy "
        "and for macro F1, then train a fresh network with the best parameters and register it. "
        "A quick run: mnist-mlp tune --epochs 9 (rungs of 3 and 9 epochs).",
    )
    _add_data_args(tune)
    tune.add_argument("--epochs", type=_optional_count,
                      help="hyperband: epochs of the last rung (default 81); grid, halving-rows: of "
                           "each search fit (default 30)")
    tune.add_argument("--final-epochs", type=_optional_count, help="epochs of the final fit (default 50)")
    tune.add_argument("--n-train", type=_optional_count, help="use only the first N training images")
    tune.add_argument("--method", choices=["hyperband", "grid", "halving-rows"], default="hyperband",
                      help="hyperband: over epochs, rungs continuing training (the study's tuner); grid: "
                           "every candidate for --epochs; halving-rows: successive halving over rows")
    tune.add_argument("--wide", action="store_true", help="a wider search space than the study's")
    tune.add_argument("--budget", type=_duration, metavar="DURATION",
                      help="tune within this time (90s, 15m, 1h30m, or seconds): Hyperband over the Dropout "
                           "paper's space (depth, width, dropout, input dropout, max-norm, learning rate and "
                           "schedule, alpha) by validation accuracy, then the final network on all training "
                           "rows. The budget covers both: the search gets half of it (it ends at most one rung "
                           "past that), the final network as many epochs as the rest allows at the per-epoch "
                           "time measured in the search (at most --final-epochs, default 100)")
    tune.add_argument("--final-protocol", choices=["ours", "study", "both"], default="ours",
                      help="the final network trains on all training rows (ours) or, as the study's "
                           "last cell, with validation_split=0.2 (48,000 rows of the full MNIST); "
                           "both: one of each (what `study 3` does at full fidelity)")
    tune.add_argument("--seed", type=_whole, default=0, help="random state of every fit")
    tune.add_argument("--n-jobs", type=_whole, default=1, help="fits at once (the searches' n_jobs)")
    tune.add_argument("--refit", action="store_true",
                      help="refit everything, even fits an interrupted run already finished")
    tune.add_argument("--scheduler", help="run the fits on the Dask cluster at this address")
    _add_threads_arg(tune)
    _add_tracking_args(tune, _STUDY_EXPERIMENT_HELP)
    tune.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")


def _add_report_command(command):
    report = command(
        "report", help="write the study report (Markdown and HTML) from MLflow runs",
        description="Read the study's runs back from MLflow and write a report setting our "
        "figures beside the published ones.",
    )
    report.add_argument("--output", default="report", help="directory to write into")
    _add_tracking_args(report, _STUDY_EXPERIMENT_HELP)


def _add_predict_command(command):
    predict = command(
        "predict", help="predict digits with a logged or registered model",
        description="Load a model logged by mnist-mlp (runs:/<run id>/model, models:/<model id>, "
        "models:/mnist-mlp@champion, a local folder) and print one predicted label per input image. "
        "Inputs go through the model's own input contract: raw 28x28 uint8 pixels, as it was trained.",
    )
    predict.add_argument("model", help="model URI: runs:/<run id>/model, models:/m-..., models:/<name>@<alias>, "
                                       "models:/<name>/<version>, or a folder")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files (PNG, JPEG: one 28x28 grayscale image each), IDX files "
                              "(t10k-images-idx3-ubyte[.gz]) or .npy arrays (one image or a batch)")
    predict.add_argument("--json", action="store_true", help="print the labels as a JSON object instead")
    predict.add_argument("--tracking-uri", type=_tracking_uri,
                         help="the MLflow store to resolve runs:/ and models:/ URIs in "
                              "(default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")


_STUDY_EXPERIMENT_HELP = ("prefix of the sections' MLflow experiments: <prefix> 2.4.1: L2 with RMSprop "
                          "(default: $MNIST_MLP_STUDY_EXPERIMENT, else mnist-mlp study)")


def _add_tracking_args(parser, experiment_help):
    group = parser.add_argument_group("tracking")
    group.add_argument("--tracking-uri", type=_tracking_uri,
                       help="MLflow store: sqlite:///path.db, a .db file, a folder or http://server "
                            "(default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    group.add_argument("--experiment", dest="experiment_name", help=experiment_help,
                       metavar="NAME" if "prefix" not in experiment_help else "PREFIX")


def _threads(text):
    if text.strip().lower() == "auto":
        return "auto"
    value = _whole(text)
    if value == 0 or value < -1:
        raise argparse.ArgumentTypeError(f"expected a number of threads >= 1, -1 (every core) or auto; got {text!r}")
    return str(value)


def _add_threads_arg(parser):
    parser.add_argument("--threads", type=_threads, default=None,
                        help="threads of each fit's compiled loop: N, -1 (every core) or auto, the cores other "
                             "programs leave idle as a fit starts (default: $MNIST_MLP_THREADS, else auto)")


def _int_list(text):
    """Comma-separated ints, or "" for "not given" (the study's own seeds)."""
    if text.strip() == "":
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 0,1,2; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one int, like 0,1,2; got {text!r}")
    return values


def _add_data_args(parser):
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist", help="which images")
    parser.add_argument("--data-dir", help="directory of IDX files or mnist.npz "
                        "(default: $MNIST_MLP_DATA_DIR, else the embedded subset, as load_mnist())")


def _load_data(args):
    from mnist_mlp.data import load_fashion_mnist, load_mnist

    data_dir = args.data_dir or None  # MLproject passes "" for "not given"
    if args.dataset == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    return load_mnist(Path(data_dir) if data_dir else None)  # a Path: a folder named "full" is a folder


def _write_json(path, result):
    if path:
        with open(path, "w") as fh:
            json.dump(result, fh, indent=2, default=str)


def _cluster(args):
    """The Dask cluster block for ``--scheduler``, or nothing."""
    if not getattr(args, "scheduler", None):
        return contextlib.nullcontext()
    from mnist_mlp.model_selection import on_cluster

    return on_cluster(args.scheduler)


def _study(args):
    from mnist_mlp.study import experiment_names, load_experiment

    names = experiment_names() if args.experiment == "all" else [
        name.strip() for name in args.experiment.split(",") if name.strip()]
    for name in names:
        load_experiment(name)  # unknown names fail before any work
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"experiment: name each section once; got {args.experiment!r}")
    if args.n_jobs < 1:
        raise ValueError(f"--n-jobs must be at least 1; got {args.n_jobs}")
    splits = _load_data(args)
    print(f"data: {splits.describe()}")
    _note_environment()
    start = time.perf_counter()
    if len(names) > 1 and args.n_jobs > 1 and not args.scheduler:
        results = _study_side_by_side(names, splits, args)
    else:
        results = _study_in_turn(names, splits, args)
    summary = {"experiments": results, "wall_time_s": time.perf_counter() - start}
    print(f"study: {counted(len(results), 'section')} in {summary['wall_time_s']:.1f} s")
    _print_where([load_experiment(name).experiment_name for name in names])
    _write_json(args.json, summary)
    return 0


def _study_side_by_side(names, splits, args):
    """Sections ``args.n_jobs`` at a time in worker processes; each table as its section finishes."""
    from mnist_mlp.study import run_side_by_side

    at_once = min(args.n_jobs, len(names))
    print(f"study: {len(names)} sections, {at_once} at a time, the longest first")

    def started(name):
        print(f"study {name}: started", flush=True)

    def done(name, result):
        print(_section_table(name, result), end="", flush=True)

    return run_side_by_side(names, splits, n_jobs=args.n_jobs, on_start=started, on_done=done,
                            epochs=args.epochs, n_train=args.n_train, seeds=args.seeds, resume=not args.refit)


def _study_in_turn(names, splits, args):
    from mnist_mlp.study import progress_display, run_experiment

    results = []
    for name in names:
        with _cluster(args), progress_display(f"study {name}", None) as callback:
            result = run_experiment(
                name, splits, epochs=args.epochs, n_train=args.n_train, seeds=args.seeds,
                n_jobs=args.n_jobs, progress=lambda description, total: callback.set_total(total),
                resume=not args.refit,
            )
        results.append(result)
        print(_section_table(name, result), end="")
    return results


def _tune(args):
    from mnist_mlp.study import load_experiment, progress_display, run_tuning

    if args.budget is not None:
        return _tune_within_budget(args)
    splits = _load_data(args)
    print(f"data: {splits.describe()}")
    with _cluster(args), progress_display("tuning", None) as callback:
        result = run_tuning(
            splits, epochs=args.epochs, final_epochs=args.final_epochs, n_train=args.n_train,
            n_jobs=args.n_jobs, seed=args.seed, method=args.method, wide=args.wide,
            progress=lambda description, total: callback.set_total(total), resume=not args.refit,
            final_protocols=("ours", "study") if args.final_protocol == "both" else (args.final_protocol,),
        )
    print(_section_table("3", result), end="")
    _print_where([load_experiment("3").experiment_name])
    _write_json(args.json, result)
    return 0


def _tune_within_budget(args):
    """``tune --budget``: the budgeted search and final network, then what the budget bought."""
    from mnist_mlp.study import load_experiment, progress_display, run_budget_tuning

    started = time.perf_counter()  # the budget counts the data's loading too
    if args.method != "hyperband" or args.wide or args.epochs or args.final_protocol != "ours":
        raise ValueError("tune --budget runs Hyperband over its own space with the final network on all rows: "
                         "drop --method, --wide, --epochs and --final-protocol")
    splits = _load_data(args)
    print(f"data: {splits.describe()}")
    with _cluster(args), progress_display("tuning within a budget", None) as callback:
        result = run_budget_tuning(
            splits, args.budget, n_train=args.n_train, n_jobs=args.n_jobs, seed=args.seed,
            final_max_epochs=args.final_epochs or 100, progress=lambda description, total: callback.set_total(total),
            resume=not args.refit, started=started)
    print(_section_table("3", result), end="")
    bought = result["budget"]
    print(f"budget {bought['budget_s']:g} s: the search ran {bought['spent_s']:.0f} s of its "
          f"{bought['search_budget_s']:g} s, {counted(bought['fits'], 'fit')}, {counted(bought['epochs'], 'epoch')}; "
          "the final network "
          f"{counted(bought['final_epochs'], 'epoch')} (estimated {bought['final_estimate_s']:.0f} s); "
          f"{time.perf_counter() - started:.0f} s in all")
    print("best validation score by epochs trained: " + ", ".join(
        f"{score:.4f} at {epochs} ({elapsed:.0f} s)" for elapsed, epochs, score in bought["best_score_history"]))
    _print_where([load_experiment("3").experiment_name])
    _write_json(args.json, result)
    return 0


def _section_table(name, result):
    """The section's results table, read back from MLflow (a line of figures if tracking is off)."""
    from mnist_mlp.study import collect_section, format_section, format_tuning
    from mnist_mlp.tracking import tracking_enabled

    if not tracking_enabled():
        final = result.get("final")
        if final:
            return (f"tuned: best {final['params']}; test accuracy {final['test_accuracy']:.4f}, "
                    f"macro F1 {final['test_f1_macro']:.4f} ({result['wall_time_s']:.1f} s)\n")
        best = max(result["results"], key=lambda r: r["validation_score"])
        return f"study {name}: {result['wall_time_s']:.1f} s; best validation score {best['validation_score']:.4f}\n"
    section = collect_section(name)
    if "searches" in result:
        return format_tuning(result, section)
    return format_section(section, wall_time_s=result["wall_time_s"], attempt=result.get("attempt"))


def _report(args):
    from mnist_mlp.study import write_report

    paths = write_report(args.output, tracking_uri=args.tracking_uri or None)
    for path in paths:
        print(f"wrote {path}")
    print(f"read from {_store_uri()}")
    _note_environment()
    return 0


def _note_environment():
    """Say on stderr where this environment differs from the committed report's (a checkout only)."""
    from mnist_mlp.study import difference_note

    note = difference_note()
    if note:
        print(f"mnist-mlp: {note}", file=sys.stderr)


def _predict(args):
    """Labels for the inputs, one per line (or JSON), through the model's own input contract."""
    import numpy as np

    from mnist_mlp.data import read_inputs

    batches = read_inputs(args.inputs)  # unreadable files fail before the model loads (seconds)
    model = _load_model(args.model)
    contract = (model.metadata.metadata or {}).get("mnist_mlp_input_contract")
    sample_shape = tuple(json.loads(contract)["sample_shape"] if isinstance(contract, str)
                         else contract["sample_shape"]) if contract else None
    labels = []
    for path, batch in zip(args.inputs, batches):
        if sample_shape is not None and batch.shape == sample_shape:
            batch = batch[np.newaxis]  # one sample saved without its batch axis
        labels.append(_predicted(model, batch, path))
    if args.json:
        print(json.dumps({"model": args.model, "predictions": [
            {"input": path, "labels": [_plain(v) for v in found]} for path, found in zip(args.inputs, labels)]}))
    else:
        for found in labels:
            for label in found:
                print(_plain(label))
    return 0


def _load_model(uri):
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        # Without MLflow's check of the model's pip requirements against this environment: it maps
        # every installed distribution to its modules (0.4-0.7 s of a 3 s command), to warn of a
        # version that differs. The forward model needs only NumPy and scikit-learn, whose
        # unpickling warns of another version itself (docs/cli.md#predict).
        return mlflow.pyfunc.load_model(uri, suppress_warnings=True)
    except (MlflowException, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"model {uri!r} cannot be loaded from {_store_uri()}: {message}") from None


def _predicted(model, batch, path):
    from mlflow.exceptions import MlflowException

    try:
        return list(model.predict(batch))
    except MlflowException as exc:  # the input contract's one-line reason
        raise ValueError(f"{path}: {exc.message}") from None


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _store_uri():
    from mnist_mlp.tracking import resolve_tracking_uri

    return resolve_tracking_uri()


def _print_where(experiment_names, run=None):
    """Where the command's runs are and how to open them: the store, the experiment(s), the ``mlflow ui`` line."""
    from mnist_mlp.tracking import tracking_enabled

    if not tracking_enabled():
        print("MLflow: tracking is off (MNIST_MLP_TRACKING=0): no runs were recorded")
        return
    from mnist_mlp.tracking import client, retrying

    uri = _store_uri()
    ids = {}
    for name in experiment_names:
        found = retrying(client(uri).get_experiment_by_name, name)
        if found is not None:
            ids[name] = found.experiment_id
    what = f"run {run[1]} ({run[0]})" if run else "runs"
    where = ", ".join(f"'{name}'" for name in ids) or "(none)"
    print(f"MLflow: {what} in experiment{'s' if len(ids) > 1 else ''} {where} of {uri}")
    page = f"#/experiments/{next(iter(ids.values()))}" if len(ids) == 1 else "#/experiments"
    if run and len(ids) == 1:
        page += f"/runs/{run[1]}"
    if uri.startswith(("http://", "https://")):
        print(f"Open: {uri.rstrip('/')}/{page}")
    else:
        print(f"Open: mlflow ui --backend-store-uri {shlex.quote(uri)}   then http://127.0.0.1:5000/{page}")


# The fit command's options that are MLPClassifier parameters of the same name.
_CLASSIFIER_ARGS = ("hidden_layer_sizes", "activation", "optimizer", "learning_rate_init", "kernel_initializer",
                    "penalty", "alpha", "dropout", "input_dropout", "max_norm", "learning_rate", "early_stopping",
                    "n_iter_no_change", "tol", "shuffle", "batch_size", "epochs", "validation_split", "random_state",
                    "verbose")


def _fit(args):
    from mnist_mlp.evaluation import evaluate
    from mnist_mlp.pipeline import make_pipeline

    splits = _load_data(args)
    (x_train, y_train), (x_test, y_test) = splits
    pipeline = make_pipeline(scaler=args.scaler, **{name: getattr(args, name) for name in _CLASSIFIER_ARGS})
    print(f"data: {splits.describe()}")
    from mnist_mlp.study import progress_display
    from mnist_mlp.tracking import dataset

    with progress_display("fit", 1) as callback, dataset(splits.name):
        pipeline.set_params(classifier__callbacks=[callback])
        if args.verbose == 1 and not sys.stdout.isatty():
            # Keras's per-batch bar writes colour codes and carriage returns: one line per epoch instead.
            pipeline.set_params(classifier__verbose=2)
        pipeline.fit(x_train, y_train)
    clf = pipeline[-1]
    scores = evaluate(pipeline, x_test, y_test)
    result = {
        "dataset": splits.name,
        "source": splits.source,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "params": {k: v for k, v in vars(args).items()
                   if k not in ("command", "json", "tracking_uri", "experiment_name")},
        "epochs_run": clf.n_iter_,
        "weight_updates": clf.n_weight_updates_,
        "fit_time_s": round(clf.fit_time_, 3),
        **{k: v for k, v in scores.items() if k != "confusion_matrix"},
        "final_val_accuracy": clf.history_.get("val_accuracy", [None])[-1],
        "run_id": getattr(pipeline, "run_id_", None),
        "threads": clf.n_threads_,
    }
    loop = (f"compiled loop, {counted(clf.n_threads_, 'thread')}" if clf.training_loop_ == "compiled"
            else f"keras.Model.fit: {clf.training_loop_reason_}")
    print(
        f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f}, "
        f"macro F1 {result['test_f1_macro']:.4f}; fit {result['fit_time_s']:.1f} s "
        f"({counted(result['epochs_run'], 'epoch')}, {counted(result['weight_updates'], 'weight update')}; {loop})"
    )
    _print_fit_run(result["run_id"])
    _write_json(args.json, result)
    return 0


def _print_fit_run(run_id):
    """Where the fit's run is and how to predict with its model (or where runs would be, untracked)."""
    if not run_id:
        _print_where([])
        return
    from mnist_mlp.tracking import client, retrying

    uri = _store_uri()
    run = retrying(client(uri).get_run, run_id)
    _print_where([retrying(client(uri).get_experiment, run.info.experiment_id).name], run=(run.info.run_name, run_id))
    print(f"Predict with it: mnist-mlp predict runs:/{run_id}/model IMAGE.png")


def main(argv=None, *, ends_process=False):
    """Run the ``mnist-mlp`` command line; returns the exit status.

    ``ends_process``: the process ends when it returns (the ``mnist-mlp``
    command, :func:`console_main`), so a Ctrl-C during TensorFlow's import
    stops at once; called in-process (a notebook, a test), the import is
    finished first, so that the next call can still fit.
    """
    args = build_parser().parse_args(argv)
    command = {"fit": _fit, "study": _study, "tune": _tune, "report": _report, "predict": _predict}[args.command]
    try:
        # SIGTERM (``kill``, a CI timeout, ``mlflow run`` cancelled) stops as Ctrl-C does: Python's
        # default is to die on the spot, leaving the runs in progress RUNNING for ever.
        with _environment(args), _project_run(args), interrupts.handled(ends_process=ends_process):
            return command(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"mnist-mlp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # the runs have ended KILLED on the way out; no traceback
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"mnist-mlp: {'terminated' if signum == signal.SIGTERM else 'interrupted'}; "
              "the runs in progress were ended KILLED", file=sys.stderr)
        return 128 + signum


@contextlib.contextmanager
def _environment(args):
    """The command's settings as the environment variables that carry them to every fit,
    worker processes included; restored afterwards (``main`` may be called again in-process)."""
    from mnist_mlp.study import EXPERIMENT_PREFIX_ENV
    from mnist_mlp.training import THREADS_ENV

    experiment = getattr(args, "experiment_name", None)
    settings = {
        "MLFLOW_TRACKING_URI": getattr(args, "tracking_uri", None),
        THREADS_ENV: getattr(args, "threads", None),
        ("MLFLOW_EXPERIMENT_NAME" if args.command == "fit" else EXPERIMENT_PREFIX_ENV): experiment,
    }
    saved = {key: os.environ.get(key) for key, value in settings.items() if value}
    os.environ.update({key: value for key, value in settings.items() if value})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _project_run(args):
    """Under ``mlflow run``, resume the project's run so our runs hang below it.

    ``mlflow run`` starts a run (with a random name, in the experiment it was
    given) and hands its id to the command in ``MLFLOW_RUN_ID``. Resumed, it
    is the parent of the runs this command starts in its experiment and
    their ``launched_by`` elsewhere (MLflow nests runs only within one
    experiment); it is renamed after the command and, at the end, describes
    and links every run it started. A failure ends it FAILED instead of
    leaving it RUNNING.
    """
    if not os.environ.get("MLFLOW_RUN_ID"):
        yield
        return
    import mlflow

    with mlflow.start_run() as run:
        name = _command_name(args)
        mlflow.set_tags({"mlflow.runName": f"mlflow run: {name}", "mnist_mlp.command": name})
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # a description must not hide the command's own error
                _describe_project_run(run, name)


def _command_name(args):
    """``study 2.4.1 (epochs 3, n_train 3000)``: the command and what it overrides."""
    name = {"study": f"study {getattr(args, 'experiment', '')}", "tune": f"tune ({getattr(args, 'method', '')})"}.get(
        args.command, args.command)
    overrides = [f"{key} {value}" for key in ("epochs", "n_train", "seeds", "final_epochs")
                 if args.command in ("study", "tune") and (value := getattr(args, key, None))]
    return f"{name} ({', '.join(overrides)})" if overrides else name


def _describe_project_run(run, name):
    """Give the project's run a description linking the runs it started, in every experiment."""
    from mnist_mlp import tracking

    client = tracking.client(tracking.resolve_tracking_uri())
    run_id = run.info.run_id
    started = []
    for experiment in client.search_experiments():
        for tag in ("mlflow.parentRunId", "launched_by"):
            started += [(experiment, r) for r in client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`{tag}` = '{run_id}'", max_results=200)]
    lines = [f"**mlflow run: {name}**", "", "Runs it started:", ""]
    lines += [f"- [{r.info.run_name}](#/experiments/{e.experiment_id}/runs/{r.info.run_id}) "
              f"in *{e.name}*" for e, r in started] or ["- none"]
    client.set_tag(run_id, tracking.NOTE_TAG, "\n".join(lines))


def console_main():
    """The ``mnist-mlp`` command (and ``python -m mnist_mlp``): :func:`main`, then exit with its status
    (:func:`mnist_mlp.interrupts.exit_process`: without the interpreter's seconds-long teardown)."""
    status = main(ends_process=True)
    if status >= 128:
        # Stopped: Python's own exit. Skipping the teardown after a stop early in the command (its
        # imports cut) crashed it, SIGSEGV or SIGABRT, 3 times in 57 stops; 0 in 82 this way.
        sys.exit(status)
    interrupts.exit_process(status)


if __name__ == "__main__":
    console_main()
