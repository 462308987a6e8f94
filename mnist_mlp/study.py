"""The study's experiments: its split, its published figures, and running them tracked.

Each experiment is declared in ``pipelines/<name>.py`` as an unfitted search
over :func:`mnist_mlp.make_pipeline` plus the figures the study published for
it. :func:`run_experiment` fits one on MNIST, filing its runs in the MLflow
experiment of its study section, with every candidate also scored on the
test set in its own run.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import BaseCrossValidator

__all__ = [
    "EXPERIMENTS",
    "TrainValidationSplit",
    "experiment_names",
    "count_fits",
    "load_experiment",
    "run_experiment",
    "run_tuning",
]

#: Study section -> module in ``pipelines/``, in the study's order.
EXPERIMENTS = {
    "2.1": "pipelines.batch_size",
    "2.2": "pipelines.rmsprop_rho",
    "2.3": "pipelines.sgd_normal_init",
    "2.4.1": "pipelines.l2_rmsprop",
    "2.4.2": "pipelines.l2_sgd_normal_init",
    "2.5.1": "pipelines.l1_dropout_rmsprop",
    "2.5.2": "pipelines.l1_dropout_sgd_normal_init",
    "3": "pipelines.tuning",
}

EXPERIMENT_PREFIX = "mnist-mlp study"


class TrainValidationSplit(BaseCrossValidator):
    """One split: score on the last ``validation_fraction`` of the samples.

    The study trains with Keras's ``validation_split=0.2`` and no shuffling:
    the network learns from the first 80 % and is validated on the last 20 %.

    With ``estimator_holds_out=True`` the estimator receives all samples and,
    with the same ``validation_split``, holds the same tail out of its own
    training: the score on this test fold is then the study's validation
    accuracy, on data the network never trained on. That needs a search that
    hands the rows over in order, as ``GridSearchCV`` does. A search that
    subsamples or reorders the training rows (``HalvingGridSearchCV``) would
    break the alignment and leak the tail into training: use
    ``estimator_holds_out=False``, which trains on the head only.

    Parameters
    ----------
    validation_fraction : float, default=0.2
        With ``estimator_holds_out``, must equal the classifier's ``validation_split``.
    estimator_holds_out : bool, default=True
    """

    def __init__(self, validation_fraction=0.2, estimator_holds_out=True):
        self.validation_fraction = validation_fraction
        self.estimator_holds_out = estimator_holds_out

    def get_n_splits(self, X=None, y=None, groups=None):
        return 1

    def _iter_test_indices(self, X=None, y=None, groups=None):
        n = len(X)
        split_at = int(np.floor(n * (1 - self.validation_fraction)))  # as Keras splits
        yield np.arange(split_at, n)

    def split(self, X, y=None, groups=None):
        n = len(X)
        for test in self._iter_test_indices(X):
            # Train on all (the estimator holds the tail out itself) or on the head only.
            yield np.arange(n if self.estimator_holds_out else test[0]), test


@dataclass(frozen=True)
class Experiment:
    """A study section: its search factory, description and published figures."""

    section: str
    title: str
    module: object

    @property
    def description(self):
        return (self.module.__doc__ or "").strip()

    @property
    def published(self):
        return getattr(self.module, "PUBLISHED", [])

    @property
    def experiment_name(self):
        return f"{EXPERIMENT_PREFIX} {self.section}: {self.title}"

    def make_search(self, **overrides):
        return self.module.make_search(**overrides)


def experiment_names():
    """Study sections, in order."""
    return list(EXPERIMENTS)


def load_experiment(name):
    """The :class:`Experiment` of study section ``name`` (e.g. ``"2.2"``).

    Raises
    ------
    ValueError
        For a name that is not a study section.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)} or 'all'")
    module = importlib.import_module(EXPERIMENTS[name])
    return Experiment(section=name, title=module.TITLE, module=module)


