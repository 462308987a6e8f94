"""2.4.1 L2 regularisation. RMSprop (learning rate 0.001, rho 0.99) with an L2
penalty on the hidden layers' weights, alpha 0.1, 0.01 and 0.001: the two
strong penalties under-fit (their results swing with the seed, so they are
repeated over seeds), the weak one barely changes the network."""

from mnist_mlp import make_pipeline
from ._common import study_grid_search

TITLE = "L2 with RMSprop"

PUBLISHED = [
    {"params": {"classifier__alpha": 0.1}, "accuracy": 88.37, "loss": 0.56},
    {"params": {"classifier__alpha": 0.01}, "accuracy": 93.45, "loss": 0.30},
    {"params": {"classifier__alpha": 0.001}, "accuracy": 97.40, "loss": 0.13},
]


def make_search(*, epochs=100, seeds=(0, 1, 2)):
    pipeline = make_pipeline(
        optimizer="rmsprop", learning_rate_init=0.001, optimizer__rho=0.99, penalty="l2",
        epochs=epochs,
    )
    return study_grid_search(pipeline, {"classifier__alpha": [0.1, 0.01, 0.001]}, seeds)
