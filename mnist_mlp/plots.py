"""The study's figures: learning curves, weight violins, confusion matrix.

Every function returns a matplotlib ``Figure`` on its own Agg canvas, made
without ``pyplot``: no global figure registry to leak into, no GUI backend,
safe in worker processes and threads. Save one with ``fig.savefig(path)``.
"""

from __future__ import annotations

import threading

import numpy as np
from matplotlib import cbook
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_accuracy_distributions", "plot_confusion_matrix", "plot_learning_curves", "plot_weight_violins"]

# Violins need a density estimate, not every weight: a fixed-size sample per
# layer keeps a 100k-weight layer as cheap to draw as a 1k one.
_VIOLIN_SAMPLE = 2000
# Points at which each violin's density is evaluated (matplotlib's default).
_VIOLIN_POINTS = 100
_TICK_BINS = 5
# Width of the bins a violin sample is put in before its density estimate, in
# bandwidths (see _scott_density).
_KDE_BIN_WIDTH = 0.05


def _figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_learning_curves(history, *, title=None, reuse=False):
    """Accuracy (top) and loss (bottom) per epoch, training vs validation.

    Parameters
    ----------
    history : dict of str to list of float
        ``MLPClassifier.history_``: ``loss``, ``accuracy`` and optionally
        ``val_loss``, ``val_accuracy``.
    title : str, default=None
    reuse : bool, default=False
        Draw into this thread's figure of the previous ``reuse=True`` call
        instead of a new one: the same picture, rendered a third faster
        (its axes, ticks and texts already exist). That figure changes at
        the next such call, so save it first; tracking does, for every fit.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if reuse and history.get("loss"):
        reused = getattr(_REUSED, "learning_curves", None)
        if reused is None:
            reused = _REUSED.learning_curves = _LearningCurves()
        return reused.draw(history, title)
    fig = _figure(7, 6)
    acc_ax, loss_ax = fig.subplots(2, 1, sharex=True)
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key in ((acc_ax, "accuracy"), (loss_ax, "loss")):
        if key in history:
            ax.plot(epochs, history[key], label="training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        _style_panel(ax, key)
    # One legend: both panels share the colours. "best" searches placements: slow.
    acc_ax.legend(loc="center right")
    if _log_scaled(history):
        loss_ax.set_yscale("log")
    _finish_learning_curves(fig, loss_ax, title)
    return fig


def _style_panel(ax, key):
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    # Every tick is five artists to draw: a few per axis keep the figure cheap.
    ax.locator_params(nbins=_TICK_BINS)


def _log_scaled(history):
    """Whether the loss panel is logarithmic: diverging runs span many orders of magnitude."""
    finite = np.asarray(history.get("loss", []), dtype=float)
    finite = finite[np.isfinite(finite)]
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 1e3)


def _finish_learning_curves(fig, loss_ax, title):
    loss_ax.set_xlabel("epoch")
    fig.suptitle(title or "Learning curves")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.09, hspace=0.12)


# Figures reused by ``reuse=True``, one set per thread (matplotlib's figures are not thread-safe).
_REUSED = threading.local()


class _LearningCurves:
    """One learning-curve figure, redrawn for each history: its lines' data, limits, scale,
    legend and title are set anew, everything else is kept."""

    def __init__(self):
        self.fig = _figure(7, 6)
        self.axes = dict(zip(("accuracy", "loss"), self.fig.subplots(2, 1, sharex=True)))
        self.lines = {}
        for key, ax in self.axes.items():
            self.lines[key] = ax.plot([], [], label="training")[0]
            self.lines[f"val_{key}"] = ax.plot([], [], label="validation")[0]
            _style_panel(ax, key)
        _finish_learning_curves(self.fig, self.axes["loss"], None)
        self.log_scaled = False

    def draw(self, history, title):
        epochs = np.arange(1, len(history["loss"]) + 1)
        for name, line in self.lines.items():
            line.set_data(epochs, history.get(name, []))
            line.set_visible(name in history)
        log_scaled = _log_scaled(history)
        if log_scaled != self.log_scaled:
            loss_ax = self.axes["loss"]
            loss_ax.set_yscale("log" if log_scaled else "linear")
            if not log_scaled:  # a new scale brings its default locator: few ticks again
                loss_ax.locator_params(axis="y", nbins=_TICK_BINS)
            self.log_scaled = log_scaled
        for ax in self.axes.values():
            ax.relim(visible_only=True)
            ax.autoscale_view()
        shown = [line for name, line in self.lines.items() if name.endswith("accuracy") and name in history]
        self.axes["accuracy"].legend(handles=shown, loc="center right")
        self.fig.suptitle(title or "Learning curves")
        return self.fig


def _sample(weights, rng):
    flat = np.asarray(weights, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    if flat.size > _VIOLIN_SAMPLE:
        flat = rng.choice(flat, _VIOLIN_SAMPLE, replace=False)
    return flat if flat.size else np.zeros(1)


def _scott_density(sample, coords):
    """Gaussian KDE of ``sample`` at ``coords``, Scott's bandwidth (as matplotlib's).

    A sample is first binned into bins a twentieth of the bandwidth wide when
    that leaves fewer than half as many points: each point moves at most a
    fortieth of the bandwidth, which changes the density by under 1e-3
    of its peak and makes it several times cheaper, for every tracked fit.
    """
    bandwidth = np.std(sample, ddof=1) * sample.size ** (-1 / 5) if sample.size > 1 else 0.0
    if bandwidth == 0:  # a constant layer (e.g. all zero): a spike, not a KDE error
        return (coords == sample[0]).astype(float)
    points, weights = sample, None
    bins = int(np.ceil((sample.max() - sample.min()) / (bandwidth * _KDE_BIN_WIDTH)))
    if bins < sample.size // 2:  # binning pays
        weights, edges = np.histogram(sample, bins=max(bins, 1))
        points = (edges[:-1] + edges[1:]) / 2
    z = (coords[:, None] - points[None, :]) / bandwidth
    kernel = np.exp(-0.5 * z * z)
    total = kernel.sum(axis=1) if weights is None else kernel @ weights
    return total / (sample.size * bandwidth * np.sqrt(2 * np.pi))


def plot_weight_violins(initial_coefs, coefs, *, layer_names=None, title=None):
    """Violin plots of each layer's weights before and after training.

    One axes, a pair of violins per layer (grey: before, blue: after): a
    third of the drawing cost of a panel per layer, which matters because
    every tracked fit draws it.

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
    data = [_sample(w, rng) for pair in zip(initial_coefs, coefs) for w in pair]
    fig = _figure(max(6.0, 2.2 * n), 4.2)
    ax = fig.subplots()
    # matplotlib's own KDE loops over the points in Python; this one is a
    # single array expression with the same Scott bandwidth: the same picture.
    stats = cbook.violin_stats(data, _scott_density, points=_VIOLIN_POINTS)
    parts = ax.violin(stats, showmedians=True)
    for i, body in enumerate(parts["bodies"]):
        body.set_facecolor("tab:grey" if i % 2 == 0 else "tab:blue")
    ax.set_xticks(
        np.arange(1, 2 * n + 1),
        [f"{name}\n{when}" for name in names for when in ("before", "after")],
    )
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title or "Weights before and after training")
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.14)
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


def plot_accuracy_distributions(groups, *, published=None, title=None):
    """Test accuracy per seed of several groups, side by side (one dot per seed, the mean as a bar).

    Parameters
    ----------
    groups : dict of str to list of float
        Label -> accuracies in %.
    published : float, default=None
        The study's figure, drawn as a dashed line.
    title : str, default=None

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure(7, 4)
    ax = fig.subplots()
    for i, (label, values) in enumerate(groups.items()):
        values = np.asarray(values, dtype=float)
        ax.scatter(np.full(values.size, i), values, alpha=0.7, zorder=3)
        if values.size:
            ax.hlines(values.mean(), i - 0.25, i + 0.25, colors="black", zorder=4)
    if published is not None:
        ax.axhline(published, linestyle="--", color="tab:red", label=f"the study: {published:.2f} %")
        ax.legend(loc="lower right")
    ax.set_xticks(range(len(groups)), [f"{label}\n({len(v)} seeds)" for label, v in groups.items()])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title or "Test accuracy per seed")
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.16)
    return fig
