"""2.3 A bad start. SGD (learning rate 0.01) with every layer's weights drawn
from a normal distribution of mean 10: the huge initial activations saturate
the softmax and training never recovers (loss 2.30, accuracy at chance)."""

from mnist_mlp import make_pipeline
from ._common import NORMAL_MEAN_10, study_grid_search

TITLE = "SGD with normal(mean 10) initialisation"

PUBLISHED = [
    {"params": {}, "accuracy": 11.34, "loss": 2.30},
]


def make_search(*, epochs=100, seeds=(0,)):
    pipeline = make_pipeline(
        optimizer="sgd", learning_rate_init=0.01, kernel_initializer=NORMAL_MEAN_10, epochs=epochs
    )
    return study_grid_search(pipeline, {}, seeds)
