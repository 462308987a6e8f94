"""Hyperband over epochs: many candidates train a few epochs, the best continue.

The study tuned with keras-tuner's ``Hyperband(max_epochs=R, factor=3)``,
whose budget is epochs. :class:`HyperbandSearchCV` is its scikit-learn
counterpart over a parameter grid. A *bracket* ``s`` (``0 <= s <= s_max``,
``s_max = floor(log_factor(R))``) is one successive-halving run: its first
rung trains its candidates for ``R / factor**s`` epochs, each later rung
keeps the best ``ceil(n / factor)`` and gives them ``factor`` times the
epochs, up to ``R``. Every rung is scored on the same validation split
(``cv``); nothing is resampled.

**Rungs continue training.** A candidate promoted from 3 to 9 epochs trains
6 more epochs from where it stopped (weights, optimizer slots and step
count: the estimator's ``warm_start``), so a rung costs only its new epochs.
Without shuffling or dropout the result equals a fresh 9-epoch fit to float32
round-off (``tests/test_model_selection_hyperband.py``). The fitted states
wait between rungs in a temporary folder (``joblib`` pickles: worker
processes share them) that the search removes when it ends.

The best candidate is chosen among the last rungs (the ``R``-epoch fits) of
all brackets.

**A time budget.** With ``time_budget`` (seconds) the brackets run over and
over (keras-tuner's *iterations*: every bracket, each drawing its first rung
afresh from the grid with ``random_state``) until the budget is spent. The
clock is read before each rung: once the budget is spent, no rung starts; the
one in flight finishes, so the search overruns by at most that rung. The
first rung always runs. A budget may end before any bracket of an iteration
reaches ``R``: the best is then chosen among the fits with the most epochs
any rung reached. With tracking on, the search is one parent run; every fit is a
child tagged with its ``bracket``, ``rung``, ``n_resources`` (its total
epochs) and ``continued_from`` (the epochs it started from).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from sklearn.model_selection import ParameterGrid
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from mnist_mlp import sklearn_internals
from mnist_mlp.model_selection.search import (TRACKING_ATTRIBUTES_DOC, TRACKING_PARAMS_DOC, TrackedSearchMixin,
                                              tracked_init)

__all__ = ["HyperbandSearchCV", "brackets_for"]


def brackets_for(max_resources, factor):
    """keras-tuner's brackets for ``max_epochs=max_resources``: ``{s: (n_candidates, min_epochs)}``.

    Bracket ``s`` starts ``ceil((s_max + 1) / (s + 1) * factor**s)`` candidates
    at ``max_resources / factor**s`` epochs (rounded, at least 1).

    Examples
    --------
    >>> brackets_for(81, 3)
    {4: (81, 1), 3: (34, 3), 2: (15, 9), 1: (8, 27), 0: (5, 81)}
    """
    s_max = int(math.floor(math.log(max_resources, factor) + 1e-9))
    return {s: (math.ceil((s_max + 1) / (s + 1) * factor**s), max(1, round(max_resources / factor**s)))
            for s in range(s_max, -1, -1)}


class _Checkpoints:
    """Fitted states between the rungs of one bracket: one pickle per (candidate, split,
    epochs), in the bracket's folder; the search's ledger of epochs trained beside it.

    Picklable (two paths), so fits in worker processes find each other's states.
    """

    def __init__(self, root, bracket, iteration=0):
        # A budget's later iterations keep their states apart from the first's.
        folder = f"bracket-{bracket}" if not iteration else f"iteration-{iteration}-bracket-{bracket}"
        self.root = str(Path(root, folder))
        self.ledger = str(Path(root, _LEDGER))

    @staticmethod
    def key(params, resource, train, test):
        digest = hashlib.sha256(json.dumps({k: repr(v) for k, v in sorted(params.items()) if k != resource},
                                           sort_keys=True).encode())
        for rows in (train, test):
            digest.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
        return digest.hexdigest()[:32]

    def latest(self, key, below):
        """``(epochs, path)`` of the most-trained state under ``below`` epochs, or None."""
        folder = Path(self.root, key)
        found = [int(p.stem) for p in folder.glob("*.pkl") if p.stem.isdigit() and int(p.stem) < below]
        return (max(found), folder / f"{max(found)}.pkl") if found else None

    def record(self, epochs):
        """Add ``epochs`` to the search's ledger of epochs trained (one short append: atomic)."""
        with open(self.ledger, "a") as ledger:
            ledger.write(f"{epochs}\n")

    def save(self, key, epochs, estimator, callbacks_param):
        """Pickle ``estimator`` without its callbacks (they belong to the fit, and need not pickle)."""
        import joblib

        folder = Path(self.root, key)
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{epochs}.{uuid.uuid4().hex}.tmp"
        callbacks = estimator.get_params().get(callbacks_param)
        if callbacks:
            estimator.set_params(**{callbacks_param: None})
        try:
            joblib.dump(estimator, partial)
        finally:
            if callbacks:
                estimator.set_params(**{callbacks_param: callbacks})
        os.replace(partial, folder / f"{epochs}.pkl")  # never a half-written state


