"""What every study experiment shares: its split, scoring and search class."""

from __future__ import annotations

from mnist_mlp._tensorflow import keras
from mnist_mlp.model_selection import GridSearchCV
from mnist_mlp.model_selection import TrainValidationSplit

#: The study's bad start: weights drawn from a normal distribution with mean 10.
NORMAL_MEAN_10 = keras.initializers.RandomNormal(mean=10.0, stddev=0.05)


def study_grid_search(pipeline, grid, seeds):
    """A grid search scored as the study scores: accuracy on the last 20 %."""
    return GridSearchCV(
        pipeline,
        {**grid, "classifier__random_state": list(seeds)},
        cv=TrainValidationSplit(0.2),
        scoring="accuracy",
        refit=False,
    )
