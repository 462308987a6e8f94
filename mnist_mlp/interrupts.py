"""Interrupts that are never lost: a Ctrl-C or stop that Python swallows is delivered again.

Python raises a signal handler's exception (``KeyboardInterrupt`` for Ctrl-C,
the command's own for SIGTERM) in whatever the main thread runs at that
moment. If that is a garbage-collector callback or a finalizer, Python prints
"Exception ignored in ..." and drops the exception: the work goes on as if the
signal never came. That is not rare here: TensorFlow imports JAX wherever JAX
is installed (``tensorflow/lite/python/util.py``), and JAX runs a callback at
every collection. A study section told to stop would train on until it is
killed, its runs left RUNNING.

:func:`redelivered` catches exactly that case through :data:`sys.unraisablehook`:
a swallowed ``KeyboardInterrupt`` (or subclass) is raised again 10 ms later
from a SIGALRM handler, where the code it interrupts can unwind. Any other
unraisable exception goes to the previous hook unchanged.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

__all__ = ["redelivered"]

# Delay before a swallowed interrupt is raised again: out of the callback that swallowed it.
_AGAIN_S = 0.01


@contextlib.contextmanager
def redelivered():
    """In the block, an interrupt swallowed as unraisable is raised again shortly after.

    Main thread only (signal handlers are set there); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    pending = []
    previous_hook = sys.unraisablehook

    def hook(unraisable):
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            pending.append(unraisable.exc_value)
            signal.setitimer(signal.ITIMER_REAL, _AGAIN_S)
            return
        previous_hook(unraisable)

    def again(signum, frame):
        if pending:
            exc = pending.pop()
            pending.clear()
            raise exc.with_traceback(None)

    previous_alarm = signal.signal(signal.SIGALRM, again)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGALRM, previous_alarm)
