"""training_loop="auto" with a GPU: Keras on it only where a measured crossover says it is faster."""

from __future__ import annotations

import json
import logging

import pytest

from mnist_mlp import MLPClassifier
from mnist_mlp.training import devices

STUDY_NETWORK = [784, 128, 256, 10]
TABLE = {
    "device": "NVIDIA H200",
    "source": "test table",
    # (parameters, batch size, compiled s/epoch, Keras-on-GPU s/epoch)
    "points": [
        (136_074, 32, 1.0, 9.0),      # the study's network at batch 32: the CPU loop wins
        (136_074, 1024, 0.30, 0.20),  # ... at batch 1024: the GPU wins
        (2_000_000, 256, 3.0, 0.5),   # a large network at batch 256: the GPU wins
    ],
}


def test_n_parameters_counts_weights_and_biases():
    assert devices.n_parameters(STUDY_NETWORK) == 784 * 128 + 128 + 128 * 256 + 256 + 256 * 10 + 10 == 136_074


@pytest.mark.parametrize("dims, batch_size, gpu", [
    (STUDY_NETWORK, 1024, True),       # a measured win
    (STUDY_NETWORK, 4096, True),       # a larger batch than a win: still a win
    (STUDY_NETWORK, 256, False),       # between a loss (32) and a win (1024): not measured, so the CPU
    (STUDY_NETWORK, 1, False),
    ([784, 2048, 1024, 10], 256, True),  # a larger network than the large win
    ([784, 1024, 1024, 10], 256, False),  # 1.86 M parameters: smaller than any win at batch <= 256
])
def test_the_gpu_trains_where_a_smaller_or_equal_measured_point_was_faster_on_it(dims, batch_size, gpu):
    choice = devices.gpu_choice(dims, batch_size, gpus=["NVIDIA H200"], table=TABLE)
    assert (choice is not None) == gpu
    if gpu:
        assert choice.startswith("a GPU (NVIDIA H200) is visible") and f"batch size {batch_size}" in choice


def test_no_gpu_another_gpu_or_no_table_keep_the_compiled_loop(monkeypatch):
    assert devices.gpu_choice(STUDY_NETWORK, 4096, gpus=[], table=TABLE) is None
    assert devices.gpu_choice(STUDY_NETWORK, 4096, gpus=["Tesla T4"], table=TABLE) is None  # measured elsewhere
    monkeypatch.delenv(devices.CROSSOVER_ENV, raising=False)
    monkeypatch.setattr(devices, "_PACKAGED", devices._PACKAGED.with_name("no_such_table.json"))

    def no_query():
        raise AssertionError("without a table, TensorFlow's devices are not even listed")

    monkeypatch.setattr(devices, "visible_gpus", no_query)
    assert devices.crossover_table() is None
    assert devices.gpu_choice(STUDY_NETWORK, 4096) is None


def test_a_broken_table_is_logged_and_the_compiled_loop_trains(tmp_path, monkeypatch, caplog):
    broken = tmp_path / "crossover.json"
    broken.write_text('{"device": "NVIDIA H200", "points": [{"parameters": 1}]}')
    monkeypatch.setenv(devices.CROSSOVER_ENV, str(broken))
    with caplog.at_level(logging.WARNING, logger=devices.__name__):
        assert devices.gpu_choice(STUDY_NETWORK, 4096, gpus=["NVIDIA H200"]) is None
    assert "unreadable" in caplog.text


def test_auto_trains_with_keras_on_a_simulated_gpu_and_says_why(tmp_path, monkeypatch, flat_digits):
    X, y, _, _ = flat_digits
    table = tmp_path / "crossover.json"
    table.write_text(json.dumps({"device": "NVIDIA H200", "command": "test", "points": [
        {"parameters": 1_000, "batch_size": 64, "compiled_s": 1.0, "keras_gpu_s": 0.5}]}))
    monkeypatch.setenv(devices.CROSSOVER_ENV, str(table))
    monkeypatch.setattr(devices, "visible_gpus", lambda: ["NVIDIA H200"])
    params = dict(hidden_layer_sizes=(16,), epochs=1, random_state=0, tracking=False)
    on_gpu = MLPClassifier(batch_size=128, **params).fit(X[:300], y[:300])
    assert on_gpu.training_loop_ == "keras"
    assert on_gpu.training_loop_reason_.startswith("a GPU (NVIDIA H200) is visible")
    assert str(table) in on_gpu.training_loop_reason_
    small_batch = MLPClassifier(batch_size=32, **params).fit(X[:300], y[:300])  # below the measured win
    assert (small_batch.training_loop_, small_batch.training_loop_reason_) == ("compiled", None)
    monkeypatch.setattr(devices, "visible_gpus", lambda: [])
    no_gpu = MLPClassifier(batch_size=128, **params).fit(X[:300], y[:300])
    assert (no_gpu.training_loop_, no_gpu.training_loop_reason_) == ("compiled", None)
