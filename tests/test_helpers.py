"""The child processes tests start: Ctrl-C reaches them whatever their parent ignores, and
nothing they started outlives the test; a server starts only in a slow test."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ServerProcess, child_process


def _running(pid):
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_child_answers_ctrl_c_even_when_this_process_ignores_it():
    """A background job (``pytest ... &``, a CI step) starts with SIGINT ignored, and an ignored
    signal stays ignored in every child it execs: the interrupt tests' commands would never stop."""
    code = "import signal, time; print(signal.getsignal(signal.SIGINT), flush=True); time.sleep(120)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    try:
        with child_process([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True) as proc:
            assert "default_int_handler" in proc.stdout.readline()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_failing_test_leaves_neither_its_child_nor_the_childs_children_running():
    code = ("import subprocess, sys, time; "
            "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
            "print(worker.pid, flush=True); time.sleep(300)")
    with pytest.raises(RuntimeError, match="the test failed"):
        with child_process([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
            worker = int(proc.stdout.readline())
            assert _running(proc.pid) and _running(worker)
            raise RuntimeError("the test failed before it stopped its child")
    assert proc.returncode is not None
    deadline = time.monotonic() + 30  # the orphaned worker is reaped by whoever adopts it
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker)


def test_a_test_outside_the_slow_tier_cannot_start_a_server(tmp_path):
    with pytest.raises(RuntimeError, match="python.* started by a test not marked slow"):
        ServerProcess([sys.executable, "-c", "pass"], tmp_path / "server.log")
    assert not (tmp_path / "server.log").exists()  # refused before anything started
