"""Runs whose process stops before ending them: ended KILLED, never left RUNNING.

A fit's run ends where it was opened (:class:`~mnist_mlp.tracking.runs.FitRun`
as a context manager). Two kinds of stop leave no chance to do so:

- **A worker process killed.** A search with ``n_jobs=2`` (ours or
  scikit-learn's) fits in joblib's loky workers; on Ctrl-C, joblib kills them
  with SIGKILL, mid-fit. So a worker that opens a run for a fit sent from
  another process on this machine registers it in the *dispatching* process's
  ledger folder: an entry file it holds an exclusive ``flock`` on for as long
  as the run is open. However the worker dies, the kernel drops its lock; the
  dispatching process ends KILLED each run whose entry is no longer locked
  and which is still RUNNING (:func:`reap`): our searches as they return or
  are interrupted, and, for scikit-learn's own searches (nothing of ours is on
  their stack), a watcher thread within a quarter of a second, and at exit.
- **A study worker killed** (or one that died). Each runs whole study
  sections, opening runs of its own: :func:`register_runs_in` registers every run the
  worker process opens in its study command's ledger, and the command ends
  them (:func:`end_runs_of_stopped_workers`) once the worker is gone. A
  command killed outright cannot: its workers stop themselves, and a worker
  that cannot ends the runs it holds open (:func:`end_runs_open_here`).
- **A process exiting while a thread of it fits** (joblib's threading
  backend, interrupted: its pool's daemon threads die with the process). Runs
  still open in this process at exit are ended KILLED by an ``atexit`` hook.

At exit, workers may still hold runs: a local Dask cluster is shut down,
its workers killed, only after this process's ``atexit`` hook has run. Their
entries go to a small detached process (``python -m
mnist_mlp.tracking.ledger FOLDER``) that waits up to two minutes for each to
be let go, ends the runs left RUNNING, and removes the folder. Workers on
other machines keep running their fits when the client is interrupted, and
end their runs themselves. Without ``fcntl`` (Windows) the ledger is off and
only the ``atexit`` hook applies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, no ledger
    fcntl = None

__all__ = ["Entry", "closed", "dispatching", "end_runs_of_stopped_workers", "end_runs_open_here", "opened", "reap",
           "register", "register_runs_in", "watch"]

logger = logging.getLogger(__name__)

#: Why a run ended here is recorded in its ``error`` tag.
WORKER_GONE = "its worker process stopped before ending it (killed or interrupted)"
PROCESS_EXITED = "the process exited while the fit was running"

# How often the watcher thread looks for runs of dead workers.
_WATCH_S = 0.25
# How long a process at exit waits for workers that still hold runs (being killed, or ending them),
# before it hands their entries to a detached reaper, and how long that one waits.
_EXIT_WAIT_S = 2.0
_REAPER_WAIT_S = 120.0

_lock = threading.Lock()
_folder = None  # this process's ledger folder, made on first use
_watcher = None
_open_here = set()  # runs opened and not yet ended in this process
_served = None  # the ledger of the process this whole process works for (a study worker's command)
_served_entries = {}  # run -> its Entry in _served


def _ensure_exit_hook():
    # Registered once, on first use: atexit runs hooks last-registered-first,
    # so this one runs before MLflow's (imported earlier) closes its stores.
    if not getattr(_ensure_exit_hook, "done", False):
        atexit.register(_at_exit)
        _ensure_exit_hook.done = True


def dispatching():
    """``(host, folder)`` of this process's ledger, for a fit context sent to workers; None without ``fcntl``."""
    global _folder
    if fcntl is None:
        return None
    with _lock:
        if _folder is None:
            root = Path(tempfile.gettempdir()) / "mnist-mlp-ledger"
            root.mkdir(exist_ok=True)
            _folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
            _ensure_exit_hook()
    return socket.gethostname(), str(_folder)


class Entry:
    """A run registered in another process's ledger; its lock held until :meth:`close`."""

    def __init__(self, fd, path):
        self.fd, self.path = fd, path

    def close(self):
        # Unlink, then unlock: a reaper that gets the lock finds the entry gone.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def register(ledger, tracking_uri, run_id):
    """Register ``run_id`` in ``ledger`` (from :func:`dispatching`) when it is another process's on this host.

    Returns the :class:`Entry` to close when the run ends, or None (the same
    process, another host, no ledger, or a ledger that is gone: nothing to do).
    """
    if ledger is None or fcntl is None or ledger[0] != socket.gethostname():
        return None
    folder = Path(ledger[1])
    if _folder is not None and folder == _folder:
        return None
    temporary = folder / f".{run_id}.{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    except OSError:  # the dispatching process is gone and took its folder
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked before it is visible: never seen unlocked while alive
        os.write(fd, json.dumps({"tracking_uri": tracking_uri, "run_id": run_id, "pid": os.getpid()}).encode())
        path = folder / f"{run_id}.json"
        os.replace(temporary, path)
    except OSError as exc:
        logger.debug("run %s not registered in %s: %r", run_id, folder, exc)
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return None
    return Entry(fd, path)