def count_fits(search):
    """Fits a search will run: candidates x splits, summed over halving's iterations."""
    from sklearn.model_selection import ParameterGrid

    n = len(ParameterGrid(search.param_grid))
    if not hasattr(search, "factor"):
        return n * search.cv.get_n_splits()
    total = n
    while n > search.factor - 1 and n > 1:  # halving stops once fewer than `factor` remain
        n = -(-n // search.factor)
        total += n
    return total * search.cv.get_n_splits()


def _configure(search, experiment, *, grid, n_jobs, resume, run_name, tags, progress):
    """File a section's search in its experiment, with the run's overrides and progress display."""
    if grid:
        search.param_grid = grid
    search.n_jobs = n_jobs
    search.resume = resume
    search.experiment_name = experiment.experiment_name
    search.run_name = run_name
    search.run_tags = {"section": experiment.section, "study": "mnist-mlp", **tags}
    if progress is not None:
        search.estimator.set_params(classifier__callbacks=[progress(run_name, count_fits(search))])
    return search


def run_experiment(name, data, *, epochs=None, n_train=None, seeds=None, grid=None, n_jobs=1,
                   progress=None, resume=True):
    """Fit one study experiment, tracked; every candidate is scored on the test set.

    Parameters
    ----------
    name : str
        Study section, e.g. ``"2.2"``.
    data : mnist_mlp.data.DatasetSplits
        ``(x_train, y_train), (x_test, y_test)``.
    epochs : int, default=None
        Override the study's 100 epochs (quick runs).
    n_train : int, default=None
        Use only the first ``n_train`` training images (order kept, so the
        validation tail is still the end of the data).
    seeds : sequence of int, default=None
        Random states to repeat each candidate with (default: the section's).
    grid : dict, default=None
        Replace the section's parameter grid (keys as in the pipeline).
    n_jobs : int, default=1
    progress : callable, default=None
        ``progress(description, total_fits)`` returning a Keras callback to
        show progress (see :mod:`mnist_mlp.progress`).
    resume : bool, default=True
        Reuse fits that already FINISHED with the same fingerprint (after an
        interruption); False refits everything.

    Returns
    -------
    dict
        ``section``, ``run_id`` of the search's parent run, ``wall_time_s``,
        and ``results``: a row per candidate with its params, validation
        and test figures.
    """
    from mnist_mlp import tracking

    if name == "3":
        return run_tuning(data, epochs=epochs, n_train=n_train, n_jobs=n_jobs,
                          seed=(seeds or [0])[0], grid=grid, progress=progress, resume=resume)
    experiment = load_experiment(name)
    overrides = {k: v for k, v in {"epochs": epochs, "seeds": seeds}.items() if v is not None}
    search = _configure(experiment.make_search(**overrides), experiment, grid=grid, n_jobs=n_jobs,
                        resume=resume, run_name=f"study {name}", tags={}, progress=progress)
    (x_train, y_train), (x_test, y_test) = data
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    start = time.perf_counter()
    with tracking.dataset(getattr(data, "name", "mnist")), tracking.test_set(x_test, y_test):
        search.fit(x_train, y_train)
    wall = time.perf_counter() - start
    results = [
        {
            "params": _plain(params),
            "validation_score": float(search.cv_results_["mean_test_score"][i]),
            "fit_time_s": float(search.cv_results_["mean_fit_time"][i]),
        }
        for i, params in enumerate(search.cv_results_["params"])
    ]
    return {"section": name, "run_id": getattr(search, "run_id_", None), "wall_time_s": wall,
            "results": results}


def run_tuning(data, *, epochs=None, final_epochs=None, n_train=None, n_jobs=1, seed=0,
               method="halving", wide=False, grid=None, progress=None, resume=True,
               final_validation_split=0.0):
    """Section 3: search by validation accuracy and by macro F1, then train the best afresh.

    The final network is a new pipeline with the accuracy search's best
    parameters, trained for ``final_epochs`` (the study's 50) and evaluated
    on the test set; its run is tagged ``role=final``. Unlike the study, it
    does not reuse a model trained during the search. Once the search has
    chosen, the held-out fifth has done its job: by default the final network
    trains on the whole training set (``final_validation_split=0.0``).

    Returns
    -------
    dict
        ``searches`` (per scoring: parent run id, best params, best score),
        ``final`` (run id, params, test metrics) and ``wall_time_s``.
    """
    from mnist_mlp import fit_logging, tracking
    from mnist_mlp.evaluation import evaluate
    from mnist_mlp.pipeline import make_pipeline

    experiment = load_experiment("3")
    module = experiment.module
    (x_train, y_train), (x_test, y_test) = data
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    start = time.perf_counter()
    searches = {}
    space = "custom" if grid else "wide" if wide else "study"  # which grid: the study's or ours
    with tracking.dataset(getattr(data, "name", "mnist")):
        for scoring in ("accuracy", "f1_macro"):
            search = _configure(
                module.make_search(**({"epochs": epochs} if epochs else {}), seeds=(seed,),
                                   scoring=scoring, method=method, wide=wide),
                experiment, grid=grid, n_jobs=n_jobs, resume=resume,
                run_name=f"study 3 search ({scoring})", tags={"scoring": scoring, "space": space},
                progress=progress,
            )
            search.fit(x_train, y_train)
            searches[scoring] = {
                "run_id": getattr(search, "run_id_", None),
                "best_params": _plain(search.best_params_),
                "best_score": float(search.best_score_),
            }
        best = _best_raw(searches)
        final = make_pipeline(
            optimizer="rmsprop", kernel_initializer="he_normal", penalty="l2", random_state=seed,
            epochs=final_epochs or module.FINAL_EPOCHS, validation_split=final_validation_split,
        ).set_params(**best)
        with tracking.FitRun.open(
            run_name="study 3 final", experiment_name=experiment.experiment_name,
            tags={"section": "3", "study": "mnist-mlp", "role": "final", "space": space},
        ) as run, run.as_current():
            final.fit(x_train, y_train)
            scores = evaluate(final, x_test, y_test)
            fit_logging.log_model(run, final, x_train[:5])
    return {
        "section": "3",
        "searches": searches,
        "final": {
            "run_id": run.run_id,
            "params": _plain(best),
            **{k: v for k, v in scores.items() if k != "confusion_matrix"},
        },
        "wall_time_s": time.perf_counter() - start,
    }


def _best_raw(searches):
    """Best params of the accuracy search, with tuples restored from JSON lists."""
    best = dict(searches["accuracy"]["best_params"])
    sizes = best.get("classifier__hidden_layer_sizes")
    if isinstance(sizes, list):
        best["classifier__hidden_layer_sizes"] = tuple(sizes)
    return best


def _plain(params):
    return json.loads(json.dumps(params, default=repr))
