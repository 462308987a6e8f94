"""MLflow runs for fits: where a fit logs, what it logs, and how its run ends.

A fit logs into, in this order of precedence:

1. the run of the enclosing tracked estimator (a ``TrackedPipeline`` opens the
   run and its ``MLPClassifier`` logs into it);
2. a child of a search's parent run, described by a :class:`FitContext` that
   travels with the fit to whatever process runs it (``n_jobs=2``);
3. a child of the user's active MLflow run: the one active in this thread, or,
   for an estimator that a process pool (scikit-learn's own searches and
   ``cross_validate`` with ``n_jobs=2``) pickled while a run was active, that
   run (see :func:`context_to_inherit` and :func:`inherited_run`), or, in a
   worker process running a whole study section, the run active in the
   process that started it (see :func:`launched_by`), or, in a thread with no
   run of its own (a ``ThreadPoolExecutor`` inside ``with mlflow.start_run():``),
   the one run active in any thread of the process
   (:func:`~mnist_mlp.tracking.store.active_run_in_process`);
4. a new top-level run in the current experiment.

Runs are written through an explicit ``MlflowClient`` rather than MLflow's
fluent, process-global active-run stack, so fits in worker processes and
threads file their runs correctly. A run this module opens always ends:
FINISHED, FAILED (with the error recorded) or KILLED on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
import time

import mlflow
from mlflow.entities import Metric, Param, RunTag

from mnist_mlp import interrupts
from mnist_mlp._switch import FIT_CONTEXT
from mnist_mlp.tracking import artifacts, ledger, store, values
from mnist_mlp.tracking.fallback import FallbackFolder

__all__ = ["FitContext", "FitRun", "context_to_inherit", "current_dataset", "current_run", "current_test_set", "dataset",
           "fit_context", "inherited_run", "launched_by", "owned_run", "test_set"]

logger = logging.getLogger(__name__)

_PARENT_TAG = "mlflow.parentRunId"


@dataclasses.dataclass(frozen=True)
class FitContext:
    """Where a fit inside a search logs: travels, pickled, to worker processes.

    Attributes
    ----------
    tracking_uri : str
    experiment_id : str
    parent_run_id : str
    tags : dict
        Tags of the fit's run (candidate index, fold, iteration, ...).
    log_model : bool
        Whether the fit logs its model (the refit does, fold fits do not).
    run_name : str or None
        Name of the fit's run.
    test_data : tuple (X_test, y_test) or None
        A test set each fitted pipeline scores itself on, logged in its run.
    dataset : str or None
        The dataset's name (:func:`dataset`): context variables stay in the
        process that set them, so a fit in a worker process reads it here.
    ledger : tuple or None
        ``(host, folder)`` of the dispatching process's ledger
        (:mod:`~mnist_mlp.tracking.ledger`): a worker on that host registers
        its run there, so that the run is ended KILLED if the worker is killed.
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tags: dict
    log_model: bool = False
    run_name: str | None = None
    test_data: tuple | None = None
    dataset: str | None = None
    ledger: tuple | None = None

    def with_tags(self, **tags):
        return dataclasses.replace(self, tags={**self.tags, **tags})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


_FIT_CONTEXT = FIT_CONTEXT
_CURRENT_RUN: contextvars.ContextVar[FitRun | None] = contextvars.ContextVar(
    "mnist_mlp_current_run", default=None
)
_DATASET: contextvars.ContextVar[str | None] = contextvars.ContextVar("mnist_mlp_dataset", default=None)
_TEST_DATA: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("mnist_mlp_test_data", default=None)
_LAUNCHER: contextvars.ContextVar[mlflow.entities.Run | None] = contextvars.ContextVar(
    "mnist_mlp_launcher", default=None
)


@contextlib.contextmanager
def _bound(var, value):
    """Set a context variable for the block, then restore it."""
    token = var.set(value)
    try:
        yield value
    finally:
        var.reset(token)


def fit_context(context):
    """Make every fit in the block log as ``context`` describes."""
    return _bound(_FIT_CONTEXT, context)


