"""Codes the training loops share: hidden activations, optimizer rules, weight penalties, the threads variable.

Plain integers in a module with no imports, so that the Numba kernels
(:mod:`mnist_mlp.training.kernels`), the XLA program
(:mod:`mnist_mlp.training.xla`) and the Keras adapter name the same things the
same way without importing each other's libraries.
"""

ACT_LINEAR, ACT_RELU, ACT_TANH, ACT_SIGMOID = 0, 1, 2, 3
OPT_SGD, OPT_ADAM, OPT_RMSPROP = 0, 1, 2
PENALTY_NONE, PENALTY_L1, PENALTY_L2 = 0, 1, 2

#: Environment variable: threads of the compiled loop, a whole number, -1 (every core) or
#: ``auto``, the default (:mod:`mnist_mlp.training.threads`). What ``mnist-mlp --threads`` sets.
THREADS_ENV = "MNIST_MLP_THREADS"
