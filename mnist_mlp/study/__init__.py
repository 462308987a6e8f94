"""The study: its sections as experiments, running them tracked, and the report.

The contract other folders (the CLI) use:

- :func:`load_experiment`, :func:`experiment_names`, :class:`Experiment`:
  the study's sections, each declared in ``pipelines/`` (add an experiment
  there and in ``experiments.EXPERIMENTS``), filed in MLflow experiments
  named after :data:`EXPERIMENT_PREFIX_ENV` (``mnist-mlp study`` by default);
- :func:`run_experiment`, :func:`run_tuning`: fit a section on MNIST, filed
  in its MLflow experiment; :func:`run_budget_tuning`: tune within a time
  budget; :func:`run_side_by_side`: several sections at once, each in a
  worker process, the longest first;
- :func:`collect`, :func:`collect_section`, :func:`write_report`: read the
  runs back into the report;
- :func:`format_section`, :func:`format_tuning`: a section's results table
  for the terminal;
- :func:`difference_note`: where the running versions differ from those
  the committed report was made with (a checkout only);
- :func:`progress_display`, :class:`ProgressCallback`: long work on a terminal.

Modules: ``experiments``, ``runner``, ``side_by_side``, ``report``, ``terminal``, ``progress``,
``environment`` (the versions a report's figures came from).
"""

from __future__ import annotations

from mnist_mlp._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["EXPERIMENTS", "EXPERIMENT_PREFIX_ENV", "Experiment", "count_fits", "experiment_names",
                     "load_experiment"], "experiments"),
    **dict.fromkeys(["run_budget_tuning", "run_experiment", "run_tuning"], "runner"),
    "run_side_by_side": "side_by_side",
    **dict.fromkeys(["collect", "collect_section", "write_report"], "report"),
    **dict.fromkeys(["format_section", "format_tuning"], "terminal"),
    **dict.fromkeys(["ProgressCallback", "progress_display"], "progress"),
    "difference_note": "environment",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
