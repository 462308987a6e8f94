"""2.5.1 L1 and dropout. RMSprop (learning rate 0.001, rho 0.99) with an L1
penalty of 0.01 on the hidden layers and dropout 0.3 after each: too much
regularisation, the network under-fits (repeated over seeds: it swings)."""

from mnist_mlp import make_pipeline
from ._common import study_grid_search

TITLE = "L1 and dropout with RMSprop"

PUBLISHED = [
    {"params": {}, "accuracy": 82.26, "loss": 1.49},
]


def make_search(*, epochs=100, seeds=(0, 1, 2)):
    pipeline = make_pipeline(
        optimizer="rmsprop", learning_rate_init=0.001, optimizer__rho=0.99, penalty="l1",
        alpha=0.01, dropout=0.3, epochs=epochs,
    )
    return study_grid_search(pipeline, {}, seeds)
