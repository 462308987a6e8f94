"""Several study sections at once: each in a worker process of its own, longest first.

Why: on a few cores a second fit is worth more than a second thread for the
same fit. On a 2-core machine at batch size 256, one fit ran 1.7x as fast on
two threads as on one (0.28 against 0.47 s an epoch), but two one-thread fits
side by side each kept the one-thread pace: 1.2x the work done. The online fit
of 2.1 (batch size 1) gains less still (42 against 65 us a step). So
``mnist-mlp study all --n-jobs 2`` runs two sections at a time, each fit on
``cores // n_jobs`` threads, instead of one section after another on every core.

Why processes: each section starts from a fresh TensorFlow and Numba state,
and stopping one is a signal. A worker ignores the terminal's Ctrl-C (from
its start): the process that started it decides, and on any interruption or
failure sends SIGTERM to every worker still running, which records a stop
there (:mod:`mnist_mlp.interrupts`): the section stops at its next epoch and
its runs end KILLED. Every run a worker opens is in its command's ledger
(:mod:`mnist_mlp.tracking.ledger`), so the runs of a worker that died or had
to be killed are ended KILLED here, saying why. A worker whose command dies
(``kill -9``) stops itself the same way, and if it cannot, ends its own runs
after the grace period and exits.

Why longest first: a greedy schedule that starts the longest sections first
(LPT) finishes within 4/3 of the best possible time; started last, the
online fit alone would add minutes. How long a section is comes from
:func:`planned_work`, a count of training rows weighted by the cost of an
optimizer step (:data:`STEP_COST_IN_ROWS`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import wait

__all__ = ["STEP_COST_IN_ROWS", "planned_work", "run_side_by_side"]

logger = logging.getLogger(__name__)

#: What one optimizer step costs beside its rows' arithmetic, counted in rows:
#: on the study's network, a batch-1 step takes about 60 us where a row of a
#: batch-256 step takes about 4.7 us (``benchmarks/results/training_speed.json``),
#: so a step costs about 12 rows' worth. Only the order of sections depends on it.
STEP_COST_IN_ROWS = 12

# How long a worker has to end its runs once told to stop, before it is killed.
_STOP_GRACE_S = 60
# How often the starting process looks at its own stop request while it waits for its workers.
_POLL_S = 0.5


def planned_work(search, n_rows, *, final_epochs=0, final_fits=0):
    """Rows a search will train on, each optimizer step counted as :data:`STEP_COST_IN_ROWS` more.

    Parameters
    ----------
    search : a search over :func:`mnist_mlp.make_pipeline`
    n_rows : int
        Training rows the search is given.
    final_epochs, final_fits : int, default=0
        Final networks trained after the search (a tuning section), on every row.

    Returns
    -------
    float
        Comparable between sections; not a time.
    """
    from sklearn.model_selection import ParameterGrid

    from mnist_mlp.model_selection import epochs_per_fit
    from mnist_mlp.study.experiments import count_fits

    candidates = list(ParameterGrid(search.param_grid))
    default_batch = search.estimator.get_params().get("classifier__batch_size", 256)

    def per_epoch(candidate):
        batch = candidate.get("classifier__batch_size", default_batch)
        return n_rows * (1 + STEP_COST_IN_ROWS / min(batch, n_rows))

    mean_per_epoch = sum(per_epoch(c) for c in candidates) / len(candidates)
    if hasattr(search, "planned_epochs"):  # Hyperband: an epochs budget over rungs
        work = search.planned_epochs() * mean_per_epoch
    else:
        fits_per_candidate = count_fits(search) / len(candidates)
        work = sum(per_epoch(c) for c in candidates) * fits_per_candidate * (epochs_per_fit(search) or 1)
    return work + final_fits * final_epochs * n_rows * (1 + STEP_COST_IN_ROWS / default_batch)


def _section_work(name, n_rows, run_kwargs):
    from mnist_mlp.study.experiments import load_experiment

    experiment = load_experiment(name)
    overrides = {k: v for k, v in (("epochs", run_kwargs.get("epochs")), ("seeds", run_kwargs.get("seeds")))
                 if v is not None}
    if experiment.final_epochs and "seeds" in overrides:
        overrides["seeds"] = overrides["seeds"][:1]  # a tuning section searches with one seed
    search = experiment.make_search(**overrides)
    if run_kwargs.get("grid"):
        search.param_grid = run_kwargs["grid"]
    full = run_kwargs.get("epochs") is None and run_kwargs.get("n_train") is None
    return planned_work(search, n_rows, final_epochs=experiment.final_epochs or 0,
                        final_fits=(2 if full else 1) if experiment.final_epochs else 0)


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _stop_when_orphaned():
    """Stop this worker (as the starting process would: SIGTERM) if the process that started it dies.

    A starting process killed outright (``kill -9``, the OOM killer) cannot
    stop its workers; without this they would train on, their runs RUNNING.
    Nor can it end the runs of a worker that does not stop: so if this one
    has not stopped :data:`_STOP_GRACE_S` after, whatever holds its main
    thread, it ends the runs it holds open KILLED from here and exits.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        from mnist_mlp import tracking

        wait([parent.sentinel])  # ready when the starting process has ended, however it ended
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(_STOP_GRACE_S)  # a daemon thread: gone with the worker if it stops in time
        tracking.end_runs_open_here(f"its study command was killed, and its worker process did not "
                                    f"stop within {_STOP_GRACE_S} s")
        os._exit(128 + signal.SIGTERM)  # not sys.exit: the main thread is what does not stop

    threading.Thread(target=watch, name="mnist-mlp stop when orphaned", daemon=True).start()


