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

Python code can swallow it too, silently: a library's ``except BaseException``,
or C code that clears errors when it calls back into Python (a dict lookup
whose ``__eq__`` is Python). One hung study worker in 25 trained on after its
stop (a py-spy dump showed it still in its epochs), and was killed after the
grace period. So, in the block, the interrupt that a SIGINT or SIGTERM
handler raised is also kept, and :func:`checkpoint` raises it again: the
training loops call it at each epoch, where stopping is safe. Once the block
is left (the interrupt was caught outside it), nothing is raised again.

:func:`deferred` holds a stop signal back until a block that must not be cut
(TensorFlow's import: cut, it leaves its registries half filled and every
later import fails) is whole, then delivers it.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

__all__ = ["checkpoint", "deferred", "redelivered"]

# Delay before a swallowed interrupt is raised again: out of the callback that swallowed it.
_AGAIN_S = 0.01

# The signals whose handlers' interrupts are kept for checkpoint(): Ctrl-C, and a stop.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# Interrupts a signal handler raised in the innermost redelivered() block; main thread only.
_raised = None


def checkpoint():
    """Raise again the interrupt a stop signal raised in this :func:`redelivered` block, if any.

    Called where stopping is safe (each epoch of the training loops): an
    interrupt that some code swallowed stops the work there instead of never.
    Outside such a block, or in another thread, it does nothing.
    """
    if _raised and threading.current_thread() is threading.main_thread():
        raise _raised[-1].with_traceback(None)


@contextlib.contextmanager
def deferred():
    """In the block, a SIGINT or SIGTERM is recorded, and its handler called once the block is whole.

    Only where the handler in place is Python's (``default_int_handler`` or
    another callable), and in the main thread (where handlers are set);
    elsewhere it does nothing. The handlers are restored as the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived = []
    handlers = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}  # not SIG_DFL, SIG_IGN
    for signum in handlers:
        signal.signal(signum, lambda signum, frame: arrived.append((signum, frame)))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    for signum, frame in arrived:
        handlers[signum](signum, frame)  # Ctrl-C's raises KeyboardInterrupt here, the block whole


def _keeping(handler, raised):
    """``handler``, keeping the interrupt it raises in ``raised`` before raising it."""

    def kept(signum, frame):
        try:
            handler(signum, frame)
        except KeyboardInterrupt as exc:
            raised.append(exc)
            raise

    return kept


@contextlib.contextmanager
def redelivered():
    """In the block, an interrupt swallowed as unraisable is raised again shortly after, and
    the interrupt of a SIGINT or SIGTERM handler again at each :func:`checkpoint`.

    Main thread only (signal handlers are set there); elsewhere it does nothing.
    The handlers in place as the block starts are the ones kept track of.
    """
    global _raised
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

    raised, outer_raised = [], _raised
    handlers = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    handlers = {signum: handler for signum, handler in handlers.items() if callable(handler)}  # not SIG_IGN
    for signum, handler in handlers.items():
        signal.signal(signum, _keeping(handler, raised))
    previous_alarm = signal.signal(signal.SIGALRM, again)
    sys.unraisablehook = hook
    _raised = raised
    try:
        yield
    finally:
        _raised = outer_raised
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGALRM, previous_alarm)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
