"""mnist_mlp.interrupts: an interrupt Python swallows (in a finalizer, a gc callback) is raised again."""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import pytest

from mnist_mlp import interrupts


class _StoppedInAFinalizer:
    """Stands for a signal handler's exception landing in a finalizer or gc callback: Python
    reports it as unraisable and drops it."""

    def __init__(self, exc):
        self.exc = exc

    def __del__(self):
        raise self.exc


def _swallow(exc):
    obj = _StoppedInAFinalizer(exc)
    del obj
    gc.collect()


def test_without_it_python_drops_the_interrupt(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    _swallow(KeyboardInterrupt("stop"))  # nothing raised here: the hazard being guarded
    assert [type(u.exc_value) for u in seen] == [KeyboardInterrupt]


def test_a_swallowed_interrupt_is_raised_again_with_its_type_and_message():
    class Terminated(KeyboardInterrupt):
        pass

    with pytest.raises(Terminated, match="section 2.2 stopped"):
        with interrupts.redelivered():
            _swallow(Terminated("section 2.2 stopped"))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # work going on, as training would
                sum(range(1000))


def test_other_unraisable_exceptions_go_to_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with interrupts.redelivered():
        _swallow(ValueError("not an interrupt"))
        time.sleep(0.1)
    assert [type(u.exc_value) for u in seen] == [ValueError]
    assert sys.unraisablehook == seen.append  # restored


def test_nothing_is_raised_after_the_block():
    with interrupts.redelivered():
        pass
    time.sleep(0.05)  # no timer left armed


def test_a_deferred_interrupt_is_raised_once_the_block_is_whole():
    import signal

    # Python's own Ctrl-C handler, whatever this process inherited (a background job ignores SIGINT).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                signal.raise_signal(signal.SIGINT)
                done.append("after the signal")
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


# Ctrl-C while the first fit imports TensorFlow, then a fit in the same process (a notebook).
# The signal is raised at the first import after TensorFlow registered its RaggedTensorSpec
# (an audit hook runs in the importing thread: the same moment every time).
_INTERRUPT_MID_IMPORT = """
import signal, sys
import numpy as np

def interrupt_mid_import(event, args, sent=[]):
    spec = getattr(sys.modules.get("tensorflow.python.ops.ragged.ragged_tensor"), "RaggedTensorSpec", None)
    if event == "import" and spec is not None and not sent:
        sent.append(signal.raise_signal(signal.SIGINT))

sys.addaudithook(interrupt_mid_import)
"""

_ESTIMATOR = """
try:
    from mnist_mlp import MLPClassifier
except KeyboardInterrupt:
    print("result: interrupted", flush=True)
from mnist_mlp import MLPClassifier
x = np.random.default_rng(0).random((60, 20), dtype=np.float32)
MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(x, np.arange(60) % 3)
print("result: fitted", flush=True)
"""

# The command line run twice in one process: it imports TensorFlow through the same module,
# under its own Ctrl-C handler (interrupts.redelivered's). 130: interrupted; 0: fitted.
_CLI = """
from mnist_mlp.cli import main
for _ in range(2):
    print("result:", main(["fit", "--epochs", "1", "--hidden-layer-sizes", "8"]), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("then, results", [(_ESTIMATOR, ["interrupted", "fitted"]), (_CLI, ["130", "0"])],
                         ids=["estimator", "cli"])
def test_a_ctrl_c_during_tensorflows_import_leaves_the_process_able_to_fit(then, results, monkeypatch, tmp_path):
    """Cut, TensorFlow's import left its registries half filled: every later fit in the process
    failed ("Name tf.RaggedTensorSpec has already been registered"). The interrupt now waits."""
    from tests.helpers import run_child

    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
    done = run_child([sys.executable, "-c", _INTERRUPT_MID_IMPORT + then], timeout=300, cwd=tmp_path)
    assert [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("result: ")] == results, (
        done.stderr[-3000:])
