"""Hyperparameter searches tracked as one MLflow parent run with a child per fit.

``GridSearchCV`` and ``HalvingGridSearchCV`` here are scikit-learn's, with
tracking added: the search is a parent run; every candidate x fold fit, and
the refit, is a child run tagged with its candidate index (the row of
``cv_results_``) and fold, and for halving its iteration and n_resources.
The parent holds ``cv_results_`` as CSV, the best params and score, and tags
naming the best candidate and the best child run.

Fold fits may run in other processes (``n_jobs=2``), where MLflow's active
run does not exist: each one receives its parent run id, experiment and
tracking URI explicitly, wrapped around scikit-learn's per-fit function.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import time
import uuid

import numpy as np
from sklearn.base import is_classifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV as _GridSearchCV
from sklearn.metrics import get_scorer
from sklearn.model_selection import HalvingGridSearchCV as _HalvingGridSearchCV

from mnist_mlp import sklearn_internals, tracking
from mnist_mlp.model_selection import resume
from mnist_mlp.model_selection.companion_scores import COMPANIONS, CompanionScorer
from mnist_mlp.tracking.values import jsonable

__all__ = ["TRACKING_ATTRIBUTES_DOC", "TRACKING_PARAMS_DOC", "GridSearchCV", "HalvingGridSearchCV", "TrackedSearchMixin", "epochs_per_fit",
           "tracked_init"]

# Context tags for the per-fit wrapper only, not written on the fit's run.
_CONTEXT_ONLY = ("candidate_offset", "resume", "name_keys", "resource_name")
# The parent's tags its children carry too (a section's children are found by section).
_INHERITED_TAGS = ("section", "study", "fidelity", "scoring")

# What _fit_and_score returns that a finished run can stand in for.
_CACHEABLE = {"fit_error", "test_scores", "train_scores", "n_test_samples", "fit_time", "score_time"}


def _tracked_fit_and_score(context, per_fit, estimator, X, y, **kwargs):
    """scikit-learn's per-fit function (or the search's ``per_fit`` around it),
    run inside this fit's tracking context.

    Module-level and given its context by ``functools.partial``, so that it
    pickles to worker processes. With resume on, a fit whose fingerprint
    matches a FINISHED run is not run again: that run's recorded result is
    returned; runs a killed attempt left RUNNING are marked KILLED.
    """
    from mnist_mlp import tracking

    candidate = context.tags["candidate_offset"] + kwargs["candidate_progress"][0]
    fold = kwargs["split_progress"][0]
    tags = {k: v for k, v in context.tags.items() if k not in _CONTEXT_ONLY}
    fingerprint = resume.fit_fingerprint(estimator, kwargs["parameters"], X, y,
                                         kwargs["train"], kwargs["test"])
    scoring = resume.scorer_key(kwargs.get("scorer"))
    if context.tags.get("resume", True):
        cached = resume.reuse_finished(context, fingerprint, scoring)
        if cached is not None:
            _announce_reuse(estimator)
            return cached
    resource = context.tags.get("resource_name")
    fit_context = context.replace(
        tags={**tags, "candidate": candidate, "fold": fold, "fingerprint": fingerprint},
        run_name=tracking.fit_run_name(
            kwargs["parameters"], context.tags.get("name_keys", ()), seed=_seed_of(estimator), fold=fold,
            resource=(resource, context.tags["n_resources"]) if resource and "n_resources" in context.tags else None),
    )
    companions = _companions_for(estimator, kwargs.get("scorer"), scoring)
    if companions is not None:
        kwargs = {**kwargs, "scorer": companions}
    with tracking.fit_context(fit_context):
        result = (per_fit or sklearn_internals.original_fit_and_score())(estimator, X, y, **kwargs)
    run_id = getattr(estimator, "run_id_", None)
    if run_id and result.get("fit_error") is None and set(result) <= _CACHEABLE:
        resume.record_result(context, run_id, result, scoring)
        if companions is not None:
            for name, scored in companions.results(result, kwargs.get("return_train_score", False)).items():
                resume.record_result(context, run_id, scored, resume.scorer_key(get_scorer(name)))
    return result


def epochs_per_fit(search):
    """The epochs of a search's longest fit: an epochs budget's maximum (Hyperband's last rung),
    else its estimator's ``epochs``; None where neither is a whole number."""
    epochs = None
    if getattr(search, "resource", "n_samples") != "n_samples":  # the budget is epochs
        epochs = getattr(search, "max_resources", None)
    if not isinstance(epochs, int):
        params = search.estimator.get_params()
        epochs = next((v for k, v in params.items() if k == "epochs" or k.endswith("__epochs")), None)
    return epochs if isinstance(epochs, int) else None


def _announce_reuse(estimator):
    """Tell the fit's callbacks that a finished run stood in for it (a progress display counts it)."""
    for key, value in estimator.get_params().items():
        if key == "callbacks" or key.endswith("__callbacks"):
            for callback in value or []:
                if hasattr(callback, "on_fit_reused"):
                    callback.on_fit_reused()


def _seed_of(estimator):
    """The fit's random state (a pipeline's classifier's), if it is a plain int."""
    params = estimator.get_params()
    for key in sorted(params, key=lambda k: k.count("__")):
        if key == "random_state" or key.endswith("__random_state"):
            return params[key] if isinstance(params[key], int) else None
    return None


def _companions_for(estimator, scorer, scoring):
    """A :class:`CompanionScorer` around a classifier's single-metric ``scorer``, or None.

    A companion that is the objective itself (an accuracy search's accuracy) is left out.
    """
    if not is_classifier(estimator) or not callable(scorer) or sklearn_internals.is_multimetric(scorer):
        return None
    names = [name for name in COMPANIONS if resume.scorer_key(get_scorer(name)) != scoring]
    return CompanionScorer(scorer, names) if names else None


def _scattered(X, y):
    """On a Dask cluster, a copy of the data on every worker (see ``cluster.scattered``)."""
    import sys

    cluster = sys.modules.get("mnist_mlp.model_selection.cluster")  # only ever set up by on_cluster
    if cluster is None or not hasattr(X, "shape"):
        return contextlib.nullcontext()
    return cluster.scattered(*(a for a in (X, y) if hasattr(a, "shape")))


class TrackedSearchMixin:
    """Adds the parent run and per-fit child runs to a scikit-learn search.

    For search classes of this package (see ``hyperband``): put it first in
    the bases, and build ``__init__`` with :func:`tracked_init`."""

    def _search_params(self):
        params = {
            "search": type(self).__name__,
            "param_grid": json.dumps(jsonable(self.param_grid)),
            "cv": repr(self.cv),
            "scoring": repr(self.scoring),
            "refit": repr(self.refit),
            "n_jobs": repr(self.n_jobs),
            "estimator": type(self.estimator).__name__,
        }
        for name in ("factor", "resource", "min_resources", "max_resources", "aggressive_elimination",
                     "brackets", "candidates", "continue_training", "time_budget"):
            if hasattr(self, name):
                params[name] = repr(getattr(self, name))
        return params

    def fit(self, X, y=None, **params):
        """Run the search; tracked when tracking is on (see the module docstring).

        Parameters
        ----------
        X, y, **params
            As for the scikit-learn search.

        Returns
        -------
        self
        """
        with tracking.decide(self) as records:
            if not records:
                return super().fit(X, y, **params)
            self._tracked_fit(X, y, **params)
        return self

    def _tracked_fit(self, X, y, **params):
        fingerprint = resume.search_fingerprint(self, X, y)
        name = self.run_name or type(self).__name__
        attempt, started = uuid.uuid4().hex[:16], time.perf_counter()
        with tracking.FitRun.open(
            run_name=name,
            tags={"role": "search", "fingerprint": fingerprint, tracking.NOTE_TAG: self._description(name, X),
                  **self._scale(X), **(self.run_tags or {})},
            experiment_name=self.experiment_name, tracking_uri=self.tracking_uri,
            # A rerun of this very search resumes its run: no empty duplicate beside it.
            reopen={"role": "search", "fingerprint": fingerprint} if self.resume else None,
        ) as parent:
            # An earlier attempt at this very search that was killed left its run RUNNING.
            stale = resume.mark_stale(parent.client, parent.experiment_id, fingerprint,
                                      exclude=parent.run_id)
            parent.log_metrics({"stale_runs_marked_killed": stale})
            # Every call counts, one that is then killed too.
            parent.set_tags({"attempts": int(parent.tags.get("attempts", 0)) + 1})
            parent.log_params(self._search_params())
            inherited = {k: v for k, v in (self.run_tags or {}).items() if k in _INHERITED_TAGS}
            self._fold_context = parent.fit_context(role="fold", candidate_offset=0, resume=self.resume,
                                                    name_keys=self._varying(), log_model=self._fold_models(),
                                                    search_attempt=attempt, **inherited)
            refit_context = parent.fit_context(role="refit", log_model=True, run_name="refit", **inherited)
            try:
                with tracking.fit_context(refit_context), _scattered(X, y):
                    super().fit(X, y, **params)
            finally:
                del self._fold_context
                # Interrupted: joblib killed the workers mid-fit; their runs end KILLED here.
                tracking.end_runs_of_stopped_workers()
            self._end_orphans(parent)
            self._log_results(parent)
            self._log_attempt(parent, attempt, time.perf_counter() - started)
        self.run_id_ = parent.run_id

    def _log_attempt(self, parent, attempt, wall_time_s):
        """What this call trained and what it reused, on the search's run (resumed or new) and here.

        Sets ``trained_run_ids_``, ``reused_run_ids_`` and ``resumed_``;
        the run's ``fits_trained`` and ``fits_reused`` metrics count this call,
        ``wall_time_s`` every call that finished (its ``attempts`` tag counts every
        call), and its description gains a line per finished call.
        """
        from datetime import datetime, timezone

        from mnist_mlp import tracking
        from mnist_mlp.tracking import retrying

        def runs_tagged(tag):
            return retrying(parent.client.search_runs, [parent.experiment_id],
                            filter_string=f"tags.`{tag}` = '{attempt}'", max_results=5000)

        trained = [r for r in runs_tagged("search_attempt") if r.data.tags.get("role") == "fold"]
        reused = runs_tagged(resume.REUSED_IN_TAG)
        self.trained_run_ids_ = sorted(r.info.run_id for r in trained)
        self.reused_run_ids_ = sorted(r.info.run_id for r in reused)
        self.resumed_ = parent.resumed
        previous = retrying(parent.client.get_run, parent.run_id).data
        total = len(trained) + len(reused)
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        line = (f"{'Resumed' if parent.resumed else 'Ran'} {when}: trained {tracking.counted(len(trained), 'fit')}, "
                f"reused {len(reused)} of {total}" + (" (finished runs of the same fits stood in)." if reused else "."))
        note = previous.tags.get(tracking.NOTE_TAG, "")
        note += ("\n\n" if "\n- Ran " not in note and "\n- Resumed " not in note else "\n") + f"- {line}"
        parent.log_metric_series([(0, {
            "fits_trained": len(trained), "fits_reused": len(reused),
            "wall_time_s": previous.metrics.get("wall_time_s", 0.0) + wall_time_s})],
            {tracking.NOTE_TAG: note})

    def _scale(self, X):
        """The search's scale as tags: rows given, epochs per fit (Hyperband: its last rung's), dataset."""
        from mnist_mlp import tracking

        tags = {"scale.train_rows": len(X), "scale.dataset": tracking.current_dataset() or "unspecified"}
        epochs = epochs_per_fit(self)
        if epochs is not None:
            tags["scale.epochs"] = epochs
        return tags

    def _fold_models(self):
        if self.log_models not in ("refit", "all"):
            raise ValueError(f"log_models must be 'refit' or 'all'; got {self.log_models!r}")
        return self.log_models == "all"

    def _description(self, name, X):
        """The parent run's description (Markdown): the search, its space and its data."""
        from sklearn.model_selection import ParameterGrid

        from mnist_mlp.tracking import format_value, grid_values, short_key

        lines = [f"**{name}**", "", f"{type(self).__name__} over {len(ParameterGrid(self.param_grid))} "
                 f"candidates, scored by {self.scoring or 'the estimator'}; {len(X):,} rows given."]
        lines += [f"- {short_key(key)}: {', '.join(format_value(v) for v in values)}"
                  for key, values in sorted(grid_values(self.param_grid).items())]  # ParameterGrid's order
        return "\n".join(lines)

    def _varying(self):
        """The parameters that take more than one value in the search (named in its children's names)."""
        from mnist_mlp.tracking import grid_values

        grid = getattr(self, "param_grid", None)
        if grid is None:
            return ()
        varying = [key for key, values in sorted(grid_values(grid).items()) if len(values) > 1]
        resource = getattr(self, "resource", None)
        if resource and resource != "n_samples" and resource not in varying:
            varying.append(resource)  # Hyperband over epochs: each rung's budget is in the candidate's params
        return tuple(varying)

    @staticmethod
    def _end_orphans(parent):
        """Children still RUNNING now belong to attempts that died (a killed worker): KILLED."""
        from mnist_mlp.tracking import retrying

        for child in parent.children():
            if child.info.status == "RUNNING":
                retrying(parent.client.set_tag, child.info.run_id, "error",
                          "its process died; the fit was rescheduled")
                retrying(parent.client.set_terminated, child.info.run_id, "KILLED")

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        # scikit-learn >= 1.9 passes its callback context when our signature
        # names it; older versions neither pass nor accept it.
        kwargs = {} if callback_ctx is None else {"callback_ctx": callback_ctx}
        if not hasattr(self, "_fold_context"):  # untracked
            return super()._run_search(evaluate_candidates, **kwargs)
        offset = [0]

        def tracked_evaluate_candidates(candidate_params, cv=None, more_results=None, **kwargs):
            candidate_params = list(candidate_params)
            tags = {"candidate_offset": offset[0]}
            if getattr(self, "resource", None) == "n_samples":  # halving over rows: the budget is rows
                tags["resource_name"] = "rows"
            for key, name in (("iter", "iteration"), ("n_resources", "n_resources"), ("bracket", "bracket"),
                              ("rung", "rung"), ("continued_from", "continued_from")):
                if more_results and key in more_results:
                    tags[name] = more_results[key][0]
            # A search may run its own step around each fit (Hyperband: continue a rung).
            wrapped = functools.partial(_tracked_fit_and_score, self._fold_context.with_tags(**tags),
                                        getattr(self, "_per_fit", None))
            try:
                with sklearn_internals.fit_and_score_replaced(wrapped):
                    return evaluate_candidates(candidate_params, cv=cv, more_results=more_results, **kwargs)
            finally:
                offset[0] += len(candidate_params)

        return super()._run_search(tracked_evaluate_candidates, **kwargs)

    def _log_results(self, parent):
        import pandas as pd
        from mlflow.entities import RunTag

        from mnist_mlp import tracking
        from mnist_mlp.tracking import retrying

        buffer = io.StringIO()
        pd.DataFrame(self.cv_results_).to_csv(buffer, index=False)
        parent.log_files({"cv_results.csv": buffer.getvalue()})
        n_fits = sum(1 for k in self.cv_results_ if k.startswith("split") and k.endswith("_test_score"))
        metrics = {"n_candidates": len(self.cv_results_["params"]), "n_splits": n_fits}
        if hasattr(self, "n_epochs_trained_"):  # Hyperband counts what it trained (reused fits: none)
            metrics["epochs_trained"] = self.n_epochs_trained_
        tags = {}
        if hasattr(self, "best_index_"):
            best = int(self.best_index_)
            parent.log_params({f"best.{k}": v for k, v in self.best_params_.items()})
            tags["best_candidate"] = best
            if hasattr(self, "best_score_"):
                metrics["best_score"] = float(self.best_score_)
            children = parent.children()
            refits = [r for r in children if r.data.tags.get("role") == "refit"]
            folds = sorted(
                (r for r in children if r.data.tags.get("candidate") == str(best)),
                key=lambda r: int(r.data.tags.get("fold", 0)),
            )
            best_run = (refits or folds or [None])[0]
            if best_run is not None:
                tags["best_run_id"] = best_run.info.run_id
            for refit in refits:  # named once the best is known: "alpha=0.1 seed=0 refit"
                name = tracking.fit_run_name(self.best_params_, self._varying(), role="refit",
                                             seed=_seed_of(self.best_estimator_) if hasattr(self, "best_estimator_")
                                             else None)
                note = refit.data.tags.get(tracking.NOTE_TAG, "").replace("**refit**", f"**{name}**", 1)
                retrying(parent.client.log_batch, refit.info.run_id,
                         tags=[RunTag("mlflow.runName", name), RunTag(tracking.NOTE_TAG, note)])
        if hasattr(self, "refit_time_"):
            metrics["refit_time_s"] = float(self.refit_time_)
        series = [(0, {k: v for k, v in metrics.items() if np.isfinite(v)})]
        if getattr(self, "time_budget", None) is not None:  # what a time budget bought, and when
            series[0][1].update(budget_spent_s=self.budget_spent_s_, fits_in_budget=self.n_fits_trained_)
            # The best score over the search, step = epochs trained so far (elapsed seconds beside it).
            series += [(epochs, {"best_score_so_far": best, "elapsed_s": elapsed})
                       for elapsed, epochs, best in self.best_score_history_ if np.isfinite(best)]
        parent.log_metric_series(series, tags)


#: The tracked searches' own parameters, after scikit-learn's: where and how
#: the parent run is filed, and whether finished fits are reused.
_TRACKING_PARAMS = {"experiment_name": None, "run_name": None, "run_tags": None, "tracking_uri": None,
                    "resume": True, "log_models": "refit"}


TRACKING_PARAMS_DOC = """\
    experiment_name : str, default=None
        MLflow experiment of the parent run (created if needed); None: the
        active run's, ``MLFLOW_EXPERIMENT_NAME`` or Default.
    run_name : str, default=None
        Name of the parent run; None: the class name.
    run_tags : dict, default=None
        Tags of the parent run.
    tracking_uri : str, default=None
        Tracking store; None: the one in force (``MLFLOW_TRACKING_URI``, ...).
    resume : bool, default=True
        Reuse fits that already FINISHED with the same fingerprint (a rerun of
        an interrupted search); False fits everything again.
    log_models : {"refit", "all"}, default="refit"
        Which fits log their model (an MLflow logged model): the refit only,
        as scikit-learn keeps only its estimator, or every fit (the study's
        sections, whose every fit is a result someone may want to load).
"""


TRACKING_ATTRIBUTES_DOC = """\
    run_id_ : str
        The parent run (only when tracked).
    trained_run_ids_ : list of str
        The runs of the fits this call trained (only when tracked; the refit's aside).
    reused_run_ids_ : list of str
        The finished runs that stood in for fits this call did not train (resume).
    resumed_ : bool
        Whether ``run_id_`` is an earlier run of this very search, resumed, rather than a new one.
"""


def tracked_init(base):
    """``base.__init__`` plus the tracking parameters, keyword-only, in its signature.

    scikit-learn reads an estimator's parameters from its ``__init__``
    signature (``get_params``, ``clone``): built from the base class's, so a
    scikit-learn release that adds a search parameter needs no change here.
    """
    def __init__(self, *args, experiment_name=None, run_name=None, run_tags=None, tracking_uri=None,
                 resume=True, log_models="refit", **kwargs):
        base.__init__(self, *args, **kwargs)
        self.experiment_name, self.run_name, self.run_tags = experiment_name, run_name, run_tags
        self.tracking_uri, self.resume, self.log_models = tracking_uri, resume, log_models

    signature = inspect.signature(base.__init__)
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
             for name, default in _TRACKING_PARAMS.items()]
    __init__.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
    return __init__


