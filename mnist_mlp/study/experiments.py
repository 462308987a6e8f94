"""The study's sections: each an experiment declared in ``pipelines/``, with its published figures."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

__all__ = ["BEYOND_THE_STUDY", "EXPERIMENTS", "EXPERIMENT_PREFIX", "EXPERIMENT_PREFIX_ENV", "Experiment",
           "count_fits", "experiment_names", "load_experiment"]

#: Section -> module in ``pipelines/``: the study's, in its order, then those beyond it.
EXPERIMENTS = {
    "2.1": "mnist_mlp.pipelines.batch_size",
    "2.2": "mnist_mlp.pipelines.rmsprop_rho",
    "2.3": "mnist_mlp.pipelines.sgd_normal_init",
    "2.4.1": "mnist_mlp.pipelines.l2_rmsprop",
    "2.4.2": "mnist_mlp.pipelines.l2_sgd_normal_init",
    "2.5.1": "mnist_mlp.pipelines.l1_dropout_rmsprop",
    "2.5.2": "mnist_mlp.pipelines.l1_dropout_sgd_normal_init",
    "3": "mnist_mlp.pipelines.tuning",
    "4": "mnist_mlp.pipelines.dropout_paper",
}

#: Sections beyond the study: run when named (``mnist-mlp study 4``), never by ``study all``
#: (the study's own sections, within its budget of epochs), and in the report once they ran.
BEYOND_THE_STUDY = ("4",)

#: The start of each section's MLflow experiment name: ``mnist-mlp study 2.4.1: L2 with RMSprop``.
EXPERIMENT_PREFIX = "mnist-mlp study"

#: Environment variable replacing :data:`EXPERIMENT_PREFIX` (what ``mnist-mlp study --experiment`` sets):
#: a study kept apart from another in the same store. Read when a name is asked for, so worker
#: processes started by the command see it too.
EXPERIMENT_PREFIX_ENV = "MNIST_MLP_STUDY_EXPERIMENT"


@dataclass(frozen=True)
class Experiment:
    """A study section: title, description, published figures, its search and, for a
    tuning section, the final network's epochs. The runner and the report read
    sections only through it (no special case by section name)."""

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
    def reference(self):
        """Another framework's per-seed results for this section (``label``, ``seeds``,
        ``accuracies`` in %, ``source``), or None."""
        return getattr(self.module, "REFERENCE", None)

    @property
    def finding(self):
        """What the report states of this section beside the distributions (a format string), or None."""
        return getattr(self.module, "FINDING", None)

    @property
    def beyond_the_study(self):
        """True for a section of our own (:data:`BEYOND_THE_STUDY`), whose published figures are another paper's."""
        return self.section in BEYOND_THE_STUDY

    @property
    def published_by(self):
        """Who published the section's figures: ``"study"``, or the paper a section beyond it reruns."""
        return getattr(self.module, "PUBLISHED_BY", "study")

    @property
    def experiment_name(self):
        prefix = os.environ.get(EXPERIMENT_PREFIX_ENV, "").strip() or EXPERIMENT_PREFIX
        return f"{prefix} {self.section}: {self.title}"

    @property
    def final_epochs(self):
        """Epochs of the fresh network a tuning experiment trains with its best parameters, else None."""
        return getattr(self.module, "FINAL_EPOCHS", None)

    def make_search(self, **overrides):
        """The section's unfitted search (``epochs``, ``seeds`` and the like override the study's)."""
        return self.module.make_search(**overrides)


def experiment_names(*, beyond=False):
    """The study's sections, in order (what ``study all`` runs); ``beyond=True``: then those beyond it."""
    return [name for name in EXPERIMENTS if beyond or name not in BEYOND_THE_STUDY]


def load_experiment(name):
    """The :class:`Experiment` of section ``name`` (e.g. ``"2.2"``, or ``"4"`` beyond the study).

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

    if hasattr(search, "planned_fits"):  # Hyperband plans its brackets itself
        return search.planned_fits()
    n = len(ParameterGrid(search.param_grid))
    if not hasattr(search, "factor"):
        return n * search.cv.get_n_splits()
    total = n
    while n > search.factor - 1 and n > 1:  # halving stops once fewer than `factor` remain
        n = -(-n // search.factor)
        total += n
    return total * search.cv.get_n_splits()
