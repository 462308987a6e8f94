"""mnist_mlp.interrupts: a stop request is recorded, so code that swallows its exception cannot lose it."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from pathlib import Path

import pytest

from mnist_mlp import interrupts


class _StoppedInAFinalizer:
    """Stands for a signal landing in a finalizer or gc callback: Python reports what its handler
    raises as unraisable and drops it."""

    def __init__(self, signum):
        self.signum = signum

    def __del__(self):
        signal.raise_signal(self.signum)


def _swallow(signum):
    obj = _StoppedInAFinalizer(signum)
    del obj
    gc.collect()


@pytest.fixture
def python_handlers():
    """Python's own Ctrl-C handler and the default SIGTERM, whatever this process inherited
    (a background job ignores SIGINT); restored after."""
    inherited = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        for signum, handler in inherited.items():
            signal.signal(signum, handler)


@pytest.mark.slow
def test_without_it_python_drops_the_interrupt(monkeypatch, python_handlers):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    _swallow(signal.SIGINT)  # nothing raised here: the hazard being guarded
    assert [type(u.exc_value) for u in seen] == [KeyboardInterrupt]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_swallowed_in_a_finalizer_stays_requested_until_the_block_ends(monkeypatch, python_handlers, signum):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with interrupts.handled():
        _swallow(signum)
        assert [type(u.exc_value) for u in seen] == [interrupts.Stopped]  # swallowed...
        with pytest.raises(interrupts.Stopped, match=f"stopped by {signal.Signals(signum).name}") as caught:
            interrupts.check()  # ...and still there at the next safe point
        assert caught.value.signum == signum
        with pytest.raises(interrupts.Stopped):
            interrupts.check()  # every safe point, until the block is left
    assert interrupts.requested() is None
    interrupts.check()  # forgotten: a later fit trains on
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_stop_is_raised_at_once_in_the_main_thread_and_checked_in_any_other(python_handlers):
    with interrupts.handled():
        with pytest.raises(interrupts.Stopped):
            signal.raise_signal(signal.SIGTERM)
        raised = []

        def fit_in_a_thread():
            try:
                interrupts.check()
            except interrupts.Stopped as exc:
                raised.append(exc)

        thread = threading.Thread(target=fit_in_a_thread)
        thread.start()
        thread.join()
        assert [e.signum for e in raised] == [signal.SIGTERM]


def test_a_signal_ignored_as_the_block_begins_stays_ignored(python_handlers):
    """A background job's SIGINT: ignored; SIGTERM still stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.handled():
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pytest.fail("a SIGINT ignored as the block began stopped it")
        assert interrupts.requested() is None
        with pytest.raises(interrupts.Stopped, match="SIGTERM"):
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_a_stop_pickles_with_its_signal():
    import pickle

    assert pickle.loads(pickle.dumps(interrupts.Stopped(signal.SIGTERM))).signum == signal.SIGTERM


_EXIT_SCRIPT = """
import atexit, concurrent.futures, pathlib, sys, threading, time
from mnist_mlp import interrupts
out = pathlib.Path(sys.argv[1])
def late_writer():
    time.sleep(0.5)
    (out / "thread").write_text("joined")
threading.Thread(target=late_writer).start()  # not a daemon: the exit waits for it, as Python's does
# A pool (MLflow's artifact downloads use one) with work queued and an idle worker: Python's exit
# lets the work finish and tells the idle worker to end; joined alone, that worker waits for ever.
pool = concurrent.futures.ThreadPoolExecutor(2)
pool.submit(lambda: (time.sleep(0.3), (out / "pool").write_text("finished")))
pool.submit(lambda: None).result()
atexit.register(lambda: (out / "atexit").write_text("ran" + (out / "thread").read_text()))
sys.stdout.write("unflushed, to a pipe")  # no newline: in the buffer until something flushes it
print("to stderr", end="", file=sys.stderr)
interrupts.exit_process(7)
(out / "after").write_text("never")
"""


def test_exit_process_exits_as_python_does_less_its_teardown(tmp_path):
    """The exit status, the non-daemon threads waited for first, then the atexit handlers, and
    both streams flushed; nothing after it runs."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as most users run
    done = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1], env=env)
    assert (done.returncode, done.stdout, done.stderr) == (7, "unflushed, to a pipe", "to stderr")
    assert (tmp_path / "atexit").read_text() == "ranjoined" and (tmp_path / "pool").read_text() == "finished"
    assert not (tmp_path / "after").exists()


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
# under its own Ctrl-C handler (interrupts.handled's). 130: interrupted; 0: fitted.
_CLI = """
from mnist_mlp.cli import main
for _ in range(2):
    print("result:", main(["fit", "--epochs", "1", "--hidden-layer-sizes", "8"]), flush=True)
"""

# The command's own process (console_main) ends with the stop: the import is cut at once
# (the study command imports TensorFlow to plan its sections; waiting took up to 35 s on a busy machine).
_COMMAND = """
from mnist_mlp.cli import main
print("result:", main(["fit", "--epochs", "1", "--hidden-layer-sizes", "8"], ends_process=True), flush=True)
print("result: tensorflow", "imported" if "tensorflow" in sys.modules else "cut", flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("then, results", [(_ESTIMATOR, ["interrupted", "fitted"]), (_CLI, ["130", "0"]),
                                           (_COMMAND, ["130", "tensorflow cut"])],
                         ids=["estimator", "cli", "command"])
def test_a_ctrl_c_during_tensorflows_import_leaves_the_process_able_to_fit(then, results, monkeypatch, tmp_path):
    """Cut, TensorFlow's import left its registries half filled: every later fit in the process
    failed ("Name tf.RaggedTensorSpec has already been registered"). The interrupt now waits."""
    from tests.helpers import run_child

    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
    done = run_child([sys.executable, "-c", _INTERRUPT_MID_IMPORT + then], timeout=300, cwd=tmp_path)
    assert [line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("result: ")] == results, (
        done.stderr[-3000:])