class GridSearchCV(TrackedSearchMixin, _GridSearchCV):
    """``sklearn.model_selection.GridSearchCV``, tracked in MLflow.

    Same parameters and behaviour as scikit-learn's; with tracking on (the
    default; ``MNIST_MLP_TRACKING=0`` turns it off) the search is one parent
    run with a child run per fit. See :mod:`mnist_mlp.model_selection.search`.

    Parameters
    ----------
    estimator, param_grid, scoring, n_jobs, refit, cv, verbose, pre_dispatch, error_score, return_train_score
        As for ``sklearn.model_selection.GridSearchCV``.
    <tracking parameters>

    Attributes
    ----------
    <tracking attributes>
    """


class HalvingGridSearchCV(TrackedSearchMixin, _HalvingGridSearchCV):
    """``sklearn.model_selection.HalvingGridSearchCV``, tracked in MLflow.

    Successive halving, scikit-learn's counterpart of Hyperband. Children are
    also tagged with their ``iteration`` and ``n_resources``. See
    :mod:`mnist_mlp.model_selection.search`.

    Parameters
    ----------
    estimator, param_grid, factor, resource, max_resources, min_resources, aggressive_elimination, cv, scoring, refit, error_score, return_train_score, random_state, n_jobs, verbose
        As for ``sklearn.model_selection.HalvingGridSearchCV``.
    <tracking parameters>

    Attributes
    ----------
    <tracking attributes>
    """


GridSearchCV.__init__ = tracked_init(_GridSearchCV)
HalvingGridSearchCV.__init__ = tracked_init(_HalvingGridSearchCV)
for _search_class in (GridSearchCV, HalvingGridSearchCV):
    _search_class.__doc__ = _search_class.__doc__.replace("    <tracking parameters>\n", TRACKING_PARAMS_DOC).replace(
        "    <tracking attributes>\n", TRACKING_ATTRIBUTES_DOC)