def _worker(connection, name, data, run_kwargs, threads, launcher, ledger):
    """A worker process: run section ``name``, send back ``("done", result)`` or ``("error", exc, text)``."""
    from mnist_mlp import interrupts  # (the standard library only: no import to wait for)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the starting process decides when to stop
    # One fit per worker at a time: give it its share of the cores (read by the training loop).
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    _stop_when_orphaned()
    try:
        # Until it opens a run, a worker holds nothing: SIGTERM's default, exit at once, is the
        # quickest stop (TensorFlow's import, seconds long, would otherwise finish first).
        from mnist_mlp import tracking
        from mnist_mlp._tensorflow import tf
        from mnist_mlp.study.runner import run_experiment

        with interrupts.handled():  # from here SIGTERM stops the section at its next epoch, runs KILLED
            tracking.register_runs_in(ledger)
            with contextlib.suppress(RuntimeError):  # already initialised: the environment variables stand
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            with tracking.launched_by(launcher):
                result = run_experiment(name, data, **run_kwargs)
        _send(connection, ("done", result))
    except KeyboardInterrupt:
        _send(connection, ("stopped", None))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the starting process
        text = traceback.format_exc()
        try:
            connection.send(("error", exc, text))
        except BrokenPipeError:  # the starting process is gone
            pass
        except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as text
            _send(connection, ("error", RuntimeError(f"{type(exc).__name__}: {exc}"), text))
    finally:
        connection.close()
    # Its runs ended and its answer sent: the interpreter's teardown (seconds, after TensorFlow's
    # import) would only keep a stopped study waiting.
    interrupts.exit_process(0)


def _send(connection, message):
    with contextlib.suppress(BrokenPipeError):  # the starting process is gone: nobody to tell
        connection.send(message)


