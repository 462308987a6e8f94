"""The one place that reaches into scikit-learn's search internals.

Below both its users: the tracked searches (:mod:`mnist_mlp.model_selection`)
wrap scikit-learn's per-fit function with it, and tracking
(:mod:`mnist_mlp.tracking`) asks it which fit of a plain scikit-learn search is
running.

A tracked search must run code *around* each fold fit, in whatever process
runs it: set the fit's MLflow parent, candidate and fold (a context variable
the fit reads), reuse a finished fit on resume, record the result. scikit-learn
offers no public hook for that: ``BaseSearchCV.fit`` calls the module-level
function ``sklearn.model_selection._search._fit_and_score`` (looked up at call
time) for every candidate x fold. So, for the duration of one
``evaluate_candidates`` call, :func:`fit_and_score_replaced` swaps that
function for a wrapper, under a lock, and puts the original back.

It also tells a search's multi-metric scorer apart (:func:`is_multimetric`):
scikit-learn names its class privately.

And it tells which fit of scikit-learn's own model selection is running now
(:func:`sklearn_fit_in_progress`), for a plain scikit-learn ``GridSearchCV``
or ``cross_validate`` that no tracked search of ours wraps: a fold fit runs
inside ``_fit_and_score`` (whose arguments name the candidate, its params and
the fold), the refit inside ``BaseSearchCV.fit`` itself. scikit-learn passes
the fit nothing that says so, so this reads the calling frames, in this
thread, in whatever process runs the fit. If a release renames what it reads,
the answer is None (the fit is then logged as a standalone one), and
``tests/test_model_selection_search.py`` fails on :func:`check`.

``candidate_progress`` numbers a candidate within one ``evaluate_candidates``
call, which a successive-halving search makes once per round: the
candidate's row in ``cv_results_`` adds the candidates of the earlier rounds,
read from ``evaluate_candidates``'s own frame (``all_candidate_params``) when
the fit runs in its thread, else from the search scikit-learn >= 1.9 hands
the fit (``caller``: a halving search's ``n_candidates_`` per round so far).
Where neither tells, and the search is not one that evaluates all its
candidates at once, the row is left unknown rather than guessed.

Why not ``sklearn.callback`` (scikit-learn 1.9, experimental)? Its callbacks
observe (``on_fit_begin``/``on_fit_task_end``) rather than wrap a fit, they
need scikit-learn >= 1.9 while this package supports 1.6, and the API may
still change. Revisit when it is stable and can wrap a fit.

:func:`check` verifies what the patch relies on and raises a clear error
naming the scikit-learn version if a release changes it, rather than letting
searches silently run untracked; ``tests/test_model_selection_search.py``
calls it, so CI fails on such a release.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import threading

import sklearn
from sklearn.model_selection import _search, _validation

__all__ = ["SearchFit", "SklearnChangedError", "check", "fit_and_score_replaced", "is_multimetric",
           "original_fit_and_score", "sklearn_fit_in_progress"]

# evaluate_candidates looks the function up in _search's globals at call time;
# swaps from several threads take turns.
_LOCK = threading.RLock()


class SklearnChangedError(RuntimeError):
    """This scikit-learn no longer works the way tracked searches hook into it."""


def original_fit_and_score():
    """scikit-learn's own per-fit function."""
    return _validation._fit_and_score


