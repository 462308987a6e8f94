"""The learning-rate schedules and early stopping (:mod:`mnist_mlp.training.schedules`) as scikit-learn defines them.

The rules are Python that every loop runs through one callback; that each loop
trains at the rate the callback sets, and restores the weights it keeps, is
proven against Keras in ``tests/test_training_kernels.py`` and
``tests/test_training_xla.py`` (``compare_epochs``). ``scripts/mutation_check.py``
breaks the rules here (mutants ``schedule-*``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mnist_mlp import MLPClassifier
from mnist_mlp._tensorflow import keras
from mnist_mlp.training.schedules import EpochRules, Plateau, scheduled_rate


def test_invscaling_is_scikit_learns_per_sample_decay():
    """scikit-learn's SGD: ``learning_rate_init / (t + 1) ** power_t`` with ``t`` the samples seen,
    updated as each epoch ends (so the first epoch runs at the initial rate)."""
    n_train, power_t = 150, 0.25
    got = [scheduled_rate("invscaling", 0.1, k, 5, n_train, power_t) for k in range(4)]
    want = [0.1] + [0.1 / (k * n_train + 1) ** power_t for k in (1, 2, 3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[1] == pytest.approx(0.1 / 151 ** 0.25)


def test_cosine_decays_from_the_initial_rate_towards_zero_after_the_last_epoch():
    got = [scheduled_rate("cosine", 0.2, k, 4, 10) for k in range(4)]
    want = [0.2, 0.1 * (1 + math.cos(math.pi / 4)), 0.1, 0.1 * (1 + math.cos(3 * math.pi / 4))]
    np.testing.assert_allclose(got, want)
    assert scheduled_rate("constant", 0.2, 3, 4, 10) == scheduled_rate("adaptive", 0.2, 3, 4, 10) == 0.2


def _sklearn_count(values, tol, n, higher_is_better):
    """scikit-learn's ``_update_no_improvement_count`` and its ``> n_iter_no_change`` test, written out."""
    best, count, out = (-np.inf if higher_is_better else np.inf), 0, []
    for v in values:
        if higher_is_better:
            count = count + 1 if v < best + tol else 0
            improved, best = v > best, max(best, v)
        else:
            count = count + 1 if v > best - tol else 0
            improved, best = v < best, min(best, v)
        out.append((improved, count > n))
    return out


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_the_plateau_count_is_scikit_learns(higher_is_better):
    values = [0.5, 0.52, 0.5205, 0.5201, 0.53, 0.5301, 0.5302, 0.5303, 0.4, 0.54]
    if not higher_is_better:
        values = [1 - v for v in values]
    plateau = Plateau(tol=1e-3, n_iter_no_change=2, higher_is_better=higher_is_better)
    got = [plateau.update(v) for v in values]
    assert got == _sklearn_count(values, 1e-3, 2, higher_is_better)
    assert any(stalled for _, stalled in got)  # the sequence reaches the stopping point


