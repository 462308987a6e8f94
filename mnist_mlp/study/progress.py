"""Progress display for long work: which fit of how many (reused ones counted), what is
training (its run's name: the candidate's parameters, seed and fold), its epochs, elapsed
and remaining time, and its own latest validation accuracy.

Shown with ``rich`` on an interactive terminal only; elsewhere (CI, files,
pipes) it stays silent. The Keras callback holds only a key into this
module's registry, so scikit-learn can clone (deep-copy) it into every fit
of a search without copying the display.
"""

from __future__ import annotations

import contextlib
import itertools
import sys

from mnist_mlp._tensorflow import keras

__all__ = ["ProgressCallback", "progress_display"]

_DISPLAYS = {}
_KEYS = itertools.count()


class _Display:
    def __init__(self, progress, description, total_fits):
        self.progress = progress
        # Hidden until its total is known: no "0/?" while the data load and the search is planned.
        self.fits = progress.add_task(description, total=total_fits, visible=total_fits is not None,
                                      note="")
        # Shown once a fit starts, named after it: never "epochs 0/?" with nothing training yet.
        self.epochs = progress.add_task("epochs", total=None, note="", visible=False)
        self.reused = 0


@contextlib.contextmanager
def progress_display(description, total_fits, *, enabled=None):
    """Yield a Keras callback showing progress over ``total_fits`` fits.

    Parameters
    ----------
    description : str
    total_fits : int
    enabled : bool, default=None
        None: only when standard error is an interactive terminal.
    """
    enabled = sys.stderr.isatty() if enabled is None else enabled
    key = next(_KEYS)
    if not enabled:
        yield ProgressCallback(key)
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("remaining"), TimeRemainingColumn(),
               TextColumn("{task.fields[note]}"))
    with Progress(*columns, transient=False) as progress:
        _DISPLAYS[key] = _Display(progress, description, total_fits)
        try:
            yield ProgressCallback(key)
        finally:
            del _DISPLAYS[key]


def _training_now():
    """What is training: its run's name (``alpha=0.1 seed=0 fold=0``; a standalone fit's settings)."""
    from mnist_mlp import tracking

    run = tracking.current_run() if tracking.tracking_enabled() else None
    return f"  {run.name}" if run is not None and run.name else "  epochs"


class ProgressCallback(keras.callbacks.Callback):
    """Advance the display registered under ``key``; a no-op where there is none."""

    #: Reads only the epoch logs, never the model: the compiled training loop
    #: need not copy the weights into Keras after each epoch for it.
    reads_logs_only = True

    #: Display only: a fit's result, and so its resume fingerprint, ignore it.
    affects_training = False

    def __init__(self, key):
        super().__init__()
        self.key = key

    def _display(self):
        return _DISPLAYS.get(self.key)

    def set_total(self, total_fits):
        """Set how many fits the display counts to; returns this callback."""
        if display := self._display():
            display.progress.update(display.fits, total=total_fits, visible=True)
        return self

    def on_fit_reused(self):
        """A fit a finished run stood in for (resume): counted as done, and as reused."""
        if display := self._display():
            display.reused += 1
            display.progress.update(display.fits, advance=1, note=f"{display.reused} reused")

    def on_train_begin(self, logs=None):
        if display := self._display():
            # A new fit: its own name, and no figure of the fit before it.
            display.progress.reset(display.epochs, total=self.params.get("epochs"), visible=True,
                                   description=_training_now(), note="first epoch running")

    def on_epoch_end(self, epoch, logs=None):
        if display := self._display():
            accuracy = (logs or {}).get("val_accuracy")
            note = "" if accuracy is None else f"validation accuracy {accuracy:.4f}"
            display.progress.update(display.epochs, completed=epoch + 1, note=note)

    def on_train_end(self, logs=None):
        if display := self._display():
            display.progress.advance(display.fits)
