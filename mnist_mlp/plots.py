"""The study's figures: learning curves, weight violins, confusion matrix.

Every function returns a matplotlib ``Figure`` on its own Agg canvas, made
without ``pyplot``: no global figure registry to leak into, no GUI backend,
safe in worker processes and threads. Save one with ``fig.savefig(path)``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_confusion_matrix", "plot_learning_curves", "plot_weight_violins"]

# Violins need a density estimate, not every weight: a fixed-size sample per
# layer keeps a 100k-weight layer as cheap to draw as a 1k one.
_VIOLIN_SAMPLE = 4000


def _figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_learning_curves(history, *, title=None):
    """Accuracy (top) and loss (bottom) per epoch, training vs validation.

    Parameters
    ----------
    history : dict of str to list of float
        ``MLPClassifier.history_``: ``loss``, ``accuracy`` and optionally
        ``val_loss``, ``val_accuracy``.
    title : str, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(7, 6)
    acc_ax, loss_ax = fig.subplots(2, 1, sharex=True)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key, label in ((acc_ax, "accuracy", "accuracy"), (loss_ax, "loss", "loss")):
        if key in history:
            ax.plot(epochs, history[key], label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    finite = np.asarray(history.get("loss", []), dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 1e3:
        loss_ax.set_yscale("log")  # diverging runs span many orders of magnitude
    loss_ax.set_xlabel("epoch")
    fig.suptitle(title or "Learning curves")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.09, hspace=0.12)
    return fig


def _sample(weights, rng):
    flat = np.asarray(weights, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size > _VIOLIN_SAMPLE:
        flat = rng.choice(flat, _VIOLIN_SAMPLE, replace=False)
    return flat if flat.size else np.zeros(1)


def plot_weight_violins(initial_coefs, coefs, *, layer_names=None, title=None):
    """Violin plots of each layer's weights before and after training.

    Parameters
    ----------
    initial_coefs, coefs : list of ndarray
        Kernels per Dense layer before and after training
        (``MLPClassifier.initial_coefs_`` and ``coefs_``).
    layer_names : list of str, default=None
        Defaults to ``hidden 1``, ..., ``output``.
    title : str, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = len(coefs)
    names = layer_names or [f"hidden {i}" for i in range(1, n)] + ["output"]
    rng = np.random.default_rng(0)
    fig = _figure(3.2 * n, 4)
    axes = fig.subplots(1, n, squeeze=False)
    for ax, name, before, after in zip(axes[0], names, initial_coefs, coefs):
        parts = ax.violinplot([_sample(before, rng), _sample(after, rng)], showmedians=True)
        for body, colour in zip(parts["bodies"], ("tab:grey", "tab:blue")):
            body.set_facecolor(colour)
        ax.set_xticks([1, 2], ["before", "after"])
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].set_ylabel("weight")
    fig.suptitle(title or "Weights before and after training")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.85, bottom=0.08, wspace=0.35)
    return fig


def plot_confusion_matrix(matrix, labels, *, title=None):
    """Annotated heatmap of a row-normalised confusion matrix.

    Parameters
    ----------
    matrix : ndarray of shape (n_classes, n_classes)
        Rows are true labels, columns predictions, each row summing to 1.
    labels : sequence
        Class labels in matrix order.
    title : str, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns  # only here: it is slow to import

    fig = _figure(7, 6)
    ax = fig.subplots()
    sns.heatmap(
        np.asarray(matrix), annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1,
        xticklabels=[str(c) for c in labels], yticklabels=[str(c) for c in labels],
        ax=ax, cbar_kws={"label": "fraction of true class"},
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (row-normalised)")
    fig.subplots_adjust(left=0.1, right=0.98, top=0.93, bottom=0.1)
    return fig