# The search's ledger of epochs trained, in its folder: a line per fit.
_LEDGER = "epochs.log"


def _ledger(root):
    """Epochs trained by each fit so far, in the order they ended."""
    ledger = Path(root, _LEDGER)
    return [int(line) for line in ledger.read_text().split()] if ledger.is_file() else []


def _sibling(resource, name):
    """The parameter ``name`` of the step that owns ``resource`` ("classifier__epochs" -> "classifier__name")."""
    prefix, sep, _ = resource.rpartition("__")
    return f"{prefix}{sep}{name}"


def _rung_fit_and_score(checkpoints, resource, continue_training, estimator, X, y, **kwargs):
    """scikit-learn's per-fit function for a rung: continues the candidate's previous rung if
    it can, keeps the fitted state for the next, and records the epochs it trained.

    Module-level (pickled to worker processes with its folder). The returned
    ``fit_time`` is that of the new epochs only: what the rung cost.
    """
    import joblib

    parameters = dict(kwargs["parameters"])
    budget = int(parameters[resource])
    key = _Checkpoints.key(parameters, resource, kwargs["train"], kwargs["test"])
    previous = checkpoints.latest(key, below=budget) if continue_training else None
    fitted, start = estimator, 0
    if previous is not None:
        start, path = previous
        fitted = joblib.load(path)  # fitted for `start` epochs; trains budget - start more
        # This fit's own callbacks (a progress display, ...), not the pickled state's.
        callbacks = estimator.get_params().get(_sibling(resource, "callbacks"))
        kwargs["parameters"] = {**parameters, resource: budget - start, _sibling(resource, "warm_start"): True,
                                _sibling(resource, "callbacks"): callbacks}
    result = sklearn_internals.original_fit_and_score()(fitted, X, y, **kwargs)
    if fitted is not estimator and hasattr(fitted, "run_id_"):
        estimator.run_id_ = fitted.run_id_  # the tracked wrapper records the result under it
    if result.get("fit_error") is None:
        checkpoints.record(budget - start)
        if continue_training:
            checkpoints.save(key, budget, fitted, _sibling(resource, "callbacks"))
    return result