def reap(reason=WORKER_GONE, wait_s=0.0):
    """End KILLED the runs of this process's ledger whose workers are gone; return their ids.

    ``wait_s``: how long a worker still holding its entry is given to let go
    (die, or end its run): joblib kills its workers as it aborts, but need not
    wait for them to be gone.
    """
    if _folder is None:
        return []
    ended, deadline = [], time.monotonic() + wait_s
    for path in sorted(_folder.glob("*.json")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:  # ended meanwhile
            continue
        try:
            if not _lock_by(fd, deadline):  # its worker holds it: the run is open and alive
                continue
            if not path.exists():  # the worker ended it and let go
                continue
            entry = json.loads(path.read_text() or "{}")
            if entry and _end_if_running(entry["tracking_uri"], entry["run_id"], reason):
                ended.append(entry["run_id"])
            with contextlib.suppress(OSError):
                path.unlink()
        except (OSError, ValueError) as exc:
            logger.warning("could not end the run of %s: %r", path, exc)
        finally:
            os.close(fd)
    return ended


def _lock_by(fd, deadline):
    """Whether the entry's lock was taken before ``deadline`` (its worker is gone or let go)."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def end_runs_of_stopped_workers(wait_s=5.0, reason=WORKER_GONE):
    """End KILLED the runs that workers of this process's fits left RUNNING when they were stopped.

    For a search as it returns or is interrupted (joblib is killing its
    workers), or a study whose worker died: each worker still holding a run
    is given ``wait_s`` seconds to be gone. ``reason`` goes in each run's
    ``error`` tag. Returns the ids of the runs ended.
    """
    return reap(reason, wait_s)


def register_runs_in(ledger):
    """Register every run this process opens from now on in ``ledger`` (from :func:`dispatching`).

    For a worker process that runs whole parts of another's work (a study
    section): should it die, that process ends its runs KILLED.
    """
    global _served
    _served = ledger


def _end_if_running(tracking_uri, run_id, reason):
    from mnist_mlp.tracking import store

    client = store.client(tracking_uri)
    if store.retrying(client.get_run, run_id).info.status != "RUNNING":
        return False
    store.retrying(client.set_tag, run_id, "error", reason)
    store.retrying(client.set_terminated, run_id, "KILLED")
    return True


def watch():
    """Reap from a daemon thread every quarter second (for searches that are not ours)."""
    global _watcher
    if fcntl is None:
        return
    with _lock:
        if _watcher is not None:
            return
        _watcher = threading.Thread(target=_watch, name="mnist-mlp-ledger", daemon=True)
        _watcher.start()


def _watch():
    while True:
        time.sleep(_WATCH_S)
        try:
            if _folder is not None and any(_folder.glob("*.json")):
                reap()
        except Exception as exc:  # noqa: BLE001 - a watcher must not die of one bad store
            logger.debug("ledger watcher: %r", exc)


def opened(run):
    """Note ``run`` open in this process (ended KILLED if the process exits first)."""
    entry = register(_served, run.tracking_uri, run.run_id) if _served is not None else None
    with _lock:
        _open_here.add(run)
        if entry is not None:
            _served_entries[run] = entry
    _ensure_exit_hook()


def closed(run):
    """Note ``run`` ended."""
    with _lock:
        _open_here.discard(run)
        entry = _served_entries.pop(run, None)
    if entry is not None:
        entry.close()


def end_runs_open_here(reason=PROCESS_EXITED):
    """End KILLED, straight in the store, the runs opened in this process and not ended; return their ids.

    For a process about to end without unwinding (at exit; a study worker
    whose main thread does not stop).
    """
    with _lock:
        left = list(_open_here)
    ended = []
    for run in left:
        try:
            if _end_if_running(run.tracking_uri, run.run_id, reason):
                ended.append(run.run_id)
        except Exception as exc:  # noqa: BLE001 - the others still get their chance
            logger.warning("could not end run %s: %r", run.run_id, exc)
    return ended


def _at_exit():
    end_runs_open_here()  # a thread's fit, or an ending cut short
    with contextlib.suppress(Exception):
        reap(wait_s=_EXIT_WAIT_S)  # joblib's workers are being killed as this process ends
    if _folder is None:
        return
    if any(_folder.glob("*.json")):  # workers alive still (a local cluster closes after this hook)
        with contextlib.suppress(OSError):
            subprocess.Popen([sys.executable, "-m", __name__, str(_folder)], start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return
    shutil.rmtree(_folder, ignore_errors=True)


def _reap_after(folder):
    """The detached reaper: wait for the workers of an exited process to let go, end what they left."""
    global _folder
    _folder = Path(folder)
    try:
        reap(wait_s=_REAPER_WAIT_S)
    finally:
        if not any(_folder.glob("*.json")):
            shutil.rmtree(_folder, ignore_errors=True)


if __name__ == "__main__":
    _reap_after(sys.argv[1])
