"""3 Tuning. RMSprop with He-normal initialisation and an L2 penalty; search
hidden sizes {64, 128} x {256, 512}, alpha {1e-1, 1e-3, 1e-6} and learning
rate {1e-1, 1e-2, 1e-3} by Hyperband over epochs (the study's keras-tuner
Hyperband, factor 3), once for validation accuracy and once for validation
macro F1. A fresh network with the best parameters is then trained for 50
epochs and evaluated on the test set."""

# The docstring above is the section's description in MLflow and the report: what lies
# beyond the study (DROPOUT_GRID, searched under a time budget) is described where it is defined.

from mnist_mlp import make_pipeline
from mnist_mlp.model_selection import GridSearchCV, HalvingGridSearchCV, HyperbandSearchCV
from mnist_mlp.model_selection import TrainValidationSplit

TITLE = "tuning"

GRID = {
    "classifier__hidden_layer_sizes": [(64, 256), (64, 512), (128, 256), (128, 512)],
    "classifier__alpha": [1e-1, 1e-3, 1e-6],
    "classifier__learning_rate_init": [1e-1, 1e-2, 1e-3],
}

#: A wider space of our own, on request (``make_search(wide=True)``): wider
#: layers, dropout 0.2 (as Keras's classic 512-512 MNIST MLP) and a smaller
#: learning rate. It leaves out what the study's grid showed to lose here
#: (full MNIST, 30 epochs): learning rates 1e-1 and 1e-2 lost to 1e-3, and
#: alpha 1e-1 to 1e-3, at every other setting.
WIDE_GRID = {
    "classifier__hidden_layer_sizes": [(128, 256), (128, 512), (256, 512), (512, 512)],
    "classifier__alpha": [1e-3, 1e-6],
    "classifier__learning_rate_init": [1e-3, 1e-4],
    "classifier__dropout": [0.0, 0.2],
}

#: The Dropout paper's networks (Srivastava et al., JMLR 2014, Table 2: ReLU, dropout 0.5 on
#: the hidden layers and 0.2 on the input, max-norm 3), and their neighbours, for a search
#: under a time budget (``make_search(space="dropout", budget=...)``). Adam rather than the
#: paper's SGD with momentum: both run in the compiled loop, and Adam needs no momentum
#: schedule. Widths stop at 2 x 2048: on a 2-core CPU an epoch of 48,000 rows takes about 4 s
#: at 512-512, 8 s at 1024-1024, 11 s at 3 x 1024 and 20 s at 2048-2048 (dropout, max-norm,
#: batch 256); the paper's 2 x 4096 and 2 x 8192 would leave a 15-minute budget a handful of epochs.
DROPOUT_GRID = {
    "classifier__hidden_layer_sizes": [(512, 512), (1024, 1024), (1024, 1024, 1024), (2048, 2048)],
    "classifier__dropout": [0.2, 0.5],
    "classifier__input_dropout": [0.0, 0.2],
    "classifier__max_norm": [None, 3.0],
    "classifier__learning_rate_init": [1e-3, 3e-4],
    "classifier__learning_rate": ["constant", "cosine"],
    "classifier__alpha": [0.0, 1e-5],
}

#: The search spaces by name: the study's, our wider one, the Dropout paper's.
SPACES = {"study": GRID, "wide": WIDE_GRID, "dropout": DROPOUT_GRID}

#: Under a time budget: Hyperband's last rung (brackets whose first rungs train 1, 3 and 9
#: epochs), and the share of the budget the final network keeps for itself.
BUDGET_MAX_EPOCHS = 9
BUDGET_FINAL_SHARE = 0.5

PUBLISHED = [
    {
        "params": {
            "classifier__hidden_layer_sizes": (128, 256), "classifier__alpha": 1e-6,
            "classifier__learning_rate_init": 1e-3,
        },
        "accuracy": 98.29, "f1_macro": 0.9831, "final_epochs": 50,
    },
]

FINAL_EPOCHS = 50

#: Hyperband's last rung (keras-tuner's ``max_epochs``) and first: the one
#: bracket that starts every grid point at 3 epochs (s = 3 for R = 81): 36 x 3,
#: then 12, 4 and 2 candidates continuing to 9, 27 and 81 epochs, 360 epochs in
#: all, a third of the 36-point grid's 1,080 (see benchmarks/results/tune_hyperband*).
HYPERBAND_MAX_EPOCHS = 81
HYPERBAND_MIN_EPOCHS = 3

METHODS = ("hyperband", "grid", "halving-rows")


def make_search(*, epochs=None, seeds=(0,), scoring="accuracy", method="hyperband", wide=False, brackets=None,
                space=None, budget=None):
    """``scoring``: "accuracy" or "f1_macro"; ``method``: one of :data:`METHODS`.

    ``epochs``: Hyperband's last rung (default 81, with the first at 3 epochs,
    or the bracket nearest that for a smaller budget); the grid's and
    halving-over-rows' epochs per fit (default 30). ``brackets``: Hyperband's
    brackets instead of that one (e.g. ``[4]``: the first rung at 1 epoch).
    ``space``: one of :data:`SPACES` (``wide=True`` is ``"wide"``; default the study's).
    ``budget``: seconds for a Hyperband search over every bracket up to ``epochs``
    (default :data:`BUDGET_MAX_EPOCHS`), iterated with fresh draws until spent.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    space = space or ("wide" if wide else "study")
    if space not in SPACES:
        raise ValueError(f"space must be one of {', '.join(SPACES)}; got {space!r}")
    grid = SPACES[space]
    # The Dropout paper's networks: ReLU and Adam, shuffled each epoch as the paper's SGD was.
    optimizer, shuffle = ("adam", True) if space == "dropout" else ("rmsprop", False)
    pipeline = make_pipeline(
        optimizer=optimizer, kernel_initializer="he_normal", penalty="l2", shuffle=shuffle, epochs=epochs or 30,
        random_state=seeds[0],
    )
    if budget is not None:
        if method != "hyperband":
            raise ValueError(f"a time budget needs method='hyperband'; got {method!r}")
        return HyperbandSearchCV(pipeline, grid, max_resources=epochs or BUDGET_MAX_EPOCHS, factor=3,
                                 brackets=list(brackets) if brackets else None, candidates="hyperband",
                                 random_state=seeds[0], time_budget=budget, cv=TrainValidationSplit(0.2),
                                 scoring=scoring, refit=False)
    if method == "hyperband":
        import math

        max_epochs = epochs or HYPERBAND_MAX_EPOCHS
        # The bracket whose first rung is HYPERBAND_MIN_EPOCHS (or the nearest that exists).
        bracket = max(0, min(round(math.log(max_epochs / HYPERBAND_MIN_EPOCHS, 3)),
                             int(math.floor(math.log(max_epochs, 3) + 1e-9))))
        return HyperbandSearchCV(pipeline, grid, max_resources=max_epochs, factor=3,
                                 brackets=list(brackets) if brackets else [bracket],
                                 cv=TrainValidationSplit(0.2), scoring=scoring, refit=False)
    if method == "grid":
        return GridSearchCV(pipeline, grid, cv=TrainValidationSplit(0.2), scoring=scoring, refit=False)
    # Halving subsamples rows at random: hold the last fifth out in the split itself.
    return HalvingGridSearchCV(
        pipeline, grid, cv=TrainValidationSplit(0.2, estimator_holds_out=False), scoring=scoring,
        factor=3, refit=False, random_state=0,
    )
