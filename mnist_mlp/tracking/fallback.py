"""Where a run's records go when its store is lost mid-fit: a local folder per run.

Training never stops for the store. Once a write fails for good and the store
cannot be reached, the run's params, metrics, tags, artifacts and model are
written under ``$MNIST_MLP_FALLBACK_DIR/<run id>/`` (default
``mlflow-unlogged/``) instead, with an ``info.json`` saying where they
belonged, and a :class:`~mnist_mlp.tracking.store.TrackingLostWarning` says so
once. A store that answers but refused one write (after the retries that
resolve concurrent writers' conflicts) is not lost: only that write's records
go to the folder, a :class:`~mnist_mlp.tracking.store.TrackingRefusedWarning`
says why, and the run goes on, and ends, in the store.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path

from mnist_mlp.tracking.store import FALLBACK_DIR_ENV, TrackingLostWarning, TrackingRefusedWarning

__all__ = ["FallbackFolder"]

logger = logging.getLogger(__name__)


class FallbackFolder:
    """The local folder of one run whose store was lost or refused a write.

    Parameters
    ----------
    run_id, tracking_uri, experiment_id : str
        The run and where it belonged (recorded in ``info.json``).
    error : BaseException
        What the store raised.
    lost : bool, default=True
        True: the store is gone and every later record of the run comes here.
        False: it refused this one write; the run goes on in the store.
    """

    def __init__(self, run_id, tracking_uri, experiment_id, error, *, lost=True):
        root = Path(os.environ.get(FALLBACK_DIR_ENV, "mlflow-unlogged"))
        self.path = (root / run_id).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        reason = f"{type(error).__name__}: {error}"
        info = {"tracking_uri": tracking_uri, "run_id": run_id, "experiment_id": experiment_id,
                "lost_because" if lost else "refused_because": reason}
        known = self._read("info.json")  # a second writer adds, never erases
        (self.path / "info.json").write_text(json.dumps({**info, **known}, indent=2))
        if lost:
            message = (f"MLflow tracking store {tracking_uri} was lost during run {run_id} "
                       f"({type(error).__name__}); its params, metrics, artifacts and model are being "
                       f"saved in {self.path} instead")
        else:
            message = (f"MLflow tracking store {tracking_uri} refused a write of run {run_id} "
                       f"({reason.splitlines()[0][:300]}); that write is saved in {self.path}, "
                       f"the run goes on in the store")
        logger.warning(message)
        warnings.warn(message, TrackingLostWarning if lost else TrackingRefusedWarning, stacklevel=4)

    def _read(self, name):
        path = self.path / name
        return json.loads(path.read_text()) if path.exists() else {}

    def update_json(self, name, update):
        """Merge ``update`` into the JSON object in file ``name``."""
        data = {**self._read(name), **update}
        (self.path / name).write_text(json.dumps(data, indent=2, default=str))

    def append_metrics(self, series):
        """Append ``[(step, {name: value})]`` to ``metrics.jsonl``, a line per value."""
        with open(self.path / "metrics.jsonl", "a") as fh:
            for step, logged in series:
                for key, value in logged.items():
                    fh.write(json.dumps({"key": key, "value": float(value), "step": step}) + "\n")

    def copy_artifacts(self, path, artifact_path=None):
        """Copy a file or folder under ``artifacts/<artifact_path>``."""
        target = self.path / "artifacts" / (artifact_path or "")
        if Path(path).is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
