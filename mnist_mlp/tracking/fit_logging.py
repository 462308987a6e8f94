"""What a fit logs: its params under stable names, results, plots and model."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import logging
import math
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np

from mnist_mlp.serving import example_rows
from mnist_mlp.tracking import naming, runs, values

__all__ = ["dataset_inputs", "estimator_params", "log_evaluation", "log_fit_results", "log_model", "model_wanted",
           "sample_weight_summary", "sklearn_selection_tags", "track_fit"]


def estimator_params(estimator, n_samples):
    """The params of a fit, under names that mean the same in every run.

    Parameters
    ----------
    estimator : MLPClassifier
    n_samples : int
        Samples given to ``fit`` (training plus validation).

    Returns
    -------
    dict
    """
    network = estimator.network_spec()
    optimizer = network["optimizer"]
    config = optimizer.get_config()
    n_train = math.floor(n_samples * (1 - estimator.validation_split))
    params = {
        "estimator": type(estimator).__name__,
        "optimizer": type(optimizer).__name__.lower(),
        # Keras keeps it as float32: 7 significant digits give back what the user set.
        "learning_rate": float(f"{float(config['learning_rate']):.7g}"),
        "batch_size": estimator.batch_size,
        "epochs": estimator.epochs,
        "hidden_layer_sizes": list(network["hidden_layer_sizes"]),
        "activation": network["activation"],
        "kernel_initializer": values.describe(estimator.kernel_initializer),
        "penalty": str(estimator.penalty).lower(),
        "alpha": estimator.alpha,
        "class_weight": estimator.class_weight,
        "dropout": estimator.dropout,
        "input_dropout": estimator.input_dropout,
        "max_norm": estimator.max_norm,
        # "learning_rate" is the initial rate above (the study's runs say so): the schedule has its own name.
        "learning_rate_schedule": estimator.learning_rate,
        "early_stopping": estimator.early_stopping,
        "validation_split": estimator.validation_split,
        "shuffle": estimator.shuffle,
        "training_loop": estimator.training_loop,
        "random_state": estimator.random_state if isinstance(estimator.random_state, (int, type(None))) else "RandomState",
        "dataset": runs.current_dataset() or "unspecified",
        "n_train": n_train,
        "n_val": n_samples - n_train,
    }
    if estimator.learning_rate == "invscaling":
        params["power_t"] = estimator.power_t
    if estimator.early_stopping or estimator.learning_rate == "adaptive":
        params.update(n_iter_no_change=estimator.n_iter_no_change, tol=estimator.tol)
    for key in ("rho", "momentum", "beta_1", "beta_2", "nesterov"):
        if key in config:
            params[key] = config[key]
    return params


def _history_csv(history):
    keys = list(history)
    rows = ["epoch," + ",".join(keys)]
    for epoch in range(len(history.get("loss", []))):
        rows.append(f"{epoch}," + ",".join(repr(history[k][epoch]) for k in keys))
    return "\n".join(rows) + "\n"


def _digest(*arrays):
    """A short digest of arrays, from their shapes, dtypes and at most 200 evenly spaced rows each.

    What MLflow's dataset digests do too: a fingerprint that tells data apart
    at a glance, cheap enough for every fit (hashing all of MNIST would cost
    more than the tracking budget of a whole fit).
    """
    digest = hashlib.blake2b(digest_size=4)
    for array in arrays:
        array = np.asarray(array)
        digest.update(repr((array.shape, array.dtype.str)).encode())
        if len(array):
            rows = np.ascontiguousarray(array[np.linspace(0, len(array) - 1, min(len(array), 200)).astype(int)])
            digest.update(rows.tobytes() if rows.dtype != object else repr(rows.tolist()).encode())
    return digest.hexdigest()


def sample_weight_summary(sample_weight):
    """The ``sample_weight`` a fit was given, in a tag's few words: ``n=400 min=1 max=5 mean=1.4 digest=...``.

    Enough to tell weighted fits from unweighted ones and from each other at a
    glance (the digest, as for datasets: see :func:`_digest`), without
    storing the weights.
    """
    weights = np.asarray(sample_weight, dtype=float).ravel()
    if not len(weights):
        return "n=0"
    return (f"n={len(weights)} min={weights.min():g} max={weights.max():g} mean={weights.mean():.4g} "
            f"digest={_digest(weights)}")


def dataset_inputs(X, y, n_train, name):
    """The fit's training and validation rows as MLflow dataset inputs (name, digest, rows)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    n_val = len(X) - n_train
    for context, rows, label in (("training", slice(0, n_train), f"first {n_train:,} rows"),
                                 ("validation", slice(n_train, None), f"last {n_val:,} rows")):
        part_x, part_y = X[rows], (None if y is None else y[rows])
        if not len(part_x):
            continue
        dataset = Dataset(
            name=f"{name}, {label}", digest=_digest(part_x, *([] if part_y is None else [part_y])),
            source_type="local", source=json.dumps({"uri": name}),
            profile=json.dumps({"num_rows": len(part_x), "num_features": int(np.prod(part_x.shape[1:]))}),
        )
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)]))
    return inputs