def _fit(rules, logs, weights=None, epochs=12):
    """Drive ``rules`` through a fit whose epoch ``k`` logs ``logs[k]`` (and, with ``weights``, whose
    model holds ``weights[k]``) without training: what the callback decides, epoch by epoch."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rules.set_model(model)
    rules.on_train_begin()
    rates, ran = [], 0
    for epoch in range(epochs):
        rules.on_epoch_begin(epoch)
        rates.append(float(np.asarray(model.optimizer.learning_rate)))
        if weights is not None:
            model.set_weights(weights[epoch])
        epoch_logs = dict(logs[epoch])
        rules.on_epoch_end(epoch, epoch_logs)
        assert epoch_logs["learning_rate"] == pytest.approx(rates[-1], rel=1e-6)
        ran += 1
        if model.stop_training:
            break
    rules.on_train_end()
    return model, rates, ran


def test_early_stopping_stops_after_more_than_n_iter_no_change_and_restores_the_best_epoch():
    scores = [0.5, 0.7, 0.6, 0.7004, 0.69, 0.8, 0.9, 0.95]  # epoch 3 improves on 0.7 by less than tol
    weights = [[np.full((2, 1), k, np.float32), np.zeros(1, np.float32)] for k in range(len(scores))]
    rules = EpochRules("constant", 0.1, 8, 100, early_stopping=True, n_iter_no_change=2, tol=1e-3)
    model, rates, ran = _fit(rules, [{"loss": 1.0, "val_accuracy": s} for s in scores], weights, epochs=8)
    assert ran == 5  # epochs 2, 3, 4 fail to improve by tol: 3 > 2
    assert rules.stopped_early and rules.best_score == 0.7004
    np.testing.assert_array_equal(model.get_weights()[0], weights[3][0])  # the best score's weights
    assert rates == pytest.approx([0.1] * 5)


def test_adaptive_divides_the_rate_by_5_on_a_training_loss_plateau_and_stops_under_1e_6():
    losses = [1.0, 0.5] + [0.5] * 40
    rules = EpochRules("adaptive", 1e-4, 42, 100, n_iter_no_change=1, tol=1e-3)
    _, rates, ran = _fit(rules, [{"loss": v} for v in losses], epochs=42)
    # epochs 2 and 3 fail to improve: the rate is divided after epoch 3, then every 2 epochs
    assert rates[:4] == pytest.approx([1e-4] * 4)
    assert rates[4:6] == pytest.approx([2e-5] * 2) and rates[6:8] == pytest.approx([4e-6] * 2)
    assert rates[8:10] == pytest.approx([8e-7] * 2)
    assert ran == 10 and rules.stopped_early  # at 8e-7 <= 1e-6 it stops instead of dividing


def test_without_early_stopping_a_constant_rate_trains_every_epoch():
    rules = EpochRules("cosine", 0.1, 6, 100, n_iter_no_change=1, tol=1.0)
    _, rates, ran = _fit(rules, [{"loss": 1.0}] * 6, epochs=6)
    assert ran == 6 and not rules.stopped_early
    assert rates == pytest.approx([scheduled_rate("cosine", 0.1, k, 6, 100) for k in range(6)])


# -- the estimator's parameters and fitted attributes ---------------------------------------

SMALL = dict(hidden_layer_sizes=(16,), epochs=30, batch_size=32, learning_rate_init=0.01, random_state=0,
             tracking=False)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.random((300, 20), dtype=np.float32)
    return X, (X[:, :3].sum(axis=1) * 2).astype(int) % 3


@pytest.mark.parametrize("training_loop", ["auto", "xla", "keras"])
def test_early_stopping_gives_scikit_learns_fitted_attributes(data, training_loop):
    """In every loop (the compiled and XLA ones hand the callback their own arrays' best epoch)."""
    clf = MLPClassifier(**SMALL, early_stopping=True, n_iter_no_change=2, tol=0.05,
                        training_loop=training_loop).fit(*data)
    assert clf.training_loop_ == {"auto": "compiled"}.get(training_loop, training_loop)
    assert clf.n_iter_ < 30 and len(clf.validation_scores_) == len(clf.loss_curve_) == clf.n_iter_
    assert clf.validation_scores_ == clf.history_["val_accuracy"] and clf.loss_curve_ == clf.history_["loss"]
    assert clf.best_validation_score_ == max(clf.validation_scores_) and clf.best_loss_ is None
    X, y = data
    assert clf.score(X[240:], y[240:]) == pytest.approx(clf.best_validation_score_)  # the best epoch's weights


def test_a_schedule_records_each_epochs_rate(data):
    clf = MLPClassifier(**{**SMALL, "epochs": 3}, learning_rate="cosine").fit(*data)
    assert clf.history_["learning_rate"] == pytest.approx([0.01, 0.0075, 0.0025])
    assert clf.best_loss_ == min(clf.loss_curve_) and clf.validation_scores_ is None
    assert "learning_rate" not in MLPClassifier(**{**SMALL, "epochs": 1}).fit(*data).history_


@pytest.mark.parametrize("params, match", [
    ({"learning_rate": "optimal"}, "'learning_rate' parameter"),
    ({"early_stopping": True, "validation_split": 0.0}, "early_stopping=True needs validation data"),
    ({"n_iter_no_change": 0}, "'n_iter_no_change' parameter"),
    ({"tol": -1.0}, "'tol' parameter"),
    ({"power_t": -0.5}, "'power_t' parameter"),
])
def test_bad_schedule_parameters_are_named_before_any_training(data, params, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**SMALL, **params).fit(*data)