def _names_used(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_used(const)
    return names


def check():
    """Raise :class:`SklearnChangedError` unless the hook still applies."""
    problems = []
    if getattr(_search, "_fit_and_score", None) is not getattr(_validation, "_fit_and_score", object()):
        problems.append("sklearn.model_selection._search._fit_and_score is gone or is not "
                        "sklearn.model_selection._validation._fit_and_score")
    fit = inspect.unwrap(_search.BaseSearchCV.fit)  # scikit-learn >= 1.9 wraps it (callbacks, params)
    if "_fit_and_score" not in _names_used(fit.__code__):
        problems.append("BaseSearchCV.fit no longer calls _fit_and_score by name")
    missing = _FOLD_ARGUMENTS - set(inspect.signature(_validation._fit_and_score).parameters)
    if missing:
        problems.append(f"_fit_and_score no longer takes {sorted(missing)}")
    if problems:
        raise SklearnChangedError(
            f"scikit-learn {sklearn.__version__} changed what mnist_mlp's tracked searches hook into: "
            + "; ".join(problems) + ". Pin scikit-learn to a version that works, or update "
            "mnist_mlp/sklearn_internals.py."
        )


@contextlib.contextmanager
def fit_and_score_replaced(replacement):
    """Make scikit-learn's searches call ``replacement`` for each fit during the block."""
    check()
    with _LOCK:
        original = _search._fit_and_score
        _search._fit_and_score = replacement
        try:
            yield
        finally:
            _search._fit_and_score = original


def is_multimetric(scorer):
    """Whether ``scorer`` is the multi-metric scorer a search hands each fit for a list or dict ``scoring``.

    scikit-learn names that class privately (``_MultimetricScorer``); should it
    move, it is recognised by the dict of scorers it holds (``_scorers``),
    so that a search's own multi-metric scoring is still left alone.
    """
    try:
        from sklearn.metrics._scorer import _MultimetricScorer
    except ImportError:  # renamed or moved: fall back on the public behaviour
        return callable(scorer) and hasattr(scorer, "_scorers")
    return isinstance(scorer, _MultimetricScorer)


# The arguments of _fit_and_score that describe a fold fit.
_FOLD_ARGUMENTS = frozenset({"parameters", "split_progress", "candidate_progress"})


@dataclasses.dataclass(frozen=True)
class SearchFit:
    """A fit that scikit-learn's model selection is making.

    Attributes
    ----------
    role : {"fold", "refit"}
    candidate : int or None
        The candidate's row in ``cv_results_`` (a search's fold fit), where it can be known.
    iteration : int or None
        The round of a successive-halving search (``cv_results_["iter"]``).
    fold : int or None
        The split's index (a search's fold fit).
    params : dict or None
        The candidate's parameters (a search's fold fit).
    """

    role: str
    candidate: int | None = None
    fold: int | None = None
    params: dict | None = None
    iteration: int | None = None


def sklearn_fit_in_progress():
    """The fit of scikit-learn's model selection running in this thread now, if any.

    Returns
    -------
    SearchFit or None
        ``role="fold"`` inside ``_fit_and_score`` (a search's or
        ``cross_validate``'s fold fit), with the candidate, fold and params a
        search gives it; ``role="refit"`` for the refit of a search's best
        candidate; None anywhere else, or if scikit-learn changed what this reads.
    """
    fold_code = getattr(_validation._fit_and_score, "__code__", None)
    refit_code = getattr(inspect.unwrap(_search.BaseSearchCV.fit), "__code__", None)
    if fold_code is None or not _FOLD_ARGUMENTS <= set(fold_code.co_varnames):
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is fold_code:
            arguments = frame.f_locals
            split, candidate = arguments.get("split_progress"), arguments.get("candidate_progress")
            offset, iteration = _earlier_candidates(frame, arguments.get("caller")) if candidate else (None, None)
            return SearchFit("fold", candidate=None if offset is None else offset + int(candidate[0]),
                             fold=int(split[0]) if split else None, params=arguments.get("parameters") or None,
                             iteration=iteration)
        if frame.f_code is refit_code:
            return SearchFit("refit")
        frame = frame.f_back
    return None


def _earlier_candidates(fold_frame, caller):
    """``(candidates evaluated in earlier rounds, this round)`` for a fold fit of a search.

    Either is None where it cannot be known (see the module docstring).
    """
    frame = fold_frame.f_back
    while frame is not None:  # this thread: the search's evaluate_candidates, before it records this round
        if frame.f_code.co_name == "evaluate_candidates" and "all_candidate_params" in frame.f_code.co_freevars:
            arguments = frame.f_locals
            more = arguments.get("more_results") or {}
            iteration = more.get("iter", [None])[0]
            return len(arguments["all_candidate_params"]), None if iteration is None else int(iteration)
        frame = frame.f_back
    rounds = getattr(caller, "n_candidates_", None)  # another process or thread: a halving search's rounds
    if isinstance(rounds, list) and rounds:
        return sum(rounds[:-1]), len(rounds) - 1
    single_round = (_search.GridSearchCV._run_search, _search.RandomizedSearchCV._run_search)
    if caller is not None and getattr(type(caller), "_run_search", None) in single_round:
        return 0, None
    return None, None
