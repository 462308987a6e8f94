"""The study's figures."""

from __future__ import annotations

import io

import numpy as np

from mnist_mlp.plots import plot_confusion_matrix, plot_learning_curves, plot_weight_violins


def test_learning_curves_accuracy_above_loss_below(tmp_path):
    history = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.6, 0.4],
               "accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.55, 0.75, 0.85]}
    fig = plot_learning_curves(history)
    top, bottom = fig.axes
    assert top.get_ylabel() == "accuracy" and bottom.get_ylabel() == "loss"
    assert [line.get_label() for line in top.lines] == ["training", "validation"]
    np.testing.assert_allclose(bottom.lines[1].get_ydata(), history["val_loss"])
    fig.savefig(tmp_path / "lc.png")
    assert (tmp_path / "lc.png").read_bytes()[:4] == b"\x89PNG"


def test_learning_curves_of_a_diverging_run_use_a_log_scale():
    fig = plot_learning_curves({"loss": [2.3, 1e5, 1e9, float("nan")], "accuracy": [0.1] * 4})
    assert fig.axes[1].get_yscale() == "log"


def test_weight_violins_one_panel_per_layer_before_and_after():
    rng = np.random.default_rng(0)
    before = [rng.normal(size=(784, 128)), rng.normal(size=(128, 10))]
    after = [w + 1 for w in before]
    fig = plot_weight_violins(before, after)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["hidden 1\nbefore", "hidden 1\nafter", "output\nbefore", "output\nafter"]
    assert len(fig.axes[0].collections[0].get_paths()) == 1  # one body per violin
    assert sum(1 for c in fig.axes[0].collections if c.get_label() != "_nolegend_") >= 4


def test_confusion_matrix_is_annotated():
    matrix = np.array([[0.9, 0.1], [0.2, 0.8]])
    fig = plot_confusion_matrix(matrix, ["cat", "dog"])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"0.90", "0.10", "0.20", "0.80"} <= texts
    assert fig.axes[0].get_xlabel() == "predicted"


def test_violin_density_is_matplotlibs_kde_and_survives_a_constant_layer():
    from matplotlib import mlab

    from mnist_mlp.plots import _scott_density

    sample = np.random.default_rng(0).normal(size=30)  # too few to bin: exact
    coords = np.linspace(-4, 4, 50)
    np.testing.assert_allclose(_scott_density(sample, coords),
                               mlab.GaussianKDE(sample, "scott").evaluate(coords), atol=1e-12)
    # Larger samples are binned first: within 1e-3 of the peak, heavy tails too.
    for large in (np.random.default_rng(1).normal(size=2000), np.random.default_rng(1).standard_t(3, size=2000)):
        coords = np.linspace(large.min(), large.max(), 100)
        exact = mlab.GaussianKDE(large, "scott").evaluate(coords)
        np.testing.assert_allclose(_scott_density(large, coords), exact, atol=1e-3 * exact.max())
    spike = _scott_density(np.zeros(30), np.zeros(5))  # matplotlib's own KDE raises here
    assert spike.tolist() == [1.0] * 5
    fig = plot_weight_violins([np.zeros((4, 3))], [np.full((4, 3), np.nan)])
    fig.savefig(io.BytesIO(), format="png")
