"""``MLPClassifier``: the study's Keras MLP as a true scikit-learn classifier."""

from __future__ import annotations

import contextlib
import inspect
import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator
from sklearn.utils import ClassifierTags
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import validate_data

from mnist_mlp import network
from mnist_mlp._tensorflow import keras
from mnist_mlp.network import OPTIMIZERS  # noqa: F401  (documented here: mnist_mlp.estimator.OPTIMIZERS)
from mnist_mlp.tracking import autolog_suspended, carried, decide
from mnist_mlp.training import DIVERGENCE_THRESHOLD, SCHEDULES, diverged, epoch_rules, seeded, train, undisturbed

from scikeras._utils import route_params  # noqa: E402  (after keras)
from scikeras.utils.transformers import ClassifierLabelEncoder, TargetReshaper  # noqa: E402
from scikeras.wrappers import KerasClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline as _sk_make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

__all__ = ["DivergedModelWarning", "MLPClassifier"]

# Prefixes scikeras routes to Keras objects (``optimizer__rho=0.99``).
_ROUTING_PREFIXES = frozenset(KerasClassifier._routing_prefixes | {"callbacks"})


class _SoftmaxLabelEncoder(ClassifierLabelEncoder):
    """One-hot targets for every class count, binary included.

    scikeras encodes binary targets as one ordinal column (for a sigmoid
    output); our network always ends in a softmax over ``n_classes_`` units.
    """

    def fit(self, y):
        super().fit(y)
        if self._target_type == "binary":
            self._final_encoder = _sk_make_pipeline(
                TargetReshaper(),
                OneHotEncoder(
                    sparse_output=False,
                    dtype=np.dtype(keras.backend.floatx()),
                    categories=self.categories,
                ),
            ).fit(y)
            self._target_type = "multiclass"
        return self


class DivergedModelWarning(UserWarning):
    """Predictions of a network whose training diverged (``diverged_`` is True)."""