def _decided_here():
    """Whether a search's context or an enclosing tracked estimator already files this fit."""
    return _FIT_CONTEXT.get() is not None or _CURRENT_RUN.get() is not None


def context_to_inherit():
    """Where a fit of an estimator pickled now, and fitted in another process, should log.

    Called when an unfitted estimator is pickled (scikit-learn's searches and
    ``cross_validate`` send clones to worker processes that way). If a run
    is active in this process, and no search or pipeline of ours is deciding
    already, returns ``(pid, FitContext)`` making the fit a child of that run,
    in its experiment and store. Otherwise None.
    """
    if _decided_here():
        return None
    run = store.active_run_in_process()
    if run is None:
        return None
    context = FitContext(store.resolve_tracking_uri(), run.info.experiment_id, run.info.run_id,
                         {"launched_in": "worker process"}, log_model=True, ledger=ledger.dispatching())
    # Nothing of ours is on the stack of scikit-learn's search when it is interrupted:
    # a watcher ends the runs of the workers it killed.
    ledger.watch()
    return os.getpid(), context


@contextlib.contextmanager
def inherited_run(inherited):
    """Fit in the block as a child of ``inherited``, the run an estimator was pickled under, if any.

    ``inherited`` is what :func:`context_to_inherit` returned where the
    estimator was pickled (None: nothing changes). Only in another process
    than that one, when nothing here decides otherwise (a search's context, an
    enclosing tracked estimator, an active run in this thread), and while that
    run is still RUNNING: an estimator unpickled long after its run ended
    starts a run of its own. :func:`mnist_mlp.tracking.decide` calls it.
    """
    if inherited is None or inherited[0] == os.getpid() or _decided_here() or mlflow.active_run() is not None:
        yield
        return
    context = inherited[1]
    try:
        status = store.retrying(store.client(context.tracking_uri).get_run, context.parent_run_id).info.status
    except store.STORE_ERRORS:
        status = None
    if status != "RUNNING":
        yield
        return
    with fit_context(context):
        yield


def dataset(name):
    """Record ``name`` as the ``dataset`` param of every fit in the block.

    Examples
    --------
    >>> from mnist_mlp.tracking import dataset
    >>> with dataset("fashion-mnist"):
    ...     pass  # pipe.fit(x_train, y_train) logs dataset=fashion-mnist
    """
    return _bound(_DATASET, name)


def test_set(X_test, y_test):
    """Have every tracked pipeline fitted in the block score itself on this test set.

    Its test metrics and confusion matrix go into its own run (see
    :func:`mnist_mlp.evaluate`); fits in a search's worker processes get the
    test set through their :class:`FitContext`.
    """
    return _bound(_TEST_DATA, (X_test, y_test))


def launched_by(run):
    """Open new top-level runs in the block as if ``run`` were active here.

    For a worker process that runs part of a command (a study section run
    side by side with others): ``run``, the MLflow run active in the process
    that started the worker (``mlflow run``'s project run), becomes the
    parent of the runs opened in its experiment and their ``launched_by``
    elsewhere, as it would in that process. The worker never resumes the run
    through MLflow's fluent API, so the worker's exit cannot end it. None:
    nothing changes.
    """
    return _bound(_LAUNCHER, run)


def current_test_set():
    """The test set registered by :func:`test_set` for this fit, if any."""
    context = _FIT_CONTEXT.get()
    if context is not None and context.test_data is not None:
        return context.test_data
    return _TEST_DATA.get()


def current_dataset():
    """The dataset name registered by :func:`dataset` for this fit, if any."""
    context = _FIT_CONTEXT.get()
    if context is not None and context.dataset is not None:
        return context.dataset
    return _DATASET.get()


def current_run():
    """The run an enclosing tracked estimator opened for this fit, if any."""
    return _CURRENT_RUN.get()


# -- a run -----------------------------------------------------------------------


