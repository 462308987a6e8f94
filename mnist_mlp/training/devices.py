"""Where ``training_loop="auto"`` trains when a GPU is visible.

Where JAX sees a GPU (:func:`jax_gpus`), the XLA loop trains there
(:mod:`mnist_mlp.training.xla`; ``docs/gpu.md``). Otherwise, where TensorFlow
sees one: the compiled CPU loop or Keras on the GPU, decided by a measured
crossover, as follows.

A GPU pays a fixed cost per step (kernel launches, transfers) and wins only
once a step holds enough arithmetic: a large enough network at a large enough
batch. Where that crossover lies depends on the GPU and the CPU, so it is
not guessed here: it is read from a table that ``benchmarks/gpu_crossover.py``
measures on the machine (per-epoch time of both loops over network sizes and
batch sizes) and writes as JSON. The table is found at
``$MNIST_MLP_GPU_CROSSOVER``, else beside this module (``gpu_crossover.json``,
shipped once measured on a reference GPU).

The rule, on the assumption that the GPU's advantage grows with both the
network and the batch: Keras on the GPU trains a fit when some measured point
with no more parameters and no larger batch than the fit's had the GPU faster.
Otherwise, and with no table, no GPU, or a GPU other than the table's, the
compiled loop trains, as on a machine without a GPU.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

__all__ = ["CROSSOVER_ENV", "crossover_table", "gpu_choice", "jax_gpus", "jax_installed", "n_parameters",
           "visible_gpus"]

logger = logging.getLogger(__name__)

#: Environment variable naming a crossover table (JSON) measured by ``benchmarks/gpu_crossover.py``.
CROSSOVER_ENV = "MNIST_MLP_GPU_CROSSOVER"
_PACKAGED = Path(__file__).with_name("gpu_crossover.json")


def n_parameters(dims):
    """Weights and biases of a dense network with layer widths ``dims`` (inputs first)."""
    dims = [int(d) for d in dims]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


@functools.lru_cache(maxsize=4)
def _read_table(path):
    try:
        table = json.loads(Path(path).read_text())
        points = [(int(p["parameters"]), int(p["batch_size"]), float(p["compiled_s"]), float(p["keras_gpu_s"]))
                  for p in table["points"]]
        return {"device": str(table["device"]), "points": points, "source": str(path)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # A broken table must not stop training: the compiled loop trains, and the log says why.
        logger.warning("GPU crossover table %s is unreadable (%s); the compiled CPU loop trains", path, exc)
        return None


def crossover_table():
    """The measured crossover table in force, or None: ``{"device", "points", "source"}``,
    each point ``(parameters, batch_size, compiled_s, keras_gpu_s)``."""
    path = os.environ.get(CROSSOVER_ENV) or (_PACKAGED if _PACKAGED.is_file() else None)
    return _read_table(str(path)) if path else None


def visible_gpus():
    """Names of the GPUs TensorFlow sees (e.g. ``["NVIDIA H200"]``); empty without one."""
    from mnist_mlp._tensorflow import tf

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            names.append(tf.config.experimental.get_device_details(device).get("device_name", device.name))
        except Exception:  # noqa: BLE001 - details are optional in TensorFlow's API: the device's own name
            names.append(device.name)
    return names


def jax_installed():
    """Whether JAX can be imported (the ``gpu`` extra, or ``jax[cpu]``), without importing it."""
    import importlib.util

    return importlib.util.find_spec("jax") is not None


def _jax_gpu_plugin_installed():
    """Whether a GPU plugin of JAX is installed (``jax_plugins.xla_cuda12``, ``xla_cuda13``, ROCm's),
    without importing JAX.

    JAX reaches a GPU only through such a plugin: without one it can see none, and a CPU-only
    process (JAX installed for its CPU backend, as the test extra does) need not pay for starting
    JAX, a second and XLA's CPU threads beside the compiled loop's, at its first fit.
    """
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec("jax_plugins")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any("cuda" in module.name or "rocm" in module.name
               for module in pkgutil.iter_modules(spec.submodule_search_locations))


@functools.lru_cache(maxsize=1)
def jax_gpus():
    """Names of the GPUs JAX sees, where JAX is installed (the XLA loop trains there); else empty.

    Asked once a process: importing JAX and starting its backends takes a second.
    """
    if not jax_installed() or not _jax_gpu_plugin_installed():
        return []
    try:
        from mnist_mlp.training import xla

        return xla.gpu_names()
    except Exception as exc:  # noqa: BLE001 - a broken JAX install must not stop training: the CPU loop trains
        logger.warning("JAX is installed but cannot be used (%r); training stays on the CPU", exc)
        return []


def gpu_choice(dims, batch_size, *, gpus=None, table=None):
    """Whether Keras on the GPU should train this fit: why it should (the estimator's
    ``training_loop_reason_``), or None.

    Parameters
    ----------
    dims : sequence of int
        Layer widths, inputs first (784, 128, 256, 10 for the study's network).
    batch_size : int
    gpus : list of str, default=None
        The visible GPUs' names (None: ask TensorFlow, only if a table exists).
    table : dict, default=None
        A crossover table as :func:`crossover_table` returns (None: the one in force).

    Returns
    -------
    str or None
        None: the compiled CPU loop trains.
    """
    table = crossover_table() if table is None else table
    if not table:
        return None
    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        return None
    if table["device"] not in gpus:
        logger.info("GPU %s is visible, but the crossover table (%s) was measured on %s: the compiled "
                    "CPU loop trains", ", ".join(gpus), table["source"], table["device"])
        return None
    parameters = n_parameters(dims)
    wins = [(p, b, c, g) for p, b, c, g in table["points"] if p <= parameters and b <= batch_size and g < c]
    if not wins:
        return None
    p, b, c, g = max(wins, key=lambda point: (point[0], point[1]))  # the nearest measured win
    return (
        f"a GPU ({table['device']}) is visible and Keras on it trains this network ({parameters:,} parameters) "
        f"at batch size {batch_size} faster than the compiled CPU loop: measured {g:.3g} s against {c:.3g} s "
        f"an epoch at {p:,} parameters, batch size {b} ({table['source']})")
