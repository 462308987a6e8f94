"""Publishing a run's artifacts all at once: staged beside the store, renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["local_root", "rename_into", "staging_folder"]


def local_root(artifact_uri):
    """The run's artifact folder if it is on this machine's disk, else None."""
    uri = artifact_uri or ""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" and uri:
        return Path(uri)
    return None


def rename_into(folder, target):
    """Move ``folder``'s entries into ``target`` by renaming (same disk: no copy, never half-written)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        destination = target / entry.name
        if entry.is_dir() and destination.exists():  # rename cannot merge folders
            shutil.copytree(entry, destination, dirs_exist_ok=True)
        else:
            os.replace(entry, destination)


@contextlib.contextmanager
def staging_folder(root):
    """A temporary folder to write artifacts in, removed on leaving; yields ``(folder, beside)``.

    With ``root`` (a local artifact folder, created if need be) the folder is
    made beside it, on the same disk, so that its entries can be renamed into
    place (``beside`` is True); without, or if that fails, anywhere.
    """
    parent = None
    if root is not None:
        with contextlib.suppress(OSError):
            root.mkdir(parents=True, exist_ok=True)
            parent = root.parent
    try:
        folder = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    except OSError:
        parent, folder = None, Path(tempfile.mkdtemp(prefix="mnist_mlp-"))
    try:
        yield folder, parent is not None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