class FitRun:
    """One MLflow run, written through an explicit client.

    Use :meth:`open` to create it where the current context says; as a
    context manager it ends the run it created: FINISHED, FAILED (error
    recorded in the ``error`` tag) or KILLED (KeyboardInterrupt).

    Parameters
    ----------
    client : mlflow.tracking.MlflowClient
    run_id : str
    experiment_id : str
    log_model : bool
        Whether the owner of this run should log its model.
    """

    def __init__(self, client, run_id, experiment_id, *, log_model=True, artifact_uri=None, name=None, tags=None):
        self.client = client
        self.run_id = run_id
        #: The run's name and the tags it was created with (its section, fidelity, ...).
        self.name = name
        self.tags = dict(tags or {})
        #: Where the run's artifacts live; None: ask MLflow for each upload.
        self.artifact_uri = artifact_uri
        self.experiment_id = experiment_id
        self.log_model = log_model
        self.tracking_uri = client.tracking_uri
        #: Params and tags to write with the next ``log_params`` / at the end,
        #: saving the store a round trip each.
        self._pending_params = {}
        #: Metrics ``[(step, {name: value})]`` and tags written when the run ends.
        self._end_metrics = []
        self._end_results = {}
        self._end_tags = {}
        self._ended = False
        #: What the run logged so far: params, and results of the whole fit (``log_metrics`` at
        #: step 0, not the per-epoch series): a logged model's own.
        self.logged_params = {}
        self._step0_metrics = {}
        #: The run's MLflow 3 logged model, once logged: later metrics are linked to it.
        self.model_id = None
        #: Whether :meth:`open` reopened an earlier run rather than creating one (``reopen``).
        self.resumed = False
        #: Set once the store was lost mid-fit; from then on records go to ``fallback_dir``
        #: (which also holds any single write a reachable store refused).
        self.lost = False
        self.fallback = self.fallback_dir = None
        self._ledger_entry = None

    def _store(self, call, *args, local, **kwargs):
        """Write through the store; if it fails for good, write ``local()`` to the fallback folder."""
        if not self.lost:
            try:
                return store.retrying(call, *args, **kwargs)
            except store.STORE_ERRORS as exc:
                self._failed(exc)
        local()

    def _failed(self, exc):
        """A write failed after its retries: lost if the store no longer answers, else refused.

        Only a store that cannot be reached is lost (every later record goes
        to the fallback folder); one that answers refused this write alone,
        which goes to the folder while the run goes on, and ends, in the store.
        """
        if store.reachable(self.client):
            self.fallback = FallbackFolder(self.run_id, self.tracking_uri, self.experiment_id, exc, lost=False)
        else:
            self.lost = True
            self.fallback = FallbackFolder(self.run_id, self.tracking_uri, self.experiment_id, exc)
        self.fallback_dir = self.fallback.path

    @classmethod
    def open(cls, *, run_name, tags=None, experiment_name=None, tracking_uri=None, reopen=None):
        """Create a run where the current context says (see the module docstring).

        Parameters
        ----------
        run_name : str
        tags : dict, default=None
        experiment_name : str, default=None
            Put the run in this experiment (created if needed) instead. If a
            run is active elsewhere, it is recorded in the ``launched_by`` tag
            rather than as the parent, which MLflow shows only within one
            experiment.
        tracking_uri : str, default=None
            The store of a new top-level run; None: the one in force. (A fit
            inside a search always goes to its parent's store.)
        reopen : dict, default=None
            Tags identifying the run (a search's ``fingerprint``): where the
            new run would be a top-level run and its experiment already holds
            one with these tags, the newest such run is reopened (RUNNING
            again, its params kept, ``resumed`` True) instead of a duplicate
            made beside it.

        Returns
        -------
        FitRun
        """
        tags = dict(tags or {})
        context = _FIT_CONTEXT.get()
        active = None
        store.check_reachable(context.tracking_uri if context is not None
                              else tracking_uri or store.resolve_tracking_uri())
        if context is not None:
            client = store.client(context.tracking_uri)
            experiment_id, log_model = context.experiment_id, context.log_model
            tags.update(context.tags)
            run_name = context.run_name or run_name
            tags[_PARENT_TAG] = context.parent_run_id
        else:
            client = store.client(tracking_uri or store.resolve_tracking_uri())
            active = (mlflow.active_run() or _LAUNCHER.get() or store.active_run_in_process()
                      if tracking_uri is None else None)
            log_model = True
            experiment_id = (
                store.experiment_id_for(client, experiment_name) if experiment_name
                else active.info.experiment_id if active is not None
                else store.current_experiment_id(client)
            )
            if active is not None:
                same = active.info.experiment_id == experiment_id
                tags[_PARENT_TAG if same else "launched_by"] = active.info.run_id
        if reopen and context is None and active is None:
            earlier = store.retrying(
                client.search_runs, [experiment_id],
                filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in reopen.items()),
                order_by=["attributes.start_time DESC"], max_results=1)
            if earlier:
                return cls._reopened(client, earlier[0])
        # As mlflow.start_run would: who started it and from where (the UI's User and Source);
        # the package's own tags (runName, parentRunId, ...) win.
        tags = {**store.mlflow_context_tags(), **tags, **store.library_versions()}
        tags["mlflow.runName"] = run_name
        # A stop between creating the run and noting it open would leave it RUNNING where no code
        # can end it: held until it is noted (then the process's exit, or the ledger, ends it).
        with interrupts.deferred():
            run = store.retrying(
                client.create_run, experiment_id,
                tags={k: str(v) for k, v in tags.items()}, run_name=run_name,
            )
            opened = cls(client, run.info.run_id, experiment_id, log_model=log_model,
                         artifact_uri=run.info.artifact_uri, name=run_name, tags=tags)
            if context is not None:  # sent from another process: in its ledger, should this one be killed
                opened._ledger_entry = ledger.register(context.ledger, client.tracking_uri, run.info.run_id)
            ledger.opened(opened)
        return opened

    @classmethod
    def _reopened(cls, client, run):
        with interrupts.deferred():  # as in open: RUNNING again only once noted open
            store.retrying(client.update_run, run.info.run_id, status="RUNNING")
            reopened = cls(client, run.info.run_id, run.info.experiment_id, artifact_uri=run.info.artifact_uri,
                           name=run.info.run_name, tags=run.data.tags)
            ledger.opened(reopened)
        reopened.resumed = True
        reopened.logged_params = dict(run.data.params)
        return reopened

    @classmethod
    def attach(cls, tracking_uri, run_id):
        """Log more into an existing run (e.g. test metrics after the fit). Never ends it."""
        client = store.client(tracking_uri)
        try:
            info = store.retrying(client.get_run, run_id).info
        except store.STORE_ERRORS as exc:
            attached = cls(client, run_id, None, log_model=False)
            attached._failed(exc)
        else:
            attached = cls(client, run_id, info.experiment_id, log_model=False,
                           artifact_uri=info.artifact_uri)
        attached._ended = True  # not ours to end
        return attached

    def fit_context(self, *, log_model=False, run_name=None, **tags):
        """A :class:`FitContext` whose fits become children of this run."""
        return FitContext(
            self.tracking_uri, self.experiment_id, self.run_id, tags, log_model,
            run_name,
            test_data=_TEST_DATA.get(), dataset=_DATASET.get(), ledger=ledger.dispatching(),
        )

    def children(self):
        """The runs whose parent is this run."""
        return store.retrying(
            self.client.search_runs, [self.experiment_id],
            filter_string=f"tags.`{_PARENT_TAG}` = '{self.run_id}'", max_results=5000,
        )

    def as_current(self):
        """Make nested tracked estimators log into this run instead of opening their own."""
        return _bound(_CURRENT_RUN, self)

    # logging -------------------------------------------------------------------

    def defer_params(self, params):
        """Params to write with the next :meth:`log_params` (one store write for both)."""
        self._pending_params.update(params)

    def defer_to_end(self, metrics=(), tags=None, results=None):
        """Metrics ``[(step, {name: value})]``, tags and results of the whole fit (step 0,
        linked to the run's logged model) to write in the run's closing write."""
        self._end_metrics.extend(metrics)
        self._end_tags.update(tags or {})
        self._end_results.update(results or {})

    def log_params(self, params):
        params, self._pending_params = {**self._pending_params, **params}, {}
        if self.resumed:  # a run's params cannot change: a reopened run keeps its first values
            params = {k: v for k, v in params.items() if k not in self.logged_params}
        self.logged_params.update(params)
        items = [Param(str(k), values.param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's per-batch param limit
            self._store(self.client.log_batch, self.run_id, params=items[start:start + 100],
                        local=lambda: self.fallback.update_json("params.json", params))

    def log_metrics(self, metrics, *, step=0):
        """Log one step's metrics (step 0: results of the whole fit, such as test metrics,
        linked to the run's logged model)."""
        if step == 0:
            self._step0_metrics.update(metrics)
            self.log_metric_series([], results=metrics)
        else:
            self.log_metric_series([(step, metrics)])

    def log_metric_series(self, series, tags=None, results=None):
        """Log ``[(step, {name: value})]``, optional tags, and ``results`` (step 0, linked to
        the run's logged model) in as few calls as MLflow allows."""
        now = int(time.time() * 1000)
        batch = [Metric(k, values.finite(v), now, step) for step, logged in series for k, v in logged.items()]
        batch += [Metric(k, values.finite(v), now, 0, model_id=self.model_id) for k, v in (results or {}).items()]
        series = [*series, (0, results)] if results else series  # for the fallback folder
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        def local():
            self.fallback.append_metrics(series)
            self.fallback.update_json("tags.json", tags or {})

        for start in range(0, max(len(batch), 1), 1000):  # MLflow's per-batch metric limit
            self._store(self.client.log_batch, self.run_id, metrics=batch[start:start + 1000],
                        tags=tag_list if start == 0 else [], local=local)
            local = lambda: None  # noqa: E731  (the first fallback wrote everything)

    def log_inputs(self, datasets):
        """Log ``mlflow.entities.DatasetInput`` s: the UI's Dataset column."""
        if datasets:
            self._store(self.client.log_inputs, self.run_id, datasets=datasets,
                        local=lambda: self.fallback.update_json("inputs.json", {
                            d.dataset.name: {"digest": d.dataset.digest, "profile": d.dataset.profile}
                            for d in datasets}))

    def set_tags(self, tags):
        if tags:
            self.log_metric_series([], tags)

    def log_files(self, files, artifact_path=None, dpi=80):
        """Log several artifacts in one call: ``{name: str text or matplotlib Figure}``."""
        with self.staged_artifacts(artifact_path) as folder:
            for name, content in files.items():
                if isinstance(content, str):
                    (folder / name).write_text(content)
                else:  # fast zlib level: a few % larger PNG, a third of the encode time
                    content.savefig(folder / name, dpi=dpi, pil_kwargs={"compress_level": 1})

    def log_file(self, path, artifact_path=None):
        self._store(self.client.log_artifact, self.run_id, str(path), artifact_path,
                    local=lambda: self.fallback.copy_artifacts(path, artifact_path))

    def log_dir(self, path, artifact_path):
        self._store(self.client.log_artifacts, self.run_id, str(path), artifact_path,
                    local=lambda: self.fallback.copy_artifacts(path, artifact_path))

    @contextlib.contextmanager
    def staged_artifacts(self, artifact_path=None):
        """A folder to write artifacts in; on leaving the block they join the run.

        When the run's artifacts are on local disk, the folder is made beside
        them and its entries are renamed into place: no second copy of a model,
        and never a half-written artifact (a failed block publishes nothing).
        Elsewhere (a tracking server), the folder is uploaded.
        """
        root = artifacts.local_root(self.artifact_uri) if not self.lost else None
        with artifacts.staging_folder(root) as (folder, beside):
            yield folder
            if beside:
                self._store(artifacts.rename_into, folder, root / (artifact_path or ""),
                            local=lambda: self.fallback.copy_artifacts(folder, artifact_path))
            else:
                self.log_dir(folder, artifact_path)

    @contextlib.contextmanager
    def logged_model(self, name, *, model_type=None):
        """Where to save a model (a path that does not exist yet); on leaving the block the
        model becomes an MLflow 3 logged model of this run.

        The logged model is created PENDING with the run's params, its files
        are published all at once (renamed into place when its artifacts are
        on local disk, uploaded elsewhere), it is linked to the run as its
        output, the run's metrics are linked to it, and it is finalized READY.
        A failed block finalizes it FAILED and publishes nothing. With the
        store lost, the model is saved as the run's artifact ``name`` in the
        fallback folder instead; with the store answering but refusing the
        logged model, as the run's artifact ``name`` in the store.

        Yields
        ------
        (Path, LoggedModel or None)
        """
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        model = None
        if not self.lost:
            try:
                model = store.retrying(
                    self.client.create_logged_model, self.experiment_id, name=name, source_run_id=self.run_id,
                    params={k: values.param_value(v) for k, v in self.logged_params.items()}, model_type=model_type,
                )
            except store.STORE_ERRORS as exc:
                self._failed(exc)
        if model is None:
            with self.staged_artifacts() as folder:
                yield folder / name, None
            return
        root = artifacts.local_root(model.artifact_location)
        with artifacts.staging_folder(root) as (folder, beside):
            try:
                yield folder / name, model
            except BaseException:  # the model could not be saved: nothing published
                with contextlib.suppress(Exception):
                    store.retrying(self.client.finalize_logged_model, model.model_id, LoggedModelStatus.FAILED)
                raise
            try:
                if beside:
                    artifacts.rename_into(folder / name, root)
                else:
                    store.retrying(self.client.log_model_artifacts, model.model_id, str(folder / name))
                store.retrying(self.client.log_outputs, self.run_id, [LoggedModelOutput(model.model_id, step=0)])
                store.retrying(self.client.finalize_logged_model, model.model_id, LoggedModelStatus.READY)
            except store.STORE_ERRORS as exc:  # lost or refused: the model goes to the fallback folder
                with contextlib.suppress(Exception):
                    store.retrying(self.client.finalize_logged_model, model.model_id, LoggedModelStatus.FAILED)
                self._failed(exc)
                self.fallback.copy_artifacts(folder / name if (folder / name).exists() else root, name)
                return
        self.model_id = model.model_id
        # The results logged so far, linked to the model too, in the run's closing write
        # (the closing write's own metrics carry the model's id already).
        self.defer_to_end(results=dict(self._step0_metrics))

    # ending --------------------------------------------------------------------

    def end(self, status="FINISHED", error=None):
        if self._ended:
            return
        self._ended = True
        tags = dict(self._end_tags)
        if error is not None:
            tags["error"] = f"{type(error).__name__}: {error}"[:5000]
        if self._end_metrics or self._end_results or tags:
            with contextlib.suppress(Exception):  # a logging error must not hide the fit's own
                self.log_metric_series(self._end_metrics, tags, results=self._end_results)
        self._store(self.client.set_terminated, self.run_id, status,
                    local=lambda: self.fallback.update_json("info.json", {"status": status}))
        # Ended: no longer the ledger's to end (an ending cut short stays in it).
        ledger.closed(self)
        if self._ledger_entry is not None:
            self._ledger_entry.close()
        if not self.lost:  # as MLflow's end_run does, for autologging users' mlflow.last_active_run()
            store.remember_last_active_run(self.run_id, self.tracking_uri)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.end("FINISHED")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("KILLED", exc)
        else:
            self.end("FAILED", exc)
        return False


@contextlib.contextmanager
def owned_run(run_name, tags=None):
    """The run of the enclosing tracked estimator, or a new one this block owns.

    Yields ``(run, owned)``: ``owned`` is True when the block created the run
    (and so ends it and logs the model).
    """
    existing = current_run()
    if existing is not None:
        yield existing, False
        return
    with FitRun.open(run_name=run_name, tags=tags) as run, run.as_current():
        yield run, True

