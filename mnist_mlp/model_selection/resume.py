"""Resuming an interrupted search: fit fingerprints and reuse of finished runs.

A fit's fingerprint hashes what determines its result: the estimator's
parameters (described stably, never by memory address), the candidate's
parameters, the training and test rows, the data's contents and the code
that trains (:func:`code_identity`: the package version, a digest of its
training modules' source, the Keras and TensorFlow versions). A search fit whose fingerprint matches a FINISHED run in the same
experiment is not run again: the result recorded on that run (scores and
times) stands in for it. Runs an interrupted attempt left RUNNING with the
same fingerprint are marked KILLED first.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

__all__ = ["REUSED_IN_TAG", "fit_fingerprint", "mark_stale", "record_result", "reuse_finished", "scorer_key",
           "search_fingerprint"]

_RESULT_TAG = "cv_result"

#: The tag a reused run gets: the ``search_attempt`` (one call of a search's ``fit``) it stood in for.
REUSED_IN_TAG = "reused_in"
# The modules whose code decides what a fit computes: a change to any of them
# (a kernel fixed, a default changed) must not let an old run stand in.
_TRAINING_CODE = ("training/kernels.py", "training/loop.py", "training/keras_adapter.py", "estimator.py",
                  "preprocessing.py", "pipeline.py")


@functools.lru_cache(maxsize=1)
def code_identity():
    """What identifies the code that trains: this package's version, a digest
    of its training modules' source, and the Keras and TensorFlow versions."""
    from importlib import metadata

    import mnist_mlp

    folder = Path(mnist_mlp.__file__).parent
    source = hashlib.sha256()
    for name in _TRAINING_CODE:
        source.update(name.encode() + b"\0" + (folder / name).read_bytes())
    versions = {}
    for dist in ("keras", "tensorflow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"version": mnist_mlp.__version__, "training_code": source.hexdigest()[:16], **versions}


def _describe(value):
    from mnist_mlp.tracking.values import describe as describe_object

    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items())}
    if hasattr(value, "get_params") and not isinstance(value, type):
        return {"class": type(value).__name__, **{
            k: _describe_callbacks(v) if k == "callbacks" else _describe(v)
            for k, v in sorted(value.get_params(deep=False).items()) if k not in _IGNORED
        }}
    return describe_object(value)


def _describe_callbacks(callbacks):
    """Callbacks that can change a fit (early stopping, a crash) by class and settings.

    Display-only callbacks (``affects_training = False``, such as the progress
    display) are left out, so that showing progress does not defeat resuming.
    """
    described = []
    for callback in callbacks or []:
        if getattr(callback, "affects_training", True):
            settings = {k: v for k, v in sorted(vars(callback).items())
                        if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None)))}
            described.append([type(callback).__module__ + "." + type(callback).__qualname__, settings])
    return described


# Parameters that change how a fit is shown, logged or scheduled, not its result (the
# compiled loop's products are split in blocks sized by shape, never by thread count).
_IGNORED = {"verbose", "tracking", "log_models", "memory", "steps", "n_jobs"}


def _array_digest(array):
    """A digest of the array's contents, shape and dtype.

    Always of the contents: a cache keyed by the object would keep a stale
    digest for an array changed in place. BLAKE2 reads MNIST's 47 MB in well
    under 0.1 s, little beside a fit.
    """
    arr = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.blake2b(str((arr.shape, arr.dtype.str)).encode(), digest_size=32)
    digest.update(arr.view(np.uint8).reshape(-1) if arr.dtype != object else repr(arr.tolist()).encode())
    return digest.hexdigest()


def fit_fingerprint(estimator, parameters, X, y, train, test):
    """Hex digest identifying one search fit: estimator, parameters, rows and data."""
    from sklearn.base import clone

    configured = clone(estimator).set_params(**parameters)
    steps = getattr(configured, "steps", [("estimator", configured)])
    payload = {
        "code": code_identity(),
        "steps": [(name, _describe(step)) for name, step in steps],
        "X": _array_digest(X),
        "y": _array_digest(y),
        "train": hashlib.sha256(np.asarray(train, dtype=np.int64).tobytes()).hexdigest(),
        "test": hashlib.sha256(np.asarray(test, dtype=np.int64).tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _runs_with(client, experiment_id, fingerprint, status):
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.fingerprint = '{fingerprint}' and attributes.status = '{status}'",
        max_results=100,
    )


def scorer_key(scorer):
    """A short, process-independent name for how a fit is scored (a result holds its scores).

    A scorer whose repr names a memory address (a plain function) gets a key
    no other process shares: its fits are never reused, only refitted.
    """
    return hashlib.sha256(repr(scorer).encode()).hexdigest()[:12]


def reuse_finished(context, fingerprint, scoring):
    """The recorded result, scored by ``scoring`` (a :func:`scorer_key`), of a FINISHED fit
    with this fingerprint; or None.

    Marks any run left RUNNING with this fingerprint KILLED: the attempt that
    owned it is gone (a search never runs the same fit twice at once). A
    finished fit scored another way (the study's macro-F1 search after its
    accuracy search) cannot stand in: its scores are not this search's.
    """
    from mlflow.entities import RunTag

    from mnist_mlp.tracking import client as tracking_client, retrying

    client = tracking_client(context.tracking_uri)
    mark_stale(client, context.experiment_id, fingerprint)
    for run in retrying(_runs_with, client, context.experiment_id, fingerprint, "FINISHED"):
        tags = run.data.tags
        recorded = tags.get(f"{_RESULT_TAG}.{scoring}")
        if recorded:
            tags = [RunTag("reused_by", context.parent_run_id)]
            if "search_attempt" in context.tags:
                tags.append(RunTag(REUSED_IN_TAG, context.tags["search_attempt"]))
            retrying(client.log_batch, run.info.run_id, tags=tags)
            return json.loads(recorded)
        if any(k.startswith(_RESULT_TAG) for k in tags):
            continue  # finished, and scored another way: left as it is
        # Killed between the end of its fit and the recording of its score:
        # it cannot stand in, and one FINISHED run per fit must remain.
        retrying(client.set_tag, run.info.run_id, "error", "finished without a recorded result; refitted")
        retrying(client.set_terminated, run.info.run_id, "KILLED")
    return None


def mark_stale(client, experiment_id, fingerprint, exclude=None):
    """Mark runs left RUNNING with this fingerprint (but ``exclude``) KILLED; returns how many."""
    from mnist_mlp.tracking import retrying

    stale = [r for r in retrying(_runs_with, client, experiment_id, fingerprint, "RUNNING")
             if r.info.run_id != exclude]
    for run in stale:
        retrying(client.set_tag, run.info.run_id, "error", "interrupted; found RUNNING on resume")
        retrying(client.set_terminated, run.info.run_id, "KILLED")
    return len(stale)


def search_fingerprint(search, X, y):
    """Hex digest identifying a whole search: its settings, estimator and data."""

    payload = {
        "code": code_identity(),
        "search": _describe(search),
        "X": _array_digest(X),
        "y": _array_digest(y),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def record_result(context, run_id, result, scoring):
    """Record on the fit's run what ``_fit_and_score`` returned, scored by ``scoring``
    (a :func:`scorer_key`), for later reuse."""
    from mnist_mlp.tracking import client as tracking_client, retrying

    client = tracking_client(context.tracking_uri)
    retrying(client.set_tag, run_id, f"{_RESULT_TAG}.{scoring}", json.dumps(result, default=float))
