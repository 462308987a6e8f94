"""``tracking.decide`` and ``tracking.carried``: whether a fit records, and under which parent."""

from __future__ import annotations

import os
import types

import mlflow
import pytest

from mnist_mlp._switch import FIT_CONTEXT
from mnist_mlp.tracking import FitContext, carried, decide


def _fitted(**attributes):
    return types.SimpleNamespace(**attributes)


def test_the_parameter_then_a_search_context_then_the_environment_decide(monkeypatch):
    monkeypatch.delenv("MNIST_MLP_TRACKING", raising=False)
    with decide(_fitted(tracking=False)) as records:
        assert records is False
    with decide(_fitted()) as records:  # a search: no tracking parameter, records
        assert records is True
    monkeypatch.setenv("MNIST_MLP_TRACKING", "off")
    with decide(_fitted(tracking=True)) as records:
        assert records is False
    token = FIT_CONTEXT.set(FitContext("sqlite:///unused.db", "0", "parent", {}))
    try:  # a search handed this fit its context: it decided, whatever this process's environment says
        with decide(_fitted(tracking=True)) as records:
            assert records is True
        with decide(_fitted(tracking=False)) as records:  # but never against the estimator's own parameter
            assert records is False
    finally:
        FIT_CONTEXT.reset(token)


def test_a_carried_run_is_used_once_and_only_by_a_fit_that_records(monkeypatch):
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    fitted = _fitted(tracking=True, _inherited_run=(os.getpid(), None))
    with decide(fitted) as records:
        assert records is False
    assert not hasattr(fitted, "_inherited_run")  # read once, even untracked: a later fit does not inherit


def test_an_estimator_pickled_under_an_active_run_carries_it_to_another_process(tracked):
    assert carried(_fitted(tracking=True)) == {}  # no run active
    with mlflow.start_run() as active:
        assert carried(_fitted(tracking=False)) == {}
        ((name, (pid, context)),) = carried(_fitted(tracking=True)).items()
    assert pid == os.getpid() and context.parent_run_id == active.info.run_id
    assert context.experiment_id == active.info.experiment_id
    # In the worker, another process where no run is active, the parent is still running.
    tracked.update_run(active.info.run_id, status="RUNNING")
    with decide(_fitted(tracking=True, **{name: (pid + 1, context)})) as records:
        assert records is True and FIT_CONTEXT.get() == context  # the fit in the block is that run's child
    assert FIT_CONTEXT.get() is None
    with decide(_fitted(tracking=True, **{name: (pid, context)})) as records:  # the process that pickled it
        assert records is True and FIT_CONTEXT.get() is None


@pytest.mark.parametrize("status", ["FINISHED", "KILLED"])
def test_a_carried_run_that_has_ended_is_no_parent(tracked, status):
    with mlflow.start_run() as active:
        (name, (pid, context)), = carried(_fitted(tracking=True)).items()
    tracked.set_terminated(active.info.run_id, status)
    with decide(_fitted(tracking=True, **{name: (pid + 1, context)})) as records:
        assert records is True and FIT_CONTEXT.get() is None
