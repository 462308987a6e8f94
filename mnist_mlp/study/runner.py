"""Running the study's experiments, tracked.

Each experiment is declared in ``pipelines/<name>.py`` as an unfitted search
over :func:`mnist_mlp.make_pipeline` plus the figures the study published for
it. :func:`run_experiment` fits one on MNIST, filing its runs in the MLflow
experiment of its study section, with every candidate also scored on the
test set in its own run.
"""

from __future__ import annotations

import time


from mnist_mlp.model_selection import epochs_per_fit
from mnist_mlp.study.experiments import count_fits, load_experiment
from mnist_mlp.tracking import counted
from mnist_mlp.tracking.values import jsonable

__all__ = ["FINAL_PROTOCOLS", "attempt_summary", "epochs_trained", "run_budget_tuning", "run_experiment",
           "run_tuning"]


#: Training images of the full MNIST: a study run on fewer is a quick run.
FULL_TRAINING_ROWS = 60_000

# How each search class is named in its parent run's name.
_METHOD_NAMES = {"GridSearchCV": "grid search", "HyperbandSearchCV": "Hyperband",
                 "HalvingGridSearchCV": "halving over rows"}


def fidelity(search, n_rows, *, overridden):
    """``(level, label)`` of a section's scale: ``("full", "full: 100 epochs, 60,000 images")`` or
    ``("quick", ...)``. The search records the scale itself (its ``scale.*`` tags).

    Full fidelity: the section's own settings on the whole MNIST training set.
    """
    level = "full" if not overridden and n_rows >= FULL_TRAINING_ROWS else "quick"
    return level, f"{level}: {counted(epochs_per_fit(search), 'epoch')}, {n_rows:,} images"


def _configure(search, experiment, *, grid, n_jobs, resume, name, tags, progress, n_rows, overridden):
    """File a section's search in its experiment, with the run's overrides and progress display.

    Named by what sets it apart from the section's other searches, first (``name``: a tuning
    search's objective; then its scale; then its method): the section is in the experiment's
    name and the ``section`` tag.
    """
    if grid:
        search.param_grid = grid
    level, label = fidelity(search, n_rows, overridden=overridden or bool(grid))
    run_name = " · ".join(filter(None, [name, label, _METHOD_NAMES.get(type(search).__name__,
                                                                       type(search).__name__)]))
    # Every fit of a section is a result someone may load: each logs its model.
    search.set_params(n_jobs=n_jobs, resume=resume, experiment_name=experiment.experiment_name, log_models="all",
                      run_name=run_name, run_tags={"section": experiment.section, "study": "mnist-mlp",
                                                   "fidelity": level, **tags})
    if progress is not None:
        search.estimator.set_params(classifier__callbacks=[progress(run_name, count_fits(search))])
    return search


def _describe_experiment(experiment):
    """Give the section's MLflow experiment its description: what it studies, what the study published."""
    from mnist_mlp import tracking

    if not tracking.tracking_enabled():
        return
    lines = [f"**{experiment.experiment_name}**", "", " ".join(experiment.description.split()), "",
             f"The {experiment.published_by} published:", ""]
    for row in experiment.published:
        setting = ", ".join(f"{tracking.short_key(k)}={tracking.format_value(v)}"
                            for k, v in row["params"].items()) or "its network"
        figures = [f"test accuracy {row['accuracy']:.2f}%"]
        if "loss" in row:
            figures.append(f"test loss {row['loss']:.2f}")
        if "f1_macro" in row:
            figures.append(f"macro F1 {row['f1_macro']:.4f}")
        if "label" in row:  # the paper's own name for its row
            setting = f"{row['label']} ({setting})"
        lines.append(f"- {setting}: {', '.join(figures)}")
    client = tracking.client(tracking.resolve_tracking_uri())
    experiment_id = tracking.experiment_id_for(client, experiment.experiment_name)
    # The description, and the kind the MLflow UI opens a section as: its training runs (the
    # tag the UI itself sets when a user picks "Model training"), not the GenAI overview.
    wanted = {tracking.NOTE_TAG: "\n".join(lines), "mlflow.experimentKind": "custom_model_development"}
    current = tracking.retrying(client.get_experiment, experiment_id).tags
    for key, value in wanted.items():
        if current.get(key) != value:
            tracking.retrying(client.set_experiment_tag, experiment_id, key, value)


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
        show progress (see :mod:`mnist_mlp.study.progress`).
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

    experiment = load_experiment(name)
    if experiment.final_epochs:  # a tuning section: searches, then a final network
        # At the study's own fidelity, both final protocols (ours and the study's), side by side.
        full = epochs is None and n_train is None and grid is None
        return run_tuning(data, epochs=epochs, n_train=n_train, n_jobs=n_jobs, seed=(seeds or [0])[0],
                          grid=grid, progress=progress, resume=resume, section=name,
                          final_protocols=("ours", "study") if full else ("ours",))
    overrides = {k: v for k, v in {"epochs": epochs, "seeds": seeds}.items() if v is not None}
    (x_train, y_train), (x_test, y_test) = data
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    search = _configure(experiment.make_search(**overrides), experiment, grid=grid, n_jobs=n_jobs,
                        resume=resume, name=None, tags={}, progress=progress, n_rows=len(x_train),
                        overridden=epochs is not None)
    _describe_experiment(experiment)
    start = time.perf_counter()
    with tracking.dataset(getattr(data, "name", "mnist")), tracking.test_set(x_test, y_test):
        search.fit(x_train, y_train)
    wall = time.perf_counter() - start
    results = [
        {
            "params": jsonable(params),
            "validation_score": float(search.cv_results_["mean_test_score"][i]),
            "fit_time_s": float(search.cv_results_["mean_fit_time"][i]),
        }
        for i, params in enumerate(search.cv_results_["params"])
    ]
    return {"section": name, "run_id": getattr(search, "run_id_", None), "wall_time_s": wall,
            "results": results, "attempt": attempt_summary(search)}


