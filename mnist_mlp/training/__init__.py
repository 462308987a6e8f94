"""Training: the compiled loop, the XLA loop, and the choice between them and ``keras.Model.fit``.

The contract other folders use is :func:`train` (one entry: it trains a
compiled Keras model and says which loop ran and why), :func:`predict_proba`
(the compiled forward pass, or None where it does not apply) and
:func:`seeded` (the section in which scikeras seeds the global generators).

Modules: ``kernels`` (the Numba-compiled epoch, forward pass and update
rules), ``xla`` (the same epoch as one XLA program, JAX and NumPy only),
``codes`` (the codes both share), ``loop`` (an epoch loop with Keras's
contract around either),
``schedules`` (the learning-rate schedule and early stopping, epoch by epoch, for every loop),
``keras_adapter`` (the only code that reads Keras's internals: which models
and optimizers the loop can train, their weights and slots), ``devices``
(Keras on a GPU where a measured crossover says it is faster), ``threads``
(threads and floating-point mode), ``seeding``, ``stopping`` (an epoch
boundary honours a recorded stop request). To add an optimizer: its rule
in ``kernels._update``, its options and slot lists in
``keras_adapter._RULES`` and ``_optimizer_rule``, in ``xla._update``, and its rows in
``tests/test_training_kernels.py``.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["DIVERGENCE_THRESHOLD", "SCHEDULES", "THREADS_ENV", "TrainingResult", "diverged", "epoch_rules",
           "predict_proba", "released", "seeded", "train", "undisturbed"]

from mnist_mlp.training.codes import THREADS_ENV  # noqa: E402, F401  (in __all__; light: no imports)
from mnist_mlp.training.seeding import released, seeded, undisturbed  # noqa: E402  (light: no TensorFlow)


#: The learning-rate schedules :func:`epoch_rules` applies (:mod:`mnist_mlp.training.schedules`).
SCHEDULES = ("constant", "invscaling", "adaptive", "cosine")


def epoch_rules(schedule, learning_rate_init, epochs, n_train, **options):
    """The Keras callback that applies a learning-rate schedule and early stopping in every loop.

    See :class:`mnist_mlp.training.schedules.EpochRules` (imported here: it needs Keras).
    """
    from mnist_mlp.training.schedules import EpochRules

    return EpochRules(schedule, learning_rate_init, epochs, n_train, **options)


#: A categorical cross-entropy over 10 classes stays below about 16 (Keras
#: clips probabilities at 1e-7); a larger loss is the weights or the penalty
#: exploding (the study's mean-10 starts).
DIVERGENCE_THRESHOLD = 1e3


def diverged(loss, threshold=DIVERGENCE_THRESHOLD):
    """Whether a training loss says the fit diverged: NaN, infinite or above ``threshold``.

    >>> diverged(0.3), diverged(float("nan")), diverged(4.2e7)
    (False, True, True)
    """
    loss = float(loss)
    return not math.isfinite(loss) or loss > threshold


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` did.

    Attributes
    ----------
    history : keras.callbacks.History
        As ``keras.Model.fit`` returns it.
    loop : {"compiled", "xla", "keras"}
        Which loop trained.
    reason : str or None
        None when the compiled loop trained. Otherwise why the XLA loop trained
        (asked for, or a GPU that JAX sees) or ``keras.Model.fit`` did (what
        the compiled loop cannot do, or that a GPU is measured faster).
    threads : int or None
        Threads of the compiled loop's matrix products (None: Keras or the XLA loop trained).
    """

    history: object
    loop: str
    reason: str | None
    threads: int | None = None


