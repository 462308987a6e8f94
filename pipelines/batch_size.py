"""2.1 Batch size. Adam (learning rate 0.001) trains the default network with
online updates (batch size 1: 48,000 weight updates per epoch), mini-batches
of 256 (188 per epoch) and the full batch of 48,000 (1 per epoch), for 100
epochs each."""

from mnist_mlp import make_pipeline
from ._common import study_grid_search

TITLE = "batch size"

PUBLISHED = [
    {"params": {"classifier__batch_size": 1}, "accuracy": 96.10, "fit_time_s": 8913, "weight_updates": 4_800_000},
    {"params": {"classifier__batch_size": 256}, "accuracy": 98.17, "fit_time_s": 108, "weight_updates": 18_800},
    {"params": {"classifier__batch_size": 48_000}, "accuracy": 95.48, "fit_time_s": 55, "weight_updates": 100},
]


def make_search(*, epochs=100, seeds=(0,), batch_sizes=(1, 256, 48_000)):
    """All three batch sizes. Batch size 1 takes about 4 minutes on 2 cores in
    the compiled training loop (``benchmarks/results/online_100_epochs.json``),
    about 5.5 on one (a section beside another, ``study all --n-jobs 2``), and
    over 2 hours in ``keras.Model.fit``."""
    pipeline = make_pipeline(optimizer="adam", learning_rate_init=0.001, epochs=epochs)
    return study_grid_search(pipeline, {"classifier__batch_size": list(batch_sizes)}, seeds)