def sklearn_selection_tags(run):
    """Tags telling a fit that scikit-learn's own model selection runs apart from its siblings.

    For a fit that a plain scikit-learn search (``GridSearchCV``, ...) or
    ``cross_validate`` makes, where no search of this package describes it
    already (its runs carry ``role``): ``role`` (``"fold"`` or
    ``"refit"``), ``refit`` (``"true"``/``"false"``), and for a search's fold
    its ``candidate`` (its row in ``cv_results_``), ``fold`` index,
    ``iteration`` (a successive-halving search's round, as this package's
    searches tag it) and ``candidate_params`` (JSON), as far as scikit-learn
    lets them be known. Empty otherwise.

    Parameters
    ----------
    run : runs.FitRun

    Returns
    -------
    dict
    """
    if "role" in run.tags or "sklearn.model_selection._validation" not in sys.modules:
        return {}  # a search of ours decided, or scikit-learn's model selection never ran here
    from mnist_mlp.sklearn_internals import sklearn_fit_in_progress

    found = sklearn_fit_in_progress()
    if found is None:
        return {}
    tags = {"role": found.role, "refit": str(found.role == "refit").lower()}
    for key in ("candidate", "fold", "iteration"):
        if getattr(found, key) is not None:
            tags[key] = getattr(found, key)
    if found.params:
        tags["candidate_params"] = json.dumps(values.jsonable(found.params), sort_keys=True)[:5000]
    return tags


def model_wanted(estimator, run, owned, role=None):
    """Whether a fit that logged into ``run`` logs its model (the estimator's ``log_models``).

    Parameters
    ----------
    estimator : MLPClassifier
    run : runs.FitRun
    owned : bool
        Whether the fit (or its pipeline) opened ``run``: only an owner logs a model.
    role : str, default=None
        ``"fold"`` or ``"refit"`` for a fit of scikit-learn's own model selection
        (:func:`sklearn_selection_tags`).

    Returns
    -------
    bool
    """
    policy = getattr(estimator, "log_models", "auto")
    if not owned or policy is False:
        return False
    if policy is True:
        return True
    if "role" in run.tags:  # a search of ours chose (its log_models) when it made the run
        return run.log_model
    return run.log_model and role != "fold"


