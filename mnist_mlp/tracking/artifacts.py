"""Publishing a run's artifacts all at once: staged beside the store, renamed into place."""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["local_root", "rename_into"]


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
