"""2.4.2 L2 cannot rescue a bad start. SGD (learning rate 0.01), normal(mean 10)
initialisation and an L2 penalty of 0.1, 0.01 or 0.001 on the hidden layers:
the penalty on weights near 10 is enormous and the loss diverges."""

from mnist_mlp import make_pipeline
from ._common import NORMAL_MEAN_10, study_grid_search

TITLE = "L2 with SGD and normal(mean 10) initialisation"

PUBLISHED = [
    {"params": {"classifier__alpha": 0.1}, "accuracy": 11.34, "loss": 2.3},
    {"params": {"classifier__alpha": 0.01}, "accuracy": 11.34, "loss": 1.17e9},
    {"params": {"classifier__alpha": 0.001}, "accuracy": 11.35, "loss": 1.02e11},
]


def make_search(*, epochs=100, seeds=(0,)):
    pipeline = make_pipeline(
        optimizer="sgd", learning_rate_init=0.01, kernel_initializer=NORMAL_MEAN_10,
        penalty="l2", epochs=epochs,
    )
    return study_grid_search(pipeline, {"classifier__alpha": [0.1, 0.01, 0.001]}, seeds)