def track_fit(estimator, X, fit, given=None, y=None, continued=None, epochs=None, sample_weight=None):
    """Run ``fit(callbacks)`` as one tracked fit of ``estimator``; return its run.

    The fit logs into the run of an enclosing tracked estimator (a pipeline)
    or a run of its own (see :func:`mnist_mlp.tracking.owned_run`): its params
    first, each epoch's metrics as it ends (through the Keras ``callbacks``
    handed to ``fit``), then the final metrics, divergence tag, plots and
    history, and, in a run of its own, the model (see :func:`model_wanted`).
    A fit that raises ends its own run FAILED (KILLED on Ctrl-C) with the
    epochs it did train logged.

    Parameters
    ----------
    estimator : MLPClassifier
        Validated; fitted by ``fit``.
    X : ndarray
        The training rows (their count is a param; five of them are the
        model's input example).
    fit : callable
        ``fit(callbacks)`` trains ``estimator`` with these Keras callbacks added.
    given : array-like, default=None
        ``X`` as the user gave it: a DataFrame's first rows are the model's
        input example (its column names go into the model's signature);
        otherwise ``X[:5]`` is.
    y : ndarray, default=None
        The labels: with ``X``, the training and validation datasets' digests.
    continued : (int, str or None), default=None
        For a fit that continues a fitted network (``warm_start``,
        ``partial_fit``): the epochs it was trained before and the run of
        its last fit. The run is tagged ``continued_from`` (those epochs)
        and ``continued_run_id``; its epochs are numbered on from them.
    epochs : int, default=None
        Epochs this fit trains, if not the estimator's ``epochs`` (1 for ``partial_fit``).
    sample_weight : array-like, default=None
        The fit's sample weights: summarised in the run's ``sample_weight``
        tag (:func:`sample_weight_summary`) and named in a standalone run's name.

    Returns
    -------
    runs.FitRun
    """
    from mnist_mlp.tracking.callbacks import DivergenceMonitor, EpochMetricsLogger

    weighted = sample_weight is not None
    name = naming.standalone_run_name(estimator, sample_weighted=weighted)
    with runs.owned_run(name) as (run, owned):
        weights = {"sample_weight": sample_weight_summary(sample_weight)} if weighted else {}
        if weighted and not owned and run.name == naming.standalone_run_name(estimator):
            run.name = weights["mlflow.runName"] = name  # a pipeline's run, named before its steps saw the weights
        params = estimator_params(estimator, len(X))
        if epochs is not None:
            params["epochs"] = epochs
        run.log_params(params)
        run.log_inputs(dataset_inputs(X, y, params["n_train"], params["dataset"]))
        selection = sklearn_selection_tags(run)
        continuation = {}
        if continued is not None:
            continuation["continued_from"] = continued[0]
            if continued[1] is not None:
                continuation["continued_run_id"] = continued[1]
        # A Hyperband rung or a warm-started fit continuing a network: it has epochs + start in all.
        start = int(continuation.get("continued_from", run.tags.get("continued_from", 0)))
        scale = (params["epochs"] + start, params["n_train"], params["n_val"], params["dataset"])
        run.defer_to_end(tags={**selection, **continuation, **weights, **naming.scale_tags(*scale),
                               naming.NOTE_TAG: naming.fit_description(
                                   run.name or name, *scale, fidelity=run.tags.get("fidelity"),
                                   continued_from=start)})
        monitor, epochs_logger = DivergenceMonitor(), EpochMetricsLogger(run)
        try:
            fit([epochs_logger, monitor])
        except BaseException:
            with contextlib.suppress(Exception):  # keep the epochs a failed fit did run
                epochs_logger.flush()
            raise
        log_fit_results(run, estimator, monitor.diverged, epochs_logger.take_pending())
        if model_wanted(estimator, run, owned, selection.get("role")):
            is_frame = hasattr(given, "columns") and hasattr(given, "iloc")
            log_model(run, estimator, example_rows(given) if is_frame else X[:5])
    return run


