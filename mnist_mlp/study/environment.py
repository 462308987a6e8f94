"""The versions a report's figures came from, and how the running environment differs.

Every run records the versions of Python and of the libraries whose releases
can move a figure, and the machine's CPU and BLAS kernel, which move them too
(its ``python``, ``version.*``, ``cpu`` and ``blas`` tags, see
:func:`mnist_mlp.tracking.library_versions`). A report states those of its runs
(:func:`of_runs`); ``mnist-mlp study`` and ``report``, run from a checkout, say
when the running environment differs from the committed report's
(:func:`difference_note`), and how to install the pinned one that reproduces it.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["COMMITTED_REPORT", "PINS", "difference_note", "differences", "of_runs"]

_CHECKOUT = Path(__file__).resolve().parents[2]
#: The committed report (in a checkout of the repository; absent from an installed wheel).
COMMITTED_REPORT = _CHECKOUT / "benchmarks" / "results" / "study_report" / "report.json"
#: The tested versions the committed report was made with (``scripts/update_pins.sh``).
PINS = _CHECKOUT / "constraints.txt"


# Tags that are not versions but move figures as releases do: Python, the CPU, the BLAS kernel.
_MACHINE = ("python", "cpu", "blas")


def _running_key(name):
    return name if name in _MACHINE else f"version.{name}"


def of_runs(client, run_ids):
    """``{library: [versions]}`` recorded by the runs ``run_ids`` (one version each, where they agree)."""
    from mnist_mlp.tracking import retrying

    found = {}
    for run_id in sorted(set(run_ids)):
        for key, value in retrying(client.get_run, run_id).data.tags.items():
            if key in _MACHINE or key.startswith("version."):
                found.setdefault(key.removeprefix("version."), set()).add(value)
    return {name: sorted(values) for name, values in sorted(found.items())}


def differences(recorded, running=None):
    """``[(library, here, there)]`` where the running versions differ from ``recorded`` (:func:`of_runs`).

    A library recorded but not installed here is not a difference (an
    optional extra, such as JAX, which the default loop does not use: a loop
    that needs it says so), nor is one installed here but not recorded.
    """
    from mnist_mlp.tracking import library_versions

    running = library_versions() if running is None else running
    return [(name, running.get(_running_key(name)), ", ".join(versions))
            for name, versions in recorded.items()
            if running.get(_running_key(name)) is not None and running.get(_running_key(name)) not in versions]


def difference_note(report=None, running=None):
    """A line saying how this environment differs from the one ``report`` (a report.json;
    default :data:`COMMITTED_REPORT`) came from; None if not.

    None too where there is no such report (an installed package, not a
    checkout) or it names no versions (made before reports did).
    """
    report = COMMITTED_REPORT if report is None else report
    try:
        recorded = json.loads(Path(report).read_text()).get("environment") or {}
    except (OSError, ValueError):
        return None
    moved = differences(recorded, running)
    if not moved:
        return None
    listed = "; ".join(f"{name} {here} here, {there} there" for name, here, there in moved)
    advice = (f"the pinned install reproduces it: pip install -e '.[test]' -c {PINS.name}"
              if any(name not in ("cpu", "blas") for name, _, _ in moved) else
              "the same versions on another CPU or BLAS kernel can give other figures")
    return (f"this environment differs from the one the committed study report came from ({listed}): "
            f"figures may differ from it; {advice}")