class MLPClassifier(KerasClassifier):
    """Multi-layer perceptron classifier backed by Keras, scikit-learn compatible.

    The defaults are the study's default network: 784 inputs -> Dense 128,
    ReLU -> Dense 256, ReLU -> Dense 10, softmax; categorical cross-entropy;
    Adam with learning rate 0.001; batch size 256; 100 epochs; the last 20 %
    of the training data held out for validation, without shuffling.
    Labels are plain class labels (ints or strings), never one-hot.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(128, 256)
        Units of each hidden layer, input side first. At least one layer.
    activation : str, default="relu"
        Activation of the hidden layers: any Keras activation name
        (``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"elu"``, ...);
        scikit-learn's ``"identity"`` and ``"logistic"`` are accepted too.
    optimizer : str or keras.optimizers.Optimizer (class or instance), default="adam"
        ``"adam"``, ``"rmsprop"``, ``"sgd"`` (or another name in
        ``mnist_mlp.estimator.OPTIMIZERS``), a Keras optimizer class, or a
        configured instance (copied afresh for every fit). Its own settings
        are routed the scikeras way: ``optimizer__rho=0.99``,
        ``optimizer__momentum=0.9``.
    learning_rate_init : float, default=0.001
        Learning rate given to an optimizer named by string or class.
        ``optimizer__learning_rate`` or an optimizer instance overrides it.
    learning_rate : {"constant", "invscaling", "adaptive", "cosine"}, default="constant"
        The schedule of the learning rate from ``learning_rate_init``, epoch by
        epoch, as scikit-learn's MLP defines its three (for any optimizer here,
        not SGD only), plus ``"cosine"``: a cosine decay over the fit's epochs
        (:mod:`mnist_mlp.training.schedules`). Other than ``"constant"``, each
        epoch's rate is in ``history_["learning_rate"]``.
    power_t : float, default=0.5
        The exponent of ``"invscaling"``: ``learning_rate_init / (t + 1) ** power_t``,
        ``t`` the training samples seen before the epoch (as scikit-learn).
    early_stopping : bool, default=False
        Stop when the validation accuracy (on ``validation_split``, which must
        be above 0) fails to improve by ``tol`` for more than
        ``n_iter_no_change`` epochs in a row, and keep the best epoch's
        weights. Without it a fit trains every epoch (scikit-learn's MLP
        would also stop on a training-loss plateau).
    n_iter_no_change : int, default=10
        Epochs without improvement that ``early_stopping`` and ``"adaptive"``
        tolerate.
    tol : float, default=1e-4
        The improvement an epoch must make to count as one.
    kernel_initializer : str or keras.initializers.Initializer, default="glorot_uniform"
        Weight initialisation of the hidden AND output layers, as in the
        study: a Keras name (``"he_normal"``) or an initializer such as
        ``keras.initializers.RandomNormal(mean=10.0)``. Biases start at zero.
    penalty : {"l1", "l2"} or None, default=None
        Weight penalty on the hidden layers' kernels (not the output layer).
    alpha : float, default=1e-4
        Strength of ``penalty``: ``alpha * sum(w**2)`` (l2) or
        ``alpha * sum(|w|)`` (l1) is added to the loss, Keras's convention
        (scikit-learn's MLP divides by the sample count instead). Ignored
        when ``penalty`` is None, where scikit-learn's MLP would apply it as
        L2: ``fit`` then warns (``UserWarning``) if ``alpha`` is not its
        default, so that a search over ``alpha`` alone is not read as one.
        Applying it by default instead would change every unpenalised fit,
        the study's figures among them.
    dropout : float, default=0.0
        Dropout rate after each hidden layer; 0 means no dropout layer.
    input_dropout : float, default=0.0
        Dropout rate on the inputs (a Keras ``Dropout`` before the first
        hidden layer), as the Dropout paper's networks have (0.2); 0: none.
    max_norm : float or None, default=None
        Max-norm constraint on every hidden kernel: each unit's incoming
        weight vector is scaled back to this norm after every update
        (Keras's ``MaxNorm(max_norm, axis=0)``); None: no constraint.
    batch_size : int, default=256
        Samples per optimizer step: 1 is online training, the whole
        training set (or more) is full-batch training.
    epochs : int, default=100
        Passes over the training data.
    validation_split : float, default=0.2
        Fraction of the training data held out, taken from the END of the
        data as Keras does, to report ``val_loss`` and ``val_accuracy`` each
        epoch. 0 disables validation.
    shuffle : bool, default=False
        Shuffle the training data before each epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout and shuffling. The same value on
        the same data gives identical weights and predictions on CPU.
    verbose : int, default=0
        Keras's verbosity during fit and predict.
    callbacks : list of keras.callbacks.Callback or None, default=None
        Extra Keras callbacks for fit.
    warm_start : bool, default=False
        Continue from the fitted network on the next ``fit``: its weights
        and optimizer state, for ``epochs`` more epochs. ``history_``,
        ``n_iter_`` and ``n_weight_updates_`` then count the network's whole
        training, and the fit's run continues the previous one (its epochs
        numbered on, see ``docs/interop.md``).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss.
    training_loop : {"auto", "xla", "keras"}, default="auto"
        ``"auto"`` trains in a compiled loop (:mod:`mnist_mlp.training`)
        with Keras's mathematics, several times faster than
        ``keras.Model.fit`` (about 2.5x at batch size 256, 40x at batch size 1 on 2 cores:
        ``benchmarks/results/training_speed.md``),
        and predicts with a
        compiled forward pass; where that loop does not apply (a callback
        with per-batch hooks, sample or class weights, an optimizer other
        than Adam, RMSprop or SGD, ...) it falls back to ``keras.Model.fit``
        by itself. With a GPU visible to TensorFlow, ``"auto"`` trains with
        ``keras.Model.fit`` on it where a crossover measured on that GPU says
        it is faster for this network and batch size
        (:mod:`mnist_mlp.training.devices`). Where JAX is installed and sees a
        GPU (the ``gpu`` extra), ``"auto"`` trains in the XLA loop instead:
        each epoch one compiled program on the GPU, the same mathematics
        (``docs/gpu.md``). ``"xla"`` asks for the XLA loop on whatever device
        JAX has (its CPU too). ``"keras"`` always uses
        ``keras.Model.fit`` and ``keras.Model.predict``.
    n_jobs : int, default=None
        Threads of the compiled loop's matrix products, for fit and predict;
        -1 uses every core. None: the ``MNIST_MLP_THREADS`` environment
        variable, else, as a fit starts, the cores other programs leave idle
        (measured over 50 ms; predictions use every core). The thread count
        never changes the results (:mod:`mnist_mlp.training.threads`); it
        does not apply to ``keras.Model.fit``, which has TensorFlow's threads.
    tracking : bool, default=True
        Log the fit to MLflow (see :mod:`mnist_mlp.tracking`): params,
        per-epoch metrics, plots and, for a fit that owns its run, the
        model. The environment variable ``MNIST_MLP_TRACKING=0`` turns it off
        for every fit.
    log_models : {"auto", True, False}, default="auto"
        Which tracked fits log the fitted model (an MLflow logged model)
        besides their params, metrics and plots. ``"auto"``: a fit that owns
        its run does, a fold fit of a search does not (scikit-learn's own
        ``GridSearchCV`` or ``cross_validate`` included; the refit does), and a
        search of this package decides for its fits (its ``log_models``).
        True: every fit, fold fits included. False: none.
    **kwargs
        Routed parameters: ``optimizer__*``, ``fit__*``, ``predict__*``,
        ``compile__*``, ``callbacks__*`` (see scikeras). Anything else is an
        error at fit time.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in fit.
    n_classes_ : int
        Number of classes.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen in fit, when ``X`` was a DataFrame whose column
        names are all strings. Predicting then requires the same columns in the
        same order (scikit-learn's ``ValueError`` otherwise).
    model_ : keras.Model
        The fitted Keras model.
    history_ : dict of str to list of float
        Per-epoch ``loss``, ``accuracy`` and, with validation,
        ``val_loss`` and ``val_accuracy``.
    coefs_ : list of ndarray
        Kernel of each Dense layer (hidden ones, then output) after training.
    intercepts_ : list of ndarray
        Bias of each Dense layer after training.
    initial_coefs_ : list of ndarray
        Kernel of each Dense layer before training (for weight violin plots).
    initial_intercepts_ : list of ndarray
        Bias of each Dense layer before training.
    fit_time_ : float
        Seconds spent training in the last call to ``fit``.
    n_weight_updates_ : int
        Optimizer steps taken: ``ceil(n_train / batch_size) * epochs`` for
        one fit, where ``n_train`` excludes the validation data; summed over
        the fits a ``warm_start`` fit or ``partial_fit`` continued.
    n_iter_ : int
        Epochs the network was trained, over every fit it continued.
    diverged_ : bool
        Whether training diverged (a loss NaN, infinite or above
        ``mnist_mlp.training.DIVERGENCE_THRESHOLD``). Predicting with such a
        network warns (:class:`DivergedModelWarning`), tracked or not.
    training_loop_ : {"compiled", "xla", "keras"}
        The loop the last fit ran in.
    training_loop_reason_ : str or None
        Why the last fit ran where it did (None when compiled): in the XLA
        loop, asked for or a GPU that JAX sees; in ``keras.Model.fit``, what
        the compiled loop cannot do, or the measured GPU crossover.
    n_threads_ : int or None
        Threads the compiled loop trained with (None when ``keras.Model.fit`` trained).
    run_id_ : str
        The MLflow run this fit logged to (only when tracked).
    tracking_uri_ : str
        The tracking URI of that run (only when tracked).

    See Also
    --------
    mnist_mlp.make_pipeline : flatten -> scale -> MLPClassifier for images.
    sklearn.neural_network.MLPClassifier : the NumPy implementation whose
        parameter names this class mirrors.

    Examples
    --------
    >>> import numpy as np
    >>> from mnist_mlp import MLPClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(60, 4).astype("float32")
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> clf = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape, clf.n_iter_, clf.n_weight_updates_
    ((3,), 2, 2)
    """

    _parameter_constraints = {
        "hidden_layer_sizes": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "activation": [str, callable],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "learning_rate": [StrOptions(set(SCHEDULES))],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "penalty": [StrOptions({"l1", "l2"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "input_dropout": [Interval(Real, 0, 1, closed="left")],
        "max_norm": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "validation_split": [Interval(Real, 0, 1, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "training_loop": [StrOptions({"auto", "xla", "keras"})],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1}), None],
        "tracking": ["boolean"],
        "log_models": [StrOptions({"auto"}), "boolean"],
    }

    # scikeras reads these; they are fixed by what this network is, not tunable.
    model = None
    build_fn = None
    loss = "categorical_crossentropy"
    metrics = ("accuracy",)
    validation_batch_size = None
    run_eagerly = False

    def __init__(
        self, *,
        # the network
        hidden_layer_sizes=(128, 256), activation="relu", kernel_initializer="glorot_uniform",
        # the optimizer and its learning rate's schedule
        optimizer="adam", learning_rate_init=0.001, learning_rate="constant", power_t=0.5,
        # regularization
        penalty=None, alpha=1e-4, dropout=0.0, input_dropout=0.0, max_norm=None,
        early_stopping=False, n_iter_no_change=10, tol=1e-4,
        # the training loop
        batch_size=256, epochs=100, validation_split=0.2, shuffle=False, random_state=None, verbose=0,
        callbacks=None, warm_start=False, class_weight=None, training_loop="auto", n_jobs=None,
        # tracking
        tracking=True, log_models="auto",
        **kwargs,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.kernel_initializer = kernel_initializer
        self.penalty = penalty
        self.alpha = alpha
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.max_norm = max_norm
        self.batch_size = batch_size
        self.epochs = epochs
        self.validation_split = validation_split
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.class_weight = class_weight
        self.training_loop = training_loop
        self.n_jobs = n_jobs
        self.tracking = tracking
        self.log_models = log_models
        vars(self).update(kwargs)

    # -- scikit-learn protocol -------------------------------------------------

    __repr__ = BaseEstimator.__repr__

    def _get_param_names(self):
        """Constructor parameters plus any routed ``prefix__name`` parameters."""
        own = [
            name
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if name != "self" and p.kind != p.VAR_KEYWORD
        ]
        routed = [k for k in vars(self) if "__" in k and not k.startswith("_") and not k.endswith("_")]
        return sorted(own + routed)

    def __sklearn_tags__(self):
        # scikeras 0.13 lists BaseEstimator before ClassifierMixin in its MRO
        # and only declares the pre-1.6 ``_more_tags``, so scikit-learn >= 1.6
        # sees no estimator type: is_classifier() is False and cv=k is not
        # stratified. Declare the classifier tags ourselves.
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags(multi_class=True, multi_label=False)
        tags.target_tags.required = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        tags.input_tags.two_d_array = True
        tags.input_tags.allow_nan = False
        return tags

    def __getstate__(self):
        """The estimator as plain data (see :mod:`mnist_mlp.persistence`): no Keras object in it."""
        # A copy: on Python >= 3.11 scikit-learn's __getstate__ returns the instance's own __dict__.
        state = dict(super().__getstate__())
        # The array a fit in progress handed scikeras (logging the model mid-fit pickles
        # the estimator): working state, and the training data, never part of a model.
        state.pop("_checked_X", None)
        if "model_" in state:
            from mnist_mlp import persistence

            return persistence.plain_state(state, state["model_"])
        # Pickled unfitted, as scikit-learn's own searches send clones to worker
        # processes: the worker's fit becomes a child of the run active here.
        state.update(carried(self))
        return state

    def __setstate__(self, state):
        """Load plain data saved by ``__getstate__``: the Keras model is built again from its arrays."""
        from mnist_mlp import persistence

        state = dict(state)
        arrays = state.pop(persistence.NETWORK_KEY, None)
        super().__setstate__(state)
        if arrays is not None:
            persistence.restore_network(self, arrays)

    # -- validation ------------------------------------------------------------

    def _routed(self, prefix):
        return route_params(self.get_params(deep=False), destination=prefix, pass_filter=set())

    def _make_optimizer(self):
        """A fresh optimizer for one fit, with ``learning_rate_init`` and routed settings."""
        return network.optimizer(self.optimizer, self.learning_rate_init, self._routed("optimizer"))

    def network_spec(self):
        """The network these parameters build, as the fit will build it.

        Returns
        -------
        dict
            ``hidden_layer_sizes`` (list of int), ``activation`` (the Keras
            name, scikit-learn's aliases resolved) and ``optimizer`` (a fresh
            Keras optimizer with ``learning_rate_init`` and the routed
            ``optimizer__`` settings).

        Raises
        ------
        ValueError
            Naming the parameter that is invalid.
        """
        return {"hidden_layer_sizes": network.hidden_layer_sizes(self.hidden_layer_sizes),
                "activation": network.activation(self.activation), "optimizer": self._make_optimizer()}

    def validate_hyperparameters(self):
        """Check every parameter, before any data is touched or a model built.

        ``fit`` calls it first; a tracked pipeline calls it before it opens its
        run, so that bad parameters leave no run behind.

        Raises
        ------
        ValueError
            Naming the parameter that is invalid.
        """
        self._validate_params()
        if self.early_stopping and not self.validation_split:
            raise ValueError("early_stopping=True needs validation data: set validation_split above 0")
        unknown = [
            k for k in vars(self)
            if "__" in k and not k.startswith("_") and k.split("__", 1)[0] not in _ROUTING_PREFIXES
        ]
        if unknown:
            raise ValueError(f"Unknown parameters for MLPClassifier: {sorted(unknown)}")
        self.network_spec()
        with undisturbed():  # making one draws its seed: not from a stream a fit in another thread has seeded
            network.initializer(self.kernel_initializer)

    def _check_data(self, X, y=None, reset=False):
        """scikit-learn's checks of ``X`` (and ``y``): a 2-D float32 array of finite
        numbers, ``n_features_in_`` and, from a DataFrame with string column names,
        ``feature_names_in_``, recorded (``reset``) or compared with the fitted ones."""
        # Keras computes in float32: convert once here so a model fitted on
        # one float dtype predicts on another.
        if y is None:
            X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)
        else:
            X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=True)
        if X.ndim > 2:
            raise ValueError(
                f"MLPClassifier expects 2D X (n_samples, n_features); got shape "
                f"{X.shape}. Flatten images first: mnist_mlp.make_pipeline() or "
                "mnist_mlp.ImageFlattener."
            )
        return X, y

    def _validate_data(self, X=None, y=None, reset=False, y_numeric=False):
        # scikeras's own validation, which its fit, partial_fit, predict and score
        # call. ``fit`` checked its (X, y) before any run existed and hands scikeras
        # the checked array (``_checked_X``): checking it again would find no column
        # names and forget (or warn about) the DataFrame's. That scikeras passes fit's
        # X on unchanged is guarded by tests/test_estimator.py's feature-name tests.
        if X is not None and X is not self.__dict__.get("_checked_X"):
            X = self._check_data(X, reset=reset)[0]
            if y is None:  # predicting: X was just checked for NaN/inf, don't scan it again
                with config_context(assume_finite=True):
                    return super()._validate_data(X, y, reset=reset, y_numeric=y_numeric)
        return super()._validate_data(X, y, reset=reset, y_numeric=y_numeric)

    @property
    def target_encoder(self):
        """Label encoder: class labels <-> one-hot rows for the softmax output."""
        categories = "auto" if self.classes_ is None else [self.classes_]
        return _SoftmaxLabelEncoder(loss=self.loss, categories=categories)

    def _validate_sample_weight(self, X, y, sample_weight):
        # scikeras drops zero-weight samples; what is left must still hold 2 classes.
        X, y, sample_weight = super()._validate_sample_weight(X, y, sample_weight)
        if len(np.unique(y)) < 2:
            raise ValueError(
                "MLPClassifier needs at least 2 classes with non-zero sample_weight; got 1 class"
            )
        return X, y, sample_weight

    # -- model -----------------------------------------------------------------

    def _get_compile_kwargs(self):
        kwargs = self._routed("compile")  # compile__jit_compile=True and the like
        kwargs.update(
            optimizer=self._make_optimizer(),
            loss=self.loss,
            metrics=list(self.metrics),
            run_eagerly=self.run_eagerly,
        )
        return kwargs

    def _keras_build_fn(self, compile_kwargs):
        return network.build(self.get_params(deep=False), self.n_features_in_, self.n_classes_, compile_kwargs)

    def dense_weights(self):
        """The fitted network's Dense kernels and biases, input side first.

        Returns
        -------
        (list of ndarray, list of ndarray)
            What ``coefs_`` and ``intercepts_`` hold after a fit.
        """
        dense = [layer for layer in self.model_.layers if isinstance(layer, keras.layers.Dense)]
        coefs = [np.array(layer.kernel.numpy()) for layer in dense]
        intercepts = [np.array(layer.bias.numpy()) for layer in dense]
        return coefs, intercepts

    # -- fitting ---------------------------------------------------------------

    def fit(self, X, y, sample_weight=None, **kwargs):
        """Build the network for ``(X, y)`` and train it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, e.g. flattened, scaled images.
        y : array-like of shape (n_samples,)
            Class labels (ints or strings). At least two classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights in the loss.
        **kwargs
            Passed to ``keras.Model.fit`` (prefer ``fit__`` parameters).

        Returns
        -------
        self : MLPClassifier
            The fitted estimator.

        Raises
        ------
        ValueError
            For an invalid parameter, ``X`` that is not a 2-D array of finite
            numbers, ``X`` and ``y`` of different lengths, or ``y`` that is not a
            single column of at least two classes: raised before any training or
            MLflow run.
        """
        return self._fit_call(X, y, sample_weight, kwargs, partial=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None, **kwargs):
        """Train one more epoch on ``(X, y)``, continuing the fitted network.

        The first call builds the network (as ``fit`` does, for one epoch);
        each later call trains the same network one epoch further, its
        weights, optimizer state, ``history_``, ``n_iter_`` and
        ``n_weight_updates_`` carried on. Tracked, each call is a run that
        continues the previous call's (``docs/interop.md``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data, needed on the first call when
            ``y`` of that call does not hold them all.
        sample_weight : array-like of shape (n_samples,), default=None
        **kwargs
            Passed to ``keras.Model.fit`` (not ``epochs``).

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit_call(X, y, sample_weight, kwargs, partial=True, classes=classes)

    def _fit_call(self, X, y, sample_weight, kwargs, *, partial, classes=None):
        """``fit`` or ``partial_fit``: validate, train (tracked or not), with MLflow's autologging off."""
        self.validate_hyperparameters()
        if self.penalty is None and self.alpha != inspect.signature(MLPClassifier).parameters["alpha"].default:
            warnings.warn(f"alpha={self.alpha!r} has no effect with penalty=None: set penalty='l2' or 'l1' "
                          "for it to apply", UserWarning, stacklevel=3)
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        if target_type not in ("binary", "multiclass"):
            raise ValueError(
                f"MLPClassifier needs a single column of class labels; y is {target_type!r}"
            )
        continuing = "model_" in self.__dict__ and (partial or self.warm_start)
        given = X  # as the user gave it: a DataFrame's column names go into the logged model's signature
        # Bad X, or X and y of different lengths, fail here, before any MLflow run
        # exists; a continued fit compares them with the data it continues from.
        X, y = self._check_data(X, y, reset=not continuing)
        if not continuing and len(np.unique(y if classes is None else classes)) < 2:
            raise ValueError("MLPClassifier needs at least 2 classes in y; got 1 class")
        # scikeras's KerasClassifier.fit resets classes_ and sets it again only
        # when it builds a new model: a warm-started fit would end with classes_
        # None (scorers and Pipeline.classes_ then fail). Keep them.
        kept = self.__dict__.get("classes_") if continuing else None
        # Where the network's training continues: numbered on from its last epoch
        # (scikeras's fit starts a warm-started network's epochs, and history_, at 0).
        continued = (self.current_epoch, getattr(self, "run_id_", None)) if continuing else None
        if continuing and not partial:
            kwargs.setdefault("initial_epoch", self.current_epoch)

        def train():
            if partial:
                super(MLPClassifier, self).partial_fit(X, y, classes=classes, sample_weight=sample_weight, **kwargs)
            else:
                super(MLPClassifier, self).fit(X, y, sample_weight=sample_weight, **kwargs)

        # MLflow's autologging stays out, tracked or not: it would log scikeras's label-encoder
        # pipeline as a run, and a keras.Model.fit fallback would start TensorFlow's
        # autologging (which crashes without TensorBoard).
        self._checked_X = X  # see _validate_data: scikeras is handed the array checked above
        try:
            with autolog_suspended(), decide(self) as records:
                if records:
                    self._tracked_fit(X, y, given, train, continued, epochs=1 if partial else None,
                                      sample_weight=sample_weight)
                else:
                    train()
        finally:
            del self._checked_X
        if kept is not None and self.classes_ is None:
            self.classes_ = kept
        return self

    def _tracked_fit(self, X, y, given, train, continued, epochs, sample_weight=None):
        from mnist_mlp import tracking

        def fit(callbacks):
            self._tracking_callbacks = callbacks
            try:
                train()
            finally:
                del self._tracking_callbacks

        run = tracking.track_fit(self, X, fit, given, y=y, continued=continued, epochs=epochs,
                                 sample_weight=sample_weight)
        self.run_id_, self.tracking_uri_ = run.run_id, run.tracking_uri
        return self

    def predict_proba(self, X):
        """Class probabilities, shape ``(n_samples, n_classes)``, columns as ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        # The softmax output is already one column per class; scikeras's own
        # version squeezes a single sample's row to 1D.
        return np.asarray(self._predict_raw(X=X)).reshape(-1, self.n_classes_)

    def _build_keras_model(self):
        with seeded():  # scikeras seeds the global generators around the build
            return super()._build_keras_model()

    def _fit_keras_model(self, X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs):
        with seeded():  # and around the fit; the compiled loop lets go once it has its seed
            self._fit_seeded(X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs)

    def _fit_seeded(self, X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs):
        self.initial_coefs_, self.initial_intercepts_ = self.dense_weights()
        user_callbacks = self._fit_callbacks
        # The epoch rules first (their learning rate is in the logs the others see), then tracking:
        # an epoch that finished is logged even if a user callback then raises.
        rules = self._epoch_rules(len(X), epochs)
        self._fit_callbacks = rules + getattr(self, "_tracking_callbacks", []) + user_callbacks
        start = time.perf_counter()
        try:
            # scikeras calls model.fit (seeded, with the routed fit__ arguments):
            # the call goes through mnist_mlp.training.train instead.
            with _shadowed(self.model_, "fit", self._train):
                super()._fit_keras_model(
                    X, y, sample_weight=sample_weight, warm_start=warm_start,
                    epochs=epochs, initial_epoch=initial_epoch, **kwargs,
                )
        finally:
            self._fit_callbacks = user_callbacks
        self.fit_time_ = time.perf_counter() - start
        self.history_ = {key: [float(v) for v in values] for key, values in self.history_.items()}
        self.coefs_, self.intercepts_ = self.dense_weights()
        self.n_weight_updates_ = int(self.model_.optimizer.iterations.numpy())
        self.n_iter_ = len(self.history_.get("loss", []))
        self.diverged_ = any(diverged(loss) for loss in self.history_.get("loss", []))
        # scikit-learn's MLP's names for the curves and the best figure.
        self.loss_curve_ = list(self.history_.get("loss", []))
        self.validation_scores_ = list(self.history_["val_accuracy"]) if self.early_stopping else None
        self.best_validation_score_ = rules[0].best_score if self.early_stopping else None
        self.best_loss_ = None if self.early_stopping else min(self.loss_curve_, default=None)

    def _epoch_rules(self, n_samples, epochs):
        """The fit's :class:`~mnist_mlp.training.schedules.EpochRules`, as a callback list (empty when off)."""
        if self.learning_rate == "constant" and not self.early_stopping:
            return []
        n_train = int(n_samples * (1.0 - self.validation_split))  # Keras's split, floor-rounded
        initial = float(np.asarray(self._make_optimizer().learning_rate))  # optimizer__learning_rate included
        return [epoch_rules(self.learning_rate, initial, epochs, n_train, power_t=self.power_t,
                            early_stopping=self.early_stopping, n_iter_no_change=self.n_iter_no_change, tol=self.tol)]

    def _train(self, keras_fit):
        """``model.fit`` for scikeras: :func:`mnist_mlp.training.train`, recording which loop ran."""

        def fit(x, y, **fit_args):
            result = train(self.model_, x, y, keras_fit=keras_fit, training_loop=self.training_loop,
                           n_jobs=self.n_jobs, **fit_args)
            self.training_loop_, self.training_loop_reason_ = result.loop, result.reason
            self.n_threads_ = result.threads
            return result.history

        return fit

    def _predict_raw(self, X, **kwargs):
        if self.initialized_:
            if getattr(self, "diverged_", False):
                warnings.warn(
                    "this MLPClassifier diverged in training (its loss went NaN, infinite or above "
                    f"{DIVERGENCE_THRESHOLD:g}): its predictions are not to be trusted",
                    DivergedModelWarning, stacklevel=3,
                )
            # scikeras calls model_.predict: route it, once and for good, through the
            # compiled forward pass. Never swapped back and forth per call, so that
            # threads predicting at once (a web service) always find it.
            if "predict" not in vars(self.model_):
                original = type(self.model_).predict.__get__(self.model_)
                object.__setattr__(self.model_, "predict", self._predict(original))
        return super()._predict_raw(X, **kwargs)

    def _predict(self, keras_predict):
        """``model.predict`` for scikeras: the compiled forward pass where it applies."""
        from mnist_mlp import training

        def predict(x, **predict_args):
            proba = training.predict_proba(self.model_, x, predict_args.get("callbacks") or [],
                                           self.training_loop, n_jobs=self.n_jobs)
            return keras_predict(x, **predict_args) if proba is None else proba

        return predict


@contextlib.contextmanager
def _shadowed(model, method, wrap):
    """Replace ``model.<method>`` on this instance by ``wrap(original)`` for a block."""
    original = getattr(type(model), method).__get__(model)
    object.__setattr__(model, method, wrap(original))
    try:
        yield
    finally:
        object.__delattr__(model, method)
