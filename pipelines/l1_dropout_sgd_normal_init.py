"""2.5.2 L1 and dropout after a bad start. SGD (learning rate 0.01),
normal(mean 10) initialisation, L1 penalty 0.01 on the hidden layers and
dropout 0.3: the loss explodes, accuracy stays at chance."""

from mnist_mlp import make_pipeline
from ._common import NORMAL_MEAN_10, study_grid_search

TITLE = "L1 and dropout with SGD and normal(mean 10) initialisation"

PUBLISHED = [
    {"params": {}, "accuracy": 11.34, "loss": 1.02e8},
]


def make_search(*, epochs=100, seeds=(0,)):
    pipeline = make_pipeline(
        optimizer="sgd", learning_rate_init=0.01, kernel_initializer=NORMAL_MEAN_10,
        penalty="l1", alpha=0.01, dropout=0.3, epochs=epochs,
    )
    return study_grid_search(pipeline, {}, seeds)