def run_tuning(data, *, epochs=None, final_epochs=None, n_train=None, n_jobs=1, seed=0,
               method="hyperband", wide=False, grid=None, progress=None, resume=True,
               final_protocols=("ours",), section="3", brackets=None):
    """A tuning section (3): search by validation accuracy and by macro F1, then train the best afresh.

    The final network is a new pipeline with the accuracy search's best
    parameters, trained for ``final_epochs`` (the study's 50) and evaluated
    on the test set; its run is tagged ``role=final`` and ``final_protocol``.
    Unlike the study, it does not reuse a model trained during the search.
    ``final_protocols``: ``"ours"`` trains on every training row (once the
    search has chosen, the held-out fifth has done its job), ``"study"`` with
    ``validation_split=0.2`` as the study's last cell; both: one final network each.

    Returns
    -------
    dict
        ``searches`` (per scoring: parent run id, best params, best score,
        epochs trained, wall time), ``finals`` (per protocol: run id, params,
        test metrics), ``final`` (the first of them) and ``wall_time_s``.
    """
    unknown = [p for p in final_protocols if p not in FINAL_PROTOCOLS]
    if unknown or not final_protocols:
        raise ValueError(f"final_protocols must name some of {', '.join(FINAL_PROTOCOLS)}; got {final_protocols!r}")
    from mnist_mlp import tracking

    experiment = load_experiment(section)
    (x_train, y_train), (x_test, y_test) = data
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    start = time.perf_counter()
    searches = {}
    space = "custom" if grid else "wide" if wide else "study"  # which grid: the study's or ours
    _describe_experiment(experiment)
    with tracking.dataset(getattr(data, "name", "mnist")):
        for scoring in ("accuracy", "f1_macro"):
            search = _configure(
                experiment.make_search(**({"epochs": epochs} if epochs else {}),
                                       **({"brackets": brackets} if brackets else {}), seeds=(seed,),
                                       scoring=scoring, method=method, wide=wide),
                experiment, grid=grid, n_jobs=n_jobs, resume=resume,
                name=f"for {'accuracy' if scoring == 'accuracy' else 'macro F1'}",
                tags={"scoring": scoring, "space": space}, progress=progress, n_rows=len(x_train),
                overridden=bool(epochs or brackets or method != "hyperband" or wide),
            )
            started = time.perf_counter()
            search.fit(x_train, y_train)
            searches[scoring] = _search_summary(search, started)
        best = _best_raw(searches)
        level = search.run_tags["fidelity"] if final_epochs in (None, experiment.final_epochs) else "quick"
        finals = [_final_network(
            search.estimator, best, protocol, ((x_train, y_train), (x_test, y_test)),
            epochs=final_epochs or experiment.final_epochs, seed=seed, dataset=getattr(data, "name", "mnist"),
            register=protocol == final_protocols[0], experiment=experiment, space=space, fidelity=level)
            for protocol in final_protocols]
    return {
        "section": section,
        "searches": searches,
        "final": finals[0],
        "finals": finals,
        "wall_time_s": time.perf_counter() - start,
    }