class _Hyperband(BaseSearchCV):
    """Hyperband over a parameter grid, with epochs as the resource, tracked in MLflow.

    See :mod:`mnist_mlp.model_selection.hyperband`.

    Parameters
    ----------
    estimator : estimator
        A pipeline ending in an ``MLPClassifier`` (or the classifier itself).
    param_grid : dict or list of dicts
        As for ``GridSearchCV``; must not name the resource.
    resource : str, default="classifier__epochs"
        The estimator parameter that is the budget (``"epochs"`` for a bare
        classifier). Its ``warm_start`` sibling is set to continue training.
    max_resources : int, default=81
        ``R``: epochs of the last rung (keras-tuner's ``max_epochs``).
    factor : int, default=3
        Each rung keeps ``ceil(n / factor)`` candidates and multiplies their epochs by ``factor``.
    brackets : list of int or None, default=None
        Which brackets ``s`` to run (see :func:`brackets_for`); None: all of
        them, as keras-tuner does.
    candidates : {"all", "hyperband"}, default="all"
        ``"all"``: every bracket starts from the whole grid (nothing in it
        is left unseen); ``"hyperband"``: keras-tuner's count per bracket,
        drawn from the grid with ``random_state`` when the grid is larger.
    continue_training : bool, default=True
        Rungs continue from the previous rung's fitted state; False refits
        each rung from scratch (scikit-learn's ``HalvingGridSearchCV`` way).
    scoring, n_jobs, refit, cv, verbose, pre_dispatch, error_score, return_train_score
        As for ``GridSearchCV``. ``refit`` trains the best candidate afresh for ``R`` epochs.
    random_state : int, RandomState or None, default=None
        For ``candidates="hyperband"``.
    time_budget : float or None, default=None
        Seconds: run the brackets again and again, with fresh candidates each
        iteration, until this much time is spent; a rung in flight finishes, so
        the search ends at most one rung past it (the first rung always runs).
        Needs ``candidates="hyperband"``. None: the brackets run once.
    <tracking parameters>

    Attributes
    ----------
    cv_results_ : dict
        One row per fit of a rung, with ``bracket``, ``rung``, ``n_resources`` (epochs in
        total) and ``continued_from`` columns.
    best_index_, best_params_, best_score_
        Chosen among the rows with the largest ``n_resources`` reached: ``max_resources``,
        unless a ``time_budget`` ended the search before any bracket reached it.
    n_epochs_trained_ : int
        Epochs actually trained, over all fits and splits (a continued fit counts its new
        ones; a fit reused from a finished run, none).
    n_fits_trained_ : int
        Fits actually trained (a fit reused from a finished run is not counted).
    budget_spent_s_ : float
        Seconds the search's brackets took, from the first rung's start to the last's end.
    best_score_history_ : list of tuple
        After each rung, ``(elapsed seconds, epochs trained so far, best mean validation
        score of any fit so far)``.
    <tracking attributes>
    """

    _parameter_constraints = {
        **BaseSearchCV._parameter_constraints,
        "param_grid": [dict, list],
        "resource": [str],
        "max_resources": [Interval(Integral, 1, None, closed="left")],
        "factor": [Interval(Integral, 2, None, closed="left")],
        "brackets": [list, None],
        "candidates": [str],
        "continue_training": ["boolean"],
        "random_state": ["random_state"],
        "time_budget": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(self, estimator, param_grid, *, resource="classifier__epochs", max_resources=81, factor=3,
                 brackets=None, candidates="all", continue_training=True, scoring=None, n_jobs=None,
                 refit=True, cv=5, verbose=0, pre_dispatch="2*n_jobs", random_state=None,
                 error_score=np.nan, return_train_score=False, time_budget=None):
        super().__init__(estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score,
                         return_train_score=return_train_score)
        self.param_grid = param_grid
        self.resource = resource
        self.max_resources = max_resources
        self.factor = factor
        self.brackets = brackets
        self.candidates = candidates
        self.continue_training = continue_training
        self.random_state = random_state
        self.time_budget = time_budget

    def _bracket_plan(self):
        """``[(s, n_candidates, min_epochs), ...]`` for the brackets to run, most exploratory first."""
        if self.candidates not in ("all", "hyperband"):
            raise ValueError(f"candidates must be 'all' or 'hyperband'; got {self.candidates!r}")
        if self.time_budget is not None and self.candidates != "hyperband":
            raise ValueError("time_budget needs candidates='hyperband' (each iteration draws fresh candidates); "
                             f"got candidates={self.candidates!r}")
        plan = brackets_for(self.max_resources, self.factor)
        chosen = sorted(plan, reverse=True) if self.brackets is None else list(self.brackets)
        unknown = [s for s in chosen if s not in plan]
        if unknown:
            raise ValueError(f"brackets {unknown} do not exist for max_resources={self.max_resources}, "
                             f"factor={self.factor}; choose among {sorted(plan)}")
        return [(s, *plan[s]) for s in chosen]

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        # Named _run_search and wrapped by the tracking mixin like any search;
        # the continuation hook goes inside its per-fit wrapper (or alone when untracked).
        grid = list(ParameterGrid(self.param_grid))
        if any(self.resource in params for params in grid):
            raise ValueError(f"param_grid must not name the resource {self.resource!r}: Hyperband sets it")
        rng = check_random_state(self.random_state)
        plan = self._bracket_plan()  # bad settings fail before anything is created
        root = tempfile.mkdtemp(prefix="mnist_mlp_hyperband_")
        # scikit-learn >= 1.9 hands a callback context: one subtask per rung, as its halving search does.
        budgeted = self.time_budget is not None
        search_ctx = None if callback_ctx is None else callback_ctx.subcontext(
            task_name="search", max_subtasks=None if budgeted else sum(s + 1 for s, _, _ in plan),
        ).call_on_fit_task_begin(estimator=self)
        started, history, best = time.perf_counter(), [], -np.inf
        try:
            # A budget's iterations: every bracket again, drawing afresh, until the budget is spent.
            brackets = ((i, bracket) for i in (itertools.count() if budgeted else range(1)) for bracket in plan)
            for iteration, (s, n_start, min_epochs) in brackets:
                # Rungs continue within their bracket only: each bracket is its own successive halving.
                checkpoints = _Checkpoints(root, s, iteration)
                self._per_fit = functools.partial(_rung_fit_and_score, checkpoints, self.resource,
                                                  self.continue_training)
                n_first = self._first_rung_size(n_start, len(grid))
                candidates = grid if n_first == len(grid) else [
                    grid[i] for i in sorted(rng.choice(len(grid), n_first, replace=False))]
                previous_epochs = 0
                for rung, epochs, n in self._rungs(s, len(candidates), min_epochs):
                    if self._out_of_time(started, history):
                        break
                    params = [{**c, self.resource: epochs} for c in candidates]
                    start = previous_epochs if self.continue_training else 0
                    more = {"bracket": [s] * n, "rung": [rung] * n, "n_resources": [epochs] * n,
                            "continued_from": [start] * n, **({"iter": [iteration] * n} if budgeted else {})}
                    results = self._evaluate(evaluate_candidates, params, more, search_ctx)
                    scores = np.asarray(results[f"mean_test_{self._metric()}"][-n:], dtype=float)
                    best = max(best, np.nanmax(scores, initial=-np.inf))
                    history.append((time.perf_counter() - started, sum(_ledger(root)), float(best)))
                    if rung == s:
                        break
                    keep = self._promoted(n)
                    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:keep]
                    candidates = [candidates[i] for i in sorted(order)]
                    previous_epochs = epochs
                if self._out_of_time(started, history):
                    break
            if search_ctx is not None:
                search_ctx.call_on_fit_task_end(estimator=self)
            ledger = _ledger(root)
            self.n_epochs_trained_, self.n_fits_trained_ = sum(ledger), len(ledger)
            self.budget_spent_s_ = time.perf_counter() - started
            self.best_score_history_ = history
        finally:
            shutil.rmtree(root, ignore_errors=True)
            self.__dict__.pop("_per_fit", None)

    def _out_of_time(self, started, history):
        """Whether the budget is spent: read before each rung, once one has run (the first always does)."""
        return self.time_budget is not None and bool(history) and time.perf_counter() - started >= self.time_budget

    def _evaluate(self, evaluate_candidates, params, more, search_ctx):
        kwargs = {}
        if search_ctx is not None:
            kwargs["callback_ctx"] = search_ctx.subcontext(
                task_name="hyperband-rung", max_subtasks=len(params) * self.n_splits_, sequential_subtasks=False,
            ).call_on_fit_task_begin(estimator=self)
        if hasattr(self, "_fold_context"):
            results = evaluate_candidates(params, more_results=more, **kwargs)  # tracked: the mixin calls _per_fit
        else:
            with sklearn_internals.fit_and_score_replaced(self._per_fit):
                results = evaluate_candidates(params, more_results=more, **kwargs)
        if search_ctx is not None:
            kwargs["callback_ctx"].call_on_fit_task_end(estimator=self)
        return results

    def _promoted(self, n):
        """How many of a rung's ``n`` candidates go on to the next rung."""
        return max(1, math.ceil(n / self.factor))

    def _rungs(self, s, n_first, min_epochs):
        """``(rung, epochs, n_candidates)`` for each rung of bracket ``s``."""
        n = n_first
        for rung in range(s + 1):
            yield rung, (self.max_resources if rung == s else min_epochs * self.factor**rung), n
            n = self._promoted(n)

    def _first_rung_size(self, n_start, n_grid):
        return n_grid if self.candidates == "all" else min(n_grid, n_start)

    def planned_fits(self):
        """Fits the search will run (candidates x splits, over every rung of every bracket);
        None with a ``time_budget``, which decides how many run."""
        from sklearn.model_selection import check_cv

        if self.time_budget is not None:
            return None

        n_grid = len(ParameterGrid(self.param_grid))
        total = sum(n for s, n_start, min_epochs in self._bracket_plan()
                    for _, _, n in self._rungs(s, self._first_rung_size(n_start, n_grid), min_epochs))
        return total * check_cv(self.cv).get_n_splits()

    def planned_epochs(self):
        """Epochs the search will train at most, over every fit (continued rungs count only
        their extra epochs); fewer when earlier fits stand in for some. None with a ``time_budget``."""
        from sklearn.model_selection import check_cv

        if self.time_budget is not None:
            return None

        n_grid = len(ParameterGrid(self.param_grid))
        total = 0
        for s, n_start, min_epochs in self._bracket_plan():
            previous = 0
            for _, epochs, n in self._rungs(s, self._first_rung_size(n_start, n_grid), min_epochs):
                total += n * (epochs - previous)
                previous = epochs if self.continue_training else 0
        return total * check_cv(self.cv).get_n_splits()

    def _metric(self):
        return self.refit if isinstance(self.refit, str) else "score"

    def _select_best_index(self, refit, refit_metric, results):
        """The best among the fits with the most epochs (``max_resources``, short of a budget), by ``refit_metric``."""
        if callable(refit):
            return BaseSearchCV._select_best_index(refit, refit_metric, results)
        # max_resources, unless a time budget ended the search before any bracket reached it.
        reached = np.asarray(results["n_resources"])
        last = np.flatnonzero(reached == reached.max())
        scores = np.nan_to_num(np.asarray(results[f"mean_test_{refit_metric}"], dtype=float)[last], nan=-np.inf)
        return int(last[np.argmax(scores)])


class HyperbandSearchCV(TrackedSearchMixin, _Hyperband):
    __doc__ = _Hyperband.__doc__.replace("    <tracking parameters>\n", TRACKING_PARAMS_DOC).replace(
        "    <tracking attributes>\n", TRACKING_ATTRIBUTES_DOC)


HyperbandSearchCV.__init__ = tracked_init(_Hyperband)
