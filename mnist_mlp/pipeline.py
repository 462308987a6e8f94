"""The study's pipeline: flatten images row-wise -> min-max scale -> MLPClassifier."""

from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from mnist_mlp._switch import tracking_enabled
from mnist_mlp.estimator import MLPClassifier
from mnist_mlp.preprocessing import FixedRangeScaler, ImageFlattener
from mnist_mlp.serving import example_rows

__all__ = ["TrackedPipeline", "make_pipeline"]

_SCALERS = {"fixed": FixedRangeScaler, "minmax": MinMaxScaler}


class TrackedPipeline(Pipeline):
    """A ``Pipeline`` whose fit is one MLflow run, with the whole pipeline as its model.

    When its final step is an :class:`MLPClassifier` with tracking on, ``fit``
    opens the run, the classifier logs its params, metrics and plots into it,
    and the fitted pipeline is logged as the run's model (sklearn flavour,
    input example of raw images), so that the served model takes images.
    Otherwise it is a plain ``Pipeline``.

    Attributes
    ----------
    run_id_ : str
        The fit's MLflow run (only when tracked).
    """

    def fit(self, X, y=None, **params):
        """Fit all steps; see ``sklearn.pipeline.Pipeline.fit``."""
        clf = self._final_estimator
        if not (isinstance(clf, MLPClassifier) and tracking_enabled(clf.tracking)):
            return super().fit(X, y, **params)
        from mnist_mlp import tracking

        clf.validate_hyperparameters()  # bad parameters fail before a run exists
        # The pipeline records its own fit: MLflow's autologging stays out (docs/interop.md).
        with tracking.autolog_suspended(), tracking.inherited_run(clf), \
                tracking.owned_run(tracking.standalone_run_name(clf)) as (run, owned):
            # Written together with the classifier's params, in one call.
            run.defer_params({f"step.{n}": type(step).__name__ for n, step in self.steps})
            super().fit(X, y, **params)
            test = tracking.current_test_set()
            if test is not None:
                from mnist_mlp.evaluation import evaluate

                evaluate(self, *test)
            role = tracking.sklearn_selection_tags(run).get("role")
            if tracking.model_wanted(clf, run, owned, role):
                tracking.log_model(run, self, example_rows(X))
        self.run_id_ = run.run_id
        return self


def make_pipeline(*, scaler="fixed", image_shape=(28, 28), **classifier_params):
    """Return an unfitted ``Pipeline(flatten -> scale -> classifier)``.

    Parameters
    ----------
    scaler : {"fixed", "minmax"}, default="fixed"
        ``"fixed"``: the study's pixel / 255 (:class:`FixedRangeScaler`), the
        same for every image whatever the batch. ``"minmax"``: scikit-learn's
        per-feature ``MinMaxScaler``, fitted on the training data.
    image_shape : tuple of int, default=(28, 28)
        Height and width of the images.
    **classifier_params
        Parameters of :class:`MLPClassifier` (``epochs=10``,
        ``optimizer="rmsprop"``, ``optimizer__rho=0.99``, ...).

    Returns
    -------
    TrackedPipeline
        An ``sklearn.pipeline.Pipeline`` with steps ``"flatten"``, ``"scale"`` and ``"classifier"``; grid keys take
        the usual form, e.g. ``classifier__alpha``.

    Examples
    --------
    >>> from mnist_mlp import make_pipeline
    >>> pipe = make_pipeline(epochs=5, batch_size=128)
    >>> [name for name, _ in pipe.steps]
    ['flatten', 'scale', 'classifier']
    >>> pipe.get_params()["classifier__epochs"]
    5
    """
    if scaler not in _SCALERS:
        raise ValueError(f"The 'scaler' parameter must be one of {sorted(_SCALERS)}; got {scaler!r}")
    return TrackedPipeline(
        [
            ("flatten", ImageFlattener(image_shape=image_shape)),
            ("scale", _SCALERS[scaler]()),
            ("classifier", MLPClassifier(**classifier_params)),
        ]
    )
