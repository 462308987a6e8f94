"""mnist_mlp.interrupts: an interrupt Python swallows (in a finalizer, a gc callback) is raised again."""

from __future__ import annotations

import gc
import sys
import time

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
