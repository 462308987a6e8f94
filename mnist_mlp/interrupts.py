"""Stop requests: a Ctrl-C or SIGTERM is recorded, and the work stops at its next safe point.

This module is the one place that answers a stop. Within :func:`handled` (the
command line, a study worker), SIGINT and SIGTERM record a :class:`Stopped`
request and raise it in the main thread, as Python's own Ctrl-C handler
does, so that a wait or a store call unwinds at once. The request stays
recorded, so code that swallows the exception (a library's ``except
BaseException``, a garbage-collector callback where Python reports it as
"Exception ignored" and drops it) cannot lose it: the training loops call
:func:`check` as each fit and each epoch begins (Keras looks at
``stop_training`` at the same points), and a study's dispatcher as it waits.
Every run is ended KILLED by the code that opened it, as the exception
unwinds through its ``with``.

A signal that was ignored as the block began (a background job's SIGINT)
stays ignored. Once the block is left, the request is forgotten: a later fit
in the same process (a notebook, a test) trains to its end.

:func:`deferred` holds a stop back until a block that must not be cut
(TensorFlow's import: cut, it leaves its registries half filled and every
later import fails) is whole, then delivers it. Where the process ends with
the stop (``handled(ends_process=True)``: the ``mnist-mlp`` command), nothing
will use what such a block leaves half done: ``deferred(unless_ending=True)``
then holds nothing back, and a Ctrl-C during the import stops at once.

:func:`exit_process` ends a process that is done (the command, a study
worker) as Python's own exit does, less the interpreter's teardown, which
after TensorFlow's import takes seconds that a stop (or ``mnist-mlp
predict``) would otherwise wait on.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading

__all__ = ["Stopped", "check", "deferred", "exit_process", "handled", "requested"]

# Ctrl-C, and a stop (``kill``, a CI timeout, the process that started a worker).
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The stop recorded in the innermost handled() block; None: none asked for.
_request = None

# Whether the innermost handled() block is the process's last: a stop ends the process.
_ends_process = False


class Stopped(KeyboardInterrupt):
    """A stop asked for by a signal; unwinds as Ctrl-C does (runs end KILLED).

    Parameters
    ----------
    signum : int
        The signal that asked for it.
    """

    def __init__(self, signum):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")

    def __reduce__(self):
        return type(self), (self.signum,)


def requested():
    """The :class:`Stopped` recorded in this :func:`handled` block, or None."""
    return _request


def check():
    """Raise the recorded stop, if any: called where stopping is safe (each fit and epoch).

    In any thread: a fit in a thread of a search stops too.
    """
    if _request is not None:
        raise Stopped(_request.signum)


def _record(signum, frame):
    global _request
    if _request is None:
        _request = Stopped(signum)
    raise Stopped(signum)  # in the main thread, where Python runs signal handlers: it unwinds now


@contextlib.contextmanager
def handled(ends_process=False):
    """In the block, SIGINT and SIGTERM record a stop and raise :class:`Stopped`.

    Main thread only (signal handlers are set there); elsewhere it does
    nothing. A signal ignored as the block begins stays ignored; the
    handlers in place are restored, and the request forgotten, as it ends.

    Parameters
    ----------
    ends_process : bool, default=False
        The process ends once a stop has unwound the block (a command, not
        :func:`mnist_mlp.cli.main` called in a notebook): ``deferred(unless_ending=True)``
        blocks are then cut at once.
    """
    global _request, _ends_process
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
    outer, outer_ends = _request, _ends_process
    _ends_process = ends_process
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _record)
    try:
        yield
    finally:
        _request, _ends_process = outer, outer_ends
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred(*, unless_ending=False):
    """In the block, a SIGINT or SIGTERM is recorded, and its handler called once the block is whole.

    Only where the handler in place is Python's (``default_int_handler`` or
    another callable), and in the main thread (where handlers are set);
    elsewhere it does nothing. The handlers are restored as the block ends.

    Parameters
    ----------
    unless_ending : bool, default=False
        Hold nothing back inside a ``handled(ends_process=True)`` block: for
        a block that only the rest of the process needs whole (an import),
        not one whose half-done state a stop would leave behind (a run
        created but not yet noted open).
    """
    if threading.current_thread() is not threading.main_thread() or (unless_ending and _ends_process):
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


def exit_process(status):
    """End this process with exit ``status``: what Python's exit does, then ``os._exit``.

    Why: after TensorFlow's import the interpreter's own teardown (clearing
    every module, then TensorFlow's C++ destructors) took 1.45 s on a loaded
    2-core machine, and 0.59 s after MLflow's and scikit-learn's alone,
    against 0.06 and 0.02 s this way (``benchmarks/teardown.py``,
    ``benchmarks/results/teardown.json``); a stopped study waited on it in
    each worker and again in the command, ``mnist-mlp predict`` once. What the exit must still do is
    done first, in Python's order: other non-daemon threads are waited for,
    the ``atexit`` handlers run (MLflow's, logging's flush, temporary
    folders, multiprocessing's), and the standard streams are flushed.

    Only for code that owns the process (:func:`mnist_mlp.cli.console_main`,
    a study's worker processes), in its main thread, never for a library
    call. Python's own steps are CPython's ``threading._shutdown`` (the
    ``concurrent.futures`` pools told to finish their work, then every
    non-daemon thread joined: joined alone, an idle pool's worker waits for
    ever) and ``atexit._run_exitfuncs``; where either is gone, or off the
    main thread, it falls back to ``sys.exit``.

    Parameters
    ----------
    status : int
    """
    shutdown_threads = getattr(threading, "_shutdown", None)  # what Python's own exit calls, in this order
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown_threads is None or run_exit_handlers is None or \
            threading.current_thread() is not threading.main_thread():
        sys.exit(status)
    shutdown_threads()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing left to write to
            stream.flush()
    os._exit(status)