def log_fit_results(run, estimator, diverged, pending_epochs=()):
    """Log the end-of-fit metrics, the divergence tag, plots and history.

    Parameters
    ----------
    run : runs.FitRun
    estimator : fitted MLPClassifier
    diverged : bool
    pending_epochs : list of (int, dict)
        Per-epoch metrics not yet written; they go in the same call.
    """
    from mnist_mlp.plots import plot_learning_curves, plot_weight_violins

    final = {
        "fit_time_s": estimator.fit_time_,
        "weight_updates": estimator.n_weight_updates_,
        "epochs_run": estimator.n_iter_,
    }
    tags = {"diverged": str(bool(diverged)).lower(), "training_loop": estimator.training_loop_}
    if estimator.training_loop_reason_:  # why Keras trained; for the XLA loop, why it did
        key = "training_loop_fallback" if estimator.training_loop_ == "keras" else "training_loop_reason"
        tags[key] = estimator.training_loop_reason_[:500]
    # Written with the run's end, in the same call as its last tags.
    run.defer_to_end(pending_epochs, tags, results=final)
    run.log_files(
        {
            "history.csv": _history_csv(estimator.history_),
            "learning_curves.png": plot_learning_curves(estimator.history_, reuse=True),  # saved at once
            "weights_violin.png": plot_weight_violins(estimator.initial_coefs_, estimator.coefs_),
        }
    )


@functools.lru_cache(maxsize=1)
def _pip_requirements():
    """Pinned requirements of a logged model, computed once per process.

    MLflow would otherwise infer them anew for every model by importing the
    model in a subprocess: seconds per fit for the same answer.
    """
    reqs = []
    for dist in ("mlflow", "scikit-learn", "scikeras", "keras", "numpy", "cloudpickle", "pandas",
                 "numba", "threadpoolctl", "psutil"):
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
            break
        except metadata.PackageNotFoundError:
            continue
    return reqs


@functools.lru_cache(maxsize=1)
def _model_environment():
    """The logged model's environment as a conda env dict (MLflow's documented form).

    Built once per process. Given as ``pip_requirements``, MLflow would check
    every pin against the installed packages again for each model: work that
    does not depend on the fit. MLflow derives ``requirements.txt`` from it.
    """
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": _pip_requirements()}],
    }


@functools.lru_cache(maxsize=1)
def _code_dir():
    """This package's Python sources, copied once, shipped with each model.

    The pickled pipeline refers to ``mnist_mlp`` classes; with the code beside
    it, the model loads where the package is not installed.
    """
    import mnist_mlp

    package = Path(mnist_mlp.__file__).resolve().parent  # the whole package, not this folder
    target = Path(tempfile.mkdtemp(prefix="mnist_mlp_code_")) / "mnist_mlp"
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("_data", "__pycache__", "*.pyc"))
    return str(target)


class _DropPickleWarning(logging.Filter):
    def filter(self, record):
        return "pickle or cloudpickle format" not in record.getMessage()


@contextlib.contextmanager
def _without_pickle_warning():
    """Silence MLflow's per-model advice to use skops: this model is cloudpickled on purpose (see log_model)."""
    target, drop = logging.getLogger("mlflow.sklearn"), _DropPickleWarning()
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


@contextlib.contextmanager
def _without_callbacks(model):
    """Save the model without its training callbacks.

    They matter only while fitting, and may hold what cannot be pickled (a
    progress display, a server handle); the saved model predicts the same.
    """
    final = model[-1] if hasattr(model, "steps") else model
    saved = {k: final.__dict__[k] for k in ("callbacks", "_fit_callbacks", "_predict_callbacks")
             if k in final.__dict__}
    final.__dict__.update(callbacks=None, _fit_callbacks=[], _predict_callbacks=[])
    try:
        yield
    finally:
        for key in ("callbacks", "_fit_callbacks", "_predict_callbacks"):
            final.__dict__.pop(key, None)
        final.__dict__.update(saved)


# The logged model's type, shown in MLflow's Logged models tab.
_MODEL_TYPE = "mnist-mlp pipeline"