def run_budget_tuning(data, budget_s, *, n_train=None, n_jobs=1, seed=0, final_max_epochs=100, progress=None,
                      resume=True, started=None, section="3"):
    """Tune within a time budget: Hyperband over the Dropout paper's space, then the final network.

    The budget covers the search and the final network's training. The search
    (by validation accuracy) gets the section's ``BUDGET_FINAL_SHARE`` less of
    it; once it ends (at most one rung past its share), the final network, with
    the best parameters and trained afresh on every training row, gets as many
    epochs as the time left allows at the per-epoch time measured for those
    parameters during the search (at least 1, at most ``final_max_epochs``),
    and is registered, champion if it is the best.

    Parameters
    ----------
    data : mnist_mlp.data.DatasetSplits
    budget_s : float
        Seconds for the whole tuning, counted from ``started``.
    n_train, n_jobs, seed, progress, resume, section
        As for :func:`run_tuning`.
    final_max_epochs : int, default=100
    started : float, default=None
        ``time.perf_counter()`` when the budget's clock started (a command's start); None: now.

    Returns
    -------
    dict
        As :func:`run_tuning`'s, plus ``budget``: ``budget_s``, ``search_budget_s``,
        ``spent_s`` (the search's), ``epochs``, ``fits``, ``best_score_history``
        (``[elapsed s, epochs, best score]`` after each rung), ``final_epochs`` and
        ``final_estimate_s``.
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s must be a positive number of seconds; got {budget_s!r}")
    from mnist_mlp import tracking

    started = time.perf_counter() if started is None else started
    experiment = load_experiment(section)
    (x_train, y_train), (x_test, y_test) = data
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    share = experiment.module.BUDGET_FINAL_SHARE
    search_budget = round(max(budget_s * (1 - share) - (time.perf_counter() - started), 0.1), 1)
    _describe_experiment(experiment)
    with tracking.dataset(getattr(data, "name", "mnist")):
        search = _configure(
            experiment.make_search(seeds=(seed,), scoring="accuracy", space="dropout", budget=search_budget),
            experiment, grid=None, n_jobs=n_jobs, resume=resume, name=f"for accuracy within {budget_s:g} s",
            tags={"scoring": "accuracy", "space": "dropout"}, progress=progress, n_rows=len(x_train), overridden=True)
        # Time is the budget: only the final network logs its model, not every short rung's.
        search.set_params(log_models="refit")
        search_started = time.perf_counter()
        search.fit(x_train, y_train)
        best = {k: v for k, v in search.best_params_.items() if k != search.resource}  # the final has its epochs
        per_epoch = _seconds_per_epoch(search, best) * len(x_train) / _rows_trained(search, len(x_train))
        left = budget_s - (time.perf_counter() - started)
        final_epochs = int(min(final_max_epochs, max(1, left // per_epoch)))
        summary = _search_summary(search, search_started)
        finals = [_final_network(
            search.estimator, best, "ours", ((x_train, y_train), (x_test, y_test)), epochs=final_epochs, seed=seed,
            dataset=getattr(data, "name", "mnist"), register=True, experiment=experiment, space="dropout",
            fidelity=search.run_tags["fidelity"])]
    bought = {
        "budget_s": float(budget_s), "search_budget_s": float(search_budget), "spent_s": float(search.budget_spent_s_),
        "epochs": int(search.n_epochs_trained_), "fits": int(search.n_fits_trained_),
        "best_score_history": [list(row) for row in search.best_score_history_],
        "final_epochs": final_epochs, "final_estimate_s": float(final_epochs * per_epoch),
    }
    if summary["run_id"] is not None:  # the whole command's budget, beside the search's own share of it
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        tracking.retrying(tracking.client(tracking.resolve_tracking_uri()).log_batch, summary["run_id"],
                          params=[Param("budget_s", f"{budget_s:g}")],
                          metrics=[Metric(k, bought[k], now, 0) for k in ("final_epochs", "final_estimate_s")])
    return {"section": section, "searches": {"accuracy": summary}, "final": finals[0], "finals": finals,
            "budget": bought, "wall_time_s": time.perf_counter() - started}


def _seconds_per_epoch(search, params):
    """Fit seconds per epoch of the candidate ``params`` in the search (its rungs' fit times over
    the epochs each trained): a fit's start-up counts in, so it errs long."""
    results = search.cv_results_
    mine = [i for i, p in enumerate(results["params"])
            if {k: v for k, v in p.items() if k != search.resource} == params]
    seconds = sum(float(results["mean_fit_time"][i]) for i in mine)
    epochs = sum(int(results["n_resources"][i]) - int(results["continued_from"][i]) for i in mine)
    return seconds / max(epochs, 1)


