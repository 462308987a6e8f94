"""DivergenceMonitor and EpochMetricsLogger."""

from __future__ import annotations

import math

from mnist_mlp.tracking.callbacks import DivergenceMonitor, EpochMetricsLogger


class FakeRun:
    def __init__(self):
        self.calls = []

    def log_metric_series(self, series, tags=None):
        self.calls.append(list(series))


def test_divergence_monitor_flags_nan_inf_and_huge_losses():
    for losses, expected, first in (
        ([2.3, 1.2, 0.8], False, None),
        ([2.3, math.nan], True, 1),
        ([2.3, math.inf, 1.0], True, 1),
        ([1.17e9, 2.0], True, 0),
    ):
        monitor = DivergenceMonitor()
        for epoch, loss in enumerate(losses):
            monitor.on_epoch_end(epoch, {"loss": loss})
        assert (monitor.diverged, monitor.first_epoch) == (expected, first)


def test_epoch_logger_buffers_and_hands_over_the_rest():
    run = FakeRun()
    logger = EpochMetricsLogger(run, flush_interval=3600)
    for epoch in range(3):
        logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    assert run.calls == []  # a short fit writes nothing while it trains
    pending = logger.take_pending()
    assert [step for step, _ in pending] == [0, 1, 2] and logger.take_pending() == []


def test_epoch_logger_flushes_on_its_interval():
    run = FakeRun()
    logger = EpochMetricsLogger(run, flush_interval=0)
    logger.on_epoch_end(0, {"loss": 2.0})
    logger.on_epoch_end(1, {"loss": 1.0})
    assert run.calls == [[(0, {"loss": 2.0})], [(1, {"loss": 1.0})]]
