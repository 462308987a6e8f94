"""Import TensorFlow and Keras once, without their start-up noise.

TensorFlow's native code writes INFO lines (oneDNN, CPU feature guard, absl
preamble) straight to file descriptor 2 while it loads, before any Python
logging or ``TF_CPP_MIN_LOG_LEVEL`` can filter them. We capture the
descriptor during the import and replay every line that is not one of those
known notices, so genuine errors still reach the user.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile

from mnist_mlp import interrupts

# A user who sets TF_CPP_MIN_LOG_LEVEL wants TensorFlow's own logs: then we
# filter nothing. Otherwise hide its C++ logs (its real errors reach Python as
# exceptions) and the start-up notices printed before logging is set up.
# The marker tells worker processes, which inherit our TF_CPP_MIN_LOG_LEVEL,
# that it was ours and not the user's.
_QUIET = "TF_CPP_MIN_LOG_LEVEL" not in os.environ or os.environ.get("MNIST_MLP_QUIET_TF") == "1"
if _QUIET:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["MNIST_MLP_QUIET_TF"] = "1"

_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|I\d{4} .*(port\.cc|cpu_feature_guard\.cc|cudart_stub\.cc)"
    r"|E\d{4} .*cuda_platform\.cc.*cuInit"  # a CPU-only machine, not an error
    r"|To enable the following instructions:"
    r")"
)


@contextlib.contextmanager
def _filtered_native_stderr():
    """Capture fd 2 for the duration of the block, then replay non-noise lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (some notebooks): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [ln for ln in text.splitlines() if ln and not _NOISE.match(ln)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def _import():
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["tensorflow"], sys.modules["keras"]
    # A Ctrl-C waits for the import to be whole: cut, TensorFlow's registries stay half
    # filled and every later import in the process fails ("... has already been registered").
    # Not in a command's process, which ends with the stop: there it stops at once.
    with interrupts.deferred(unless_ending=True), _filtered_native_stderr() if _QUIET else contextlib.nullcontext():
        import tensorflow
        import keras

        # Device discovery logs too (cuInit on CPU-only machines): do it here.
        tensorflow.config.list_physical_devices()
    if _QUIET:
        # Python-side advice such as "triggered tf.function retracing": every
        # fit builds a new network, so retracing is expected, not a problem.
        tensorflow.get_logger().setLevel(logging.ERROR)
    return tensorflow, keras


tf, keras = _import()

__all__ = ["tf", "keras"]