def train(model, X, y, *, keras_fit, training_loop="auto", n_jobs=None, **fit_args):
    """Train ``model`` in the compiled or XLA loop where they apply, else with ``keras_fit``.

    Call it inside :func:`seeded` (as scikeras's fit is): the compiled loop
    draws its seed from NumPy's global generator there, then lets other
    threads' seeded sections run while it trains.

    Parameters
    ----------
    model : keras.Model
        A compiled model.
    X, y : ndarray
        Inputs and one-hot targets, as ``model.fit`` takes them.
    keras_fit : callable
        ``model.fit`` itself: what trains whenever the compiled loop can't.
    training_loop : {"auto", "xla", "keras"}, default="auto"
        ``"auto"``: the XLA loop where JAX sees a GPU, else the compiled loop
        (or Keras on a GPU where a measured crossover says so); ``"xla"``: the
        XLA loop on JAX's default device (JAX must be installed).
    n_jobs : int, default=None
        Threads of the compiled loop (-1: every core); None: ``MNIST_MLP_THREADS``,
        else the cores other programs leave idle (:mod:`mnist_mlp.training.threads`).
    **fit_args
        ``keras.Model.fit`` arguments (``batch_size``, ``epochs``, ``callbacks``, ...).

    Returns
    -------
    TrainingResult

    Raises
    ------
    ValueError
        ``training_loop="xla"`` without JAX installed.
    """
    from mnist_mlp.training.stopping import StopCheck

    # Every loop: a recorded stop request (Ctrl-C, SIGTERM) ends the fit as the next epoch begins.
    fit_args = {**fit_args, "callbacks": [*(fit_args.get("callbacks") or []), StopCheck()]}
    if training_loop == "keras":
        return TrainingResult(keras_fit(X, y, **fit_args), "keras", "training_loop='keras'")
    from mnist_mlp.training import devices, keras_adapter, loop, threads

    if training_loop == "xla" and not devices.jax_installed():
        raise ValueError("training_loop='xla' needs JAX, which is not installed: pip install 'mnist-mlp[gpu]' "
                         "(JAX for NVIDIA GPUs), or jax[cpu] for its CPU backend")
    reason = keras_adapter.unsupported_reason(model, fit_args.get("callbacks") or [], fit_args)
    engine, why = "compiled", None
    if reason is None:
        gpus = devices.jax_gpus() if training_loop == "auto" else []
        if training_loop == "xla":
            engine, why = "xla", "training_loop='xla'"
        elif gpus:
            engine, why = "xla", (f"JAX sees a GPU ({gpus[0]}): each epoch runs there as one XLA program "
                                  "(training_loop='auto')")
        else:  # the compiled loop could train it: unless it cannot at this batch size, or a GPU is faster here
            network, batch_size = keras_adapter.compiled_network(model), int(fit_args.get("batch_size") or 32)
            reason = keras_adapter.compiled_loop_reason(network, batch_size) \
                or devices.gpu_choice(network.dims, batch_size)
    if reason is not None:
        return TrainingResult(keras_fit(X, y, **fit_args), "keras", reason)
    import numpy as np

    seed = np.random.randint(2**31 - 1)  # from the seeded global generator
    with released():  # from here on, no global generator is used
        n_threads = None
        if engine == "compiled":
            with threads.requested(n_jobs):
                n_threads = threads.n_threads(measure=True)
        history = loop.fit(model, X, y, seed=seed, engine=engine, threads=n_threads, **fit_args)
    return TrainingResult(history, engine, why, n_threads)


def predict_proba(model, X, callbacks=(), training_loop="auto", n_jobs=None):
    """Softmax output of ``model`` by the compiled forward pass, or None where it does not apply.

    (A model the XLA loop trained predicts here too: on the host, its weights
    back in Keras.) It does not apply with ``training_loop="keras"``, to a model the loop
    cannot describe, or with a callback that hooks prediction.
    """
    from mnist_mlp.training import keras_adapter, loop, threads

    network = keras_adapter.compiled_network(model)
    if training_loop == "keras" or isinstance(network, str) \
            or any(keras_adapter.overrides_hooks(cb, keras_adapter.PREDICT_HOOKS) for cb in callbacks):
        return None
    with threads.requested(n_jobs):
        return loop.predict_proba(network, X)
