"""One running instance per node: ``start`` and ``adapters run`` hold the node directory's lock.

Two instances of one node would both drain its outbox, run its daily sweep and poll its
adapters: a drop folder's file read twice and moved by whichever came first, a table pulled
twice over. Nothing is lost that way, but it is never what the operator meant (a service
manager's node and one started by hand). The lock is an ``flock`` on ``.credit-node.lock`` beside
``node.yaml``: the kernel drops it when the process dies, however it dies, so a killed node
leaves nothing to clean up. Other commands (import, query, …) run beside a running node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from node.config import NodeConfig
from node.errors import ConfigError, ConflictError

__all__ = ["LOCK_FILE", "running_instance"]

LOCK_FILE = ".credit-node.lock"


@contextlib.contextmanager
def running_instance(config: NodeConfig, command: str) -> Iterator[None]:
    """Hold the node's instance lock while the block runs; refuse if another process holds it."""
    path = config.path(LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the node's lock file {path}: {exc.strerror}", code="E_NODE_LOCK") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise ConflictError(f"node {config.id} is already running ({holder}); stop it first, or use its "
                                "own commands beside it", code="E_NODE_RUNNING") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {command}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