def run_side_by_side(names, data, *, n_jobs, on_start=None, on_done=None, **run_kwargs):
    """Run study sections ``n_jobs`` at a time, each in a worker process; the longest first.

    Parameters
    ----------
    names : list of str
        Study sections.
    data : mnist_mlp.data.DatasetSplits
    n_jobs : int
        Sections at once; each fit gets ``cores // n_jobs`` threads.
    on_start : callable, default=None
        ``on_start(name)`` as a section starts.
    on_done : callable, default=None
        ``on_done(name, result)`` as a section finishes, in the order they finish.
    **run_kwargs
        For :func:`mnist_mlp.study.run_experiment` (``epochs``, ``n_train``,
        ``seeds``, ``grid``, ``resume``); a progress display does not cross
        processes, so ``progress`` is refused.

    Returns
    -------
    list of dict
        Each section's result, in the order of ``names``.

    Raises
    ------
    Exception
        The first section's failure, as raised in its worker (its traceback
        in a note), once every other worker has stopped and ended its runs KILLED.
    KeyboardInterrupt
        Interrupted here: every worker has stopped first.
    """
    from mnist_mlp import interrupts
    from mnist_mlp.tracking import active_run_in_process, dispatching, tracking_enabled

    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive number of sections at once; got {n_jobs}")
    if "progress" in run_kwargs:
        raise ValueError("progress: a progress display cannot follow fits in other processes")
    n_rows = len(data[0][0]) if not run_kwargs.get("n_train") else min(run_kwargs["n_train"], len(data[0][0]))
    pending = sorted(names, key=lambda name: -_section_work(name, n_rows, run_kwargs))
    threads = max(1, _cores() // min(n_jobs, len(names)))
    launcher, ledger = (active_run_in_process(), dispatching()) if tracking_enabled() else (None, None)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked TensorFlow or Numba threads
    running, results = {}, {}
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                name = pending.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_worker, name=f"mnist-mlp study {name}", daemon=True,
                                          args=(sender, name, data, run_kwargs, threads, launcher, ledger))
                with _terminal_interrupts_held():
                    process.start()
                sender.close()  # the worker holds the only sending end: its exit reads as EOF here
                running[receiver] = (name, process)
                if on_start is not None:
                    on_start(name)
            ready = wait(list(running), timeout=_POLL_S)
            interrupts.check()  # a stop that something in this process swallowed
            for receiver in ready:
                name, process = running.pop(receiver)
                try:
                    message = receiver.recv()
                except EOFError:
                    message = ("died",)
                receiver.close()
                process.join()
                if message[0] == "done":
                    results[name] = message[1]
                    if on_done is not None:
                        on_done(name, message[1])
                    continue
                if ledger is not None:
                    _end_runs_left(f"study section {name}: its worker process ended (exit code "
                                   f"{process.exitcode}) before it could end this run")
                if message[0] == "error":
                    exc = message[1]
                    exc.add_note(f"in study section {name}, in its worker process:\n{message[2]}")
                    raise exc
                raise RuntimeError(f"study section {name}: its worker process "
                                   f"{'stopped' if message[0] == 'stopped' else 'died'} "
                                   f"(exit code {process.exitcode})")
    except BaseException:
        killed = _stop([process for _, process in running.values()])
        if ledger is not None and killed:
            _end_runs_left(f"its study section was stopped, and its worker process did not stop "
                           f"within {_STOP_GRACE_S} s and was killed")
        raise
    return [results[name] for name in names]


@contextlib.contextmanager
def _terminal_interrupts_held():
    """Start a worker with SIGINT blocked, as it stays: the terminal's Ctrl-C reaches the whole
    process group, and a worker still importing would die of it with a traceback; the starting
    process stops its workers itself. Blocked, not ignored, here: a Ctrl-C that arrives while a
    worker starts is held, and delivered as the block ends, never lost (ignored, it was: one stop
    in 25 left the study running). The signal mask is per thread and crosses ``exec``."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop(processes):
    """Tell every worker to stop (its runs end KILLED) and wait for it; kill one that hangs.

    Returns the workers that had to be killed.
    """
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S  # one grace period for all, not one each
    killed = []
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
            killed.append(process)
    return killed


def _end_runs_left(why):
    """End KILLED the runs that workers gone by now left RUNNING (killed, died, or stopped at the
    very moment a run was opened); say so where there were any. Never raises: the error that
    stopped the study is the one to see."""
    from mnist_mlp import tracking

    try:
        left = tracking.end_runs_of_stopped_workers(wait_s=1.0, reason=why)
    except Exception as exc:  # noqa: BLE001 - a store gone too: nothing more can be done here
        logger.warning("runs left RUNNING could not be ended (%s): %s", exc, why)
        return
    if left:
        logger.warning("%s; its %d run(s) left RUNNING were ended KILLED", why, len(left))
