"""2.2 RMSprop. The default network trained with RMSprop, learning rate 0.001,
batch size 256, with the moving-average decay rho at 0.01 (nearly no memory
of past gradients) and at 0.99."""

from mnist_mlp import make_pipeline
from ._common import study_grid_search

TITLE = "RMSprop rho"

PUBLISHED = [
    {"params": {"classifier__optimizer__rho": 0.01}, "accuracy": 97.72, "loss": 0.20},
    {"params": {"classifier__optimizer__rho": 0.99}, "accuracy": 98.20, "loss": 0.11},
]


def make_search(*, epochs=100, seeds=(0,)):
    pipeline = make_pipeline(optimizer="rmsprop", learning_rate_init=0.001, epochs=epochs)
    return study_grid_search(pipeline, {"classifier__optimizer__rho": [0.01, 0.99]}, seeds)
