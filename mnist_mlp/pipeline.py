"""The study's pipeline: flatten images row-wise -> min-max scale -> MLPClassifier."""

from __future__ import annotations

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_consistent_length

from mnist_mlp import tracking
from mnist_mlp.estimator import MLPClassifier
from mnist_mlp.preprocessing import FixedRangeScaler, ImageFlattener
from mnist_mlp.serving import InputContract, example_rows

__all__ = ["TrackedPipeline", "make_pipeline"]

_SCALERS = {"fixed": FixedRangeScaler, "minmax": MinMaxScaler}


def _final_has(method):
    return lambda pipe: hasattr(pipe._final_estimator, method)


class TrackedPipeline(Pipeline):
    """A ``Pipeline`` whose fit is one MLflow run, with the whole pipeline as its model.

    When its final step is an :class:`MLPClassifier` with tracking on, ``fit``
    opens the run, the classifier logs its params, metrics and plots into it,
    and the fitted pipeline is logged as the run's model (sklearn flavour,
    input example of raw images), so that the served model takes images.
    Otherwise it is a plain ``Pipeline``.

    Fitted on whole numbers (uint8 images, ints), it refuses to predict or
    score input with fractions, such as images scaled to [0, 1], and fitted on
    images, images the other way round (dark ink on light paper for a model
    trained on MNIST), as the served model does
    (:meth:`mnist_mlp.serving.InputContract.check_values`): its network would
    answer them with confident, wrong digits.

    Attributes
    ----------
    input_contract_ : dict
        What the pipeline was fitted on (:class:`~mnist_mlp.serving.InputContract`,
        as ``to_dict()`` writes it): the shape of one sample, the dtype and, for
        images, their :class:`~mnist_mlp.serving.Background`.
    run_id_ : str
        The fit's MLflow run (only when tracked).
    """

    def fit(self, X, y=None, **params):
        """Fit all steps; see ``sklearn.pipeline.Pipeline.fit``.

        ``X`` and ``y`` of different lengths, or an empty ``X``, fail with
        scikit-learn's ``ValueError`` before any MLflow run exists.
        """
        check_consistent_length(X, y)
        if (X.shape[0] if hasattr(X, "shape") else len(X)) == 0:
            check_array(X, allow_nd=True, dtype=None)  # scikit-learn's "Found array with 0 sample(s)"
        clf = self._final_estimator
        if not isinstance(clf, MLPClassifier):
            self._fit_steps(X, y, **params)
            return self
        with tracking.decide(clf) as records:
            if records:
                self._tracked_fit(clf, X, y, **params)
            else:
                self._fit_steps(X, y, **params)
        return self

    def _fit_steps(self, X, y, **params):
        super().fit(X, y, **params)
        # Images (a flattener with a 2-D image shape) have a background to learn, from all of X;
        # a table (a 1-D shape) has none. Recorded before the model is logged, which carries it.
        flattener = self.steps[0][1]
        image_shape = flattener.image_shape_ if isinstance(flattener, ImageFlattener) else None
        self.input_contract_ = InputContract.from_training(X, image_shape=image_shape).to_dict()

    def _tracked_fit(self, clf, X, y, **params):
        clf.validate_hyperparameters()  # bad parameters fail before a run exists
        with tracking.owned_run(tracking.standalone_run_name(clf)) as (run, owned):
            # Written together with the classifier's params, in one call.
            run.defer_params({f"step.{n}": type(step).__name__ for n, step in self.steps})
            self._fit_steps(X, y, **params)
            test = tracking.current_test_set()
            if test is not None:
                from mnist_mlp.evaluation import evaluate

                evaluate(self, *test)
            role = tracking.sklearn_selection_tags(run).get("role")
            if tracking.model_wanted(clf, run, owned, role):
                tracking.log_model(run, self, example_rows(X))
        self.run_id_ = run.run_id

    def _check_input(self, X):
        contract = getattr(self, "input_contract_", None)
        if contract is not None:
            InputContract.from_dict(contract).check_values(X)

    @available_if(_final_has("predict"))
    def predict(self, X, **params):
        """Predict with the final step; see ``sklearn.pipeline.Pipeline.predict``."""
        self._check_input(X)
        return super().predict(X, **params)

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X, **params):
        """Class probabilities; see ``sklearn.pipeline.Pipeline.predict_proba``."""
        self._check_input(X)
        return super().predict_proba(X, **params)

    @available_if(_final_has("predict_log_proba"))
    def predict_log_proba(self, X, **params):
        """Log class probabilities; see ``sklearn.pipeline.Pipeline.predict_log_proba``."""
        self._check_input(X)
        return super().predict_log_proba(X, **params)

    @available_if(_final_has("score"))
    def score(self, X, y=None, sample_weight=None, **params):
        """Score with the final step; see ``sklearn.pipeline.Pipeline.score``."""
        self._check_input(X)
        return super().score(X, y, sample_weight=sample_weight, **params)


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