def log_model(run, model, input_example):
    """Log ``model`` (a fitted pipeline or classifier) as the run's MLflow 3 logged model, sklearn flavour.

    Saved with cloudpickle and this package's code beside it, so that it
    loads where the package is not installed (a skops file names the
    package's classes and needs it installed; the estimator saves as plain
    data either way, see :mod:`mnist_mlp.persistence`), with the pinned
    requirements. Its
    ``python_function`` flavour loads through :mod:`mnist_mlp.serving`, which
    checks every input against the training data's shape, dtype and range
    (the :class:`~mnist_mlp.serving.InputContract` in the model's metadata).

    Parameters
    ----------
    run : runs.FitRun
    model : fitted estimator
    input_example : ndarray or DataFrame
        The first few raw training inputs, e.g. uint8 images of shape
        (k, 28, 28): the model's input example and the source of its contract.
        A DataFrame's column names and types go into the signature.
    """
    import cloudpickle
    import mlflow.sklearn
    from mlflow.models import Model, ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from mnist_mlp.inference import forward_model
    from mnist_mlp.serving import CONTRACT_KEY, FORWARD_KEY, InputContract

    # A pipeline's contract was learned from all its training data (images: their background).
    contract = (InputContract.from_dict(model.input_contract_) if hasattr(model, "input_contract_")
                else InputContract.from_training(input_example))
    example = input_example if contract.columns is not None else np.asarray(input_example)
    classes = np.asarray(model.classes_)
    if classes.dtype.kind in "USO":
        # Text (or object) labels: MLflow's tensor specs take no sized string
        # dtypes ("<U5"), so the output is a string column.
        outputs = Schema([ColSpec("string")])
    else:
        outputs = Schema([TensorSpec(classes.dtype, (-1,))])
    # Declared, not inferred from predictions (that would run the network). An
    # array model declares no input schema: MLflow would enforce one by
    # casting (a float image in [0, 1] to uint8 zeros); the contract checks it.
    inputs = infer_signature(example).inputs if contract.columns is not None else None
    with run.logged_model("model", model_type=_MODEL_TYPE) as (path, logged), _without_pickle_warning(), \
            _without_callbacks(model):
        mlflow.sklearn.save_model(
            model,
            str(path),
            mlflow_model=None if logged is None else Model(
                artifact_path=logged.artifact_location, run_id=run.run_id, model_uuid=logged.model_id,
                model_id=logged.model_id),
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            signature=ModelSignature(inputs=inputs, outputs=outputs),
            input_example=example,
            conda_env=copy.deepcopy(_model_environment()),
            code_paths=[_code_dir()],
            metadata={CONTRACT_KEY: contract.to_dict()},
        )
        # The documented MLmodel field naming a pyfunc flavour's loader.
        saved = Model.load(str(path))
        saved.flavors["python_function"]["loader_module"] = "mnist_mlp.serving"
        # The pyfunc flavour predicts from the weight arrays, without TensorFlow, where it can.
        forward = forward_model(model, example)
        if forward is not None:
            with open(path / "forward_model.pkl", "wb") as file:
                cloudpickle.dump(forward, file)  # as the sklearn flavour: a step may hold a lambda
            saved.flavors["python_function"][FORWARD_KEY] = "forward_model.pkl"
        saved.save(str(path / "MLmodel"))
    run.defer_to_end(tags={"model_uri": f"models:/{logged.model_id}" if logged else f"runs:/{run.run_id}/model"})


def log_evaluation(run, scores, labels, report):
    """Log test metrics, the confusion matrix (PNG and CSV) and the classification report.

    Parameters
    ----------
    run : runs.FitRun
    scores : dict
        From :func:`mnist_mlp.evaluation.evaluate`.
    labels : sequence
        Class labels, in confusion-matrix order.
    report : dict
        ``sklearn.metrics.classification_report(..., output_dict=True)``.
    """
    from mnist_mlp.plots import plot_confusion_matrix

    matrix = scores["confusion_matrix"]
    run.log_metrics({k: v for k, v in scores.items() if k != "confusion_matrix"})
    buffer = io.StringIO()
    header = "true\\predicted," + ",".join(str(c) for c in labels)
    np.savetxt(buffer, matrix, delimiter=",", fmt="%.6f")
    rows = [f"{label},{line}" for label, line in zip(labels, buffer.getvalue().splitlines())]
    run.log_files(
        {
            "confusion_matrix.csv": "\n".join([header, *rows]) + "\n",
            "confusion_matrix.png": plot_confusion_matrix(matrix, labels),
            "classification_report.json": json.dumps(report, indent=2, default=float),
        }
    )
