"""Files that must survive a power cut whole: synced before they are renamed into place.

A rename is atomic for the processes that are running, not for the disk: until the file's blocks
and then its directory entry are synced, a power cut may leave the new name on an empty or torn
file (a ``node.yaml`` that reads as empty, a release missing a file, a backup that fails its
digest) or leave the old name in place after the command said it was done.
"""

from __future__ import annotations

import os
import pathlib

__all__ = ["sync_dir", "write_synced"]


def write_synced(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (it must not exist) with ``mode`` from the start, and sync its contents."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def sync_dir(directory: pathlib.Path) -> None:
    """Sync a directory's entries: the renames and new files in it are then on disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