def _rows_trained(search, n_rows):
    """Rows a search fit trains on: the head its split leaves (the estimator holds out the tail)."""
    return n_rows - int(n_rows * search.cv.validation_fraction)


#: The final network's protocols: validation_split and the run's ``final_protocol`` tag.
FINAL_PROTOCOLS = {"ours": (0.0, "ours (all rows)"), "study": (0.2, "study (validation_split 0.2)")}


def _search_summary(search, started):
    """What a tuning section returns of one fitted search (``started``: its ``time.perf_counter()``)."""
    return {
        "run_id": getattr(search, "run_id_", None),
        "attempt": attempt_summary(search),
        "best_params": jsonable(search.best_params_),
        "best_score": float(search.best_score_),
        "epochs_trained": epochs_trained(search),
        "wall_time_s": time.perf_counter() - started,
    }


def _final_network(estimator, best, protocol, data, *, epochs, seed, dataset, register, experiment, space, fidelity):
    """Train a tuning section's final network (the search's own pipeline with the ``best``
    parameters, afresh) in a run of its own, evaluate it on the test set and log it; registered
    if ``register``. Returns its summary (``params``: the best, as JSON)."""
    from sklearn.base import clone

    from mnist_mlp import tracking
    from mnist_mlp.evaluation import evaluate
    from mnist_mlp.serving import InputContract

    split = FINAL_PROTOCOLS[protocol][0]
    final = clone(estimator).set_params(**best, classifier__epochs=epochs, classifier__random_state=seed,
                                        classifier__validation_split=split, classifier__callbacks=None)
    tags = {"section": experiment.section, "study": "mnist-mlp", "role": "final", "space": space,
            "final_protocol": FINAL_PROTOCOLS[protocol][1], "fidelity": fidelity}
    (x_train, y_train), (x_test, y_test) = data
    rows = len(x_train) if not split else len(x_train) - int(len(x_train) * split)
    name = (f"final network, {tags['final_protocol']} · {fidelity}: {counted(epochs, 'epoch')}, "
            f"{rows:,} images")
    with tracking.FitRun.open(run_name=name, experiment_name=experiment.experiment_name, tags=tags) as run, \
            run.as_current():
        final.fit(x_train, y_train)
        scores = evaluate(final, x_test, y_test)
        tracking.log_model(run, final, x_train[:5])
    summary = {"run_id": run.run_id, "protocol": protocol, "params": jsonable(best),
               **{k: v for k, v in scores.items() if k != "confusion_matrix"}}
    if run.model_id is not None and register:
        summary["registered"] = tracking.register_model(
            run.model_id, run.run_id, dataset=dataset, test_accuracy=scores["test_accuracy"],
            fidelity=fidelity, description=f"{run.name}: test accuracy {scores['test_accuracy']:.2%}",
            input_contract=InputContract.from_training(x_train[:5]))
    return summary


def attempt_summary(search):
    """What a tracked search's call did: ``trained_run_ids``, ``reused_run_ids`` (finished runs that
    stood in for fits), ``resumed`` (its run reopened, not a new one); None when untracked."""
    if not hasattr(search, "trained_run_ids_"):
        return None
    return {"trained_run_ids": list(search.trained_run_ids_), "reused_run_ids": list(search.reused_run_ids_),
            "resumed": search.resumed_}


def epochs_trained(search):
    """Epochs the search trained: Hyperband counts its own; a grid, every fit's epochs."""
    if hasattr(search, "n_epochs_trained_"):
        return int(search.n_epochs_trained_)
    results = search.cv_results_  # a grid, or halving over rows: every fit trains the full epochs
    n_splits = sum(1 for k in results if k.startswith("split") and k.endswith("_test_score"))
    return int(len(results["params"]) * n_splits * epochs_per_fit(search))


def _best_raw(searches):
    """Best params of the accuracy search, with tuples restored from JSON lists."""
    best = dict(searches["accuracy"]["best_params"])
    best.pop("classifier__epochs", None)  # Hyperband's budget: the final network has its own
    sizes = best.get("classifier__hidden_layer_sizes")
    if isinstance(sizes, list):
        best["classifier__hidden_layer_sizes"] = tuple(sizes)
    return best
