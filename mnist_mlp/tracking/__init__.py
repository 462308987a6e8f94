"""Tracking: every fit an MLflow run.

The contract other folders use (nothing else in ``mnist_mlp.tracking`` is
theirs to import):

- whether a fit records, and under which parent: :func:`decide` (the one
  place that decides, asked by the estimator, the pipeline and the searches)
  and :func:`carried` (the run an unfitted estimator pickled now takes to the
  process that fits it);
- where a fit logs: :func:`owned_run` (its enclosing tracked estimator's run,
  or a new one), :class:`FitContext` / :func:`fit_context` (a search's child,
  in whatever process runs it), :func:`launched_by` (a worker
  process's runs filed under the run of the process that started it),
  :func:`dataset` and :func:`test_set`;
- runs a worker left (see ``ledger``): :func:`end_runs_of_stopped_workers`
  (the runs that this process's fits in joblib's worker processes, or its
  study workers, left RUNNING when they were killed, ended KILLED);
  :func:`dispatching` and :func:`register_runs_in` (a study worker's
  runs registered in its command's ledger); :func:`end_runs_open_here`;
- what a fit logs: :func:`track_fit` (the estimator's one call: params,
  per-epoch metrics, results, plots, model), :func:`log_model`,
  :func:`log_evaluation`, :func:`model_wanted` (the model logging policy),
  :func:`sklearn_selection_tags` (a plain scikit-learn search's fold or refit);
- the store: :func:`client` and :func:`retrying` (one client per store,
  writes retried under SQLite contention and when concurrent writers
  collide), :func:`check_reachable`, :func:`reachable` (a lost store told
  from a refused write), :func:`resolve_tracking_uri`, and the errors and
  warnings of a lost store or a refused write;
- MLflow's autologging: :func:`autolog_suspended` (off inside the package's
  own fits, which record themselves);
- how values are written down: :func:`describe`, :func:`param_value`,
  :func:`jsonable`;
- the Model Registry: :func:`register_model` (a new version, the alias
  :data:`CHAMPION` moved to the best), :func:`registered_name`;
- what a run is called and says about itself: :func:`fit_run_name`,
  :func:`standalone_run_name`, :func:`scale_tags`, :data:`NOTE_TAG`.

Modules: ``store`` (the MLflow store), ``runs`` (a run: where it is filed,
its writes, the local fallback, artifact staging, how it ends),
``fit_logging`` (what a fit logs), ``callbacks`` (per-epoch logging and
divergence), ``values`` (describing values), ``naming`` (run names, scale,
descriptions), ``registry`` (registered versions and the champion),
``autolog`` (MLflow's autologging suspended inside the package's fits),
``ledger`` (runs of killed workers, and of threads at exit, ended KILLED),
``decision`` (whether a fit records, and under which parent).
"""

from __future__ import annotations

from mnist_mlp._lazy import lazy_exports

from mnist_mlp._switch import TRACKING_ENV, tracking_enabled  # noqa: F401  (in __all__)

# Imported on first use (PEP 562): MLflow loads only when a run is made, so
# the light helpers (values) and the estimator's import stay quick.
_EXPORTS = {
    **dict.fromkeys(["estimator_params", "log_evaluation", "log_fit_results", "log_model", "model_wanted",
                     "sklearn_selection_tags", "track_fit"], "fit_logging"),
    **dict.fromkeys(["FitContext", "FitRun", "current_dataset", "current_run", "current_test_set", "dataset",
                     "fit_context", "launched_by", "owned_run", "test_set"], "runs"),
    **dict.fromkeys(["FALLBACK_DIR_ENV", "IncompleteStoreError", "STORE_ERRORS", "TrackingLostWarning",
                     "TrackingRefusedWarning", "TrackingUnavailableError", "active_run_in_process",
                     "check_reachable", "client", "current_experiment_id", "experiment_id_for", "library_versions",
                     "reachable", "resolve_tracking_uri", "retrying"], "store"),
    **dict.fromkeys(["describe", "jsonable", "param_value"], "values"),
    "autolog_suspended": "autolog",
    **dict.fromkeys(["carried", "decide"], "decision"),
    **dict.fromkeys(["dispatching", "end_runs_of_stopped_workers", "end_runs_open_here", "register_runs_in"],
                    "ledger"),
    **dict.fromkeys(["CHAMPION", "register_model", "registered_name"], "registry"),
    **dict.fromkeys(["NOTE_TAG", "counted", "fit_run_name", "format_value", "grid_values", "scale_tags", "short_key",
                     "standalone_run_name"], "naming"),
}

__all__ = sorted([*_EXPORTS, "TRACKING_ENV", "tracking_enabled"])

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
