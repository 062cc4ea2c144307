"""Node processes on this machine: ``credit-node start`` in its own session, its log in its directory.

Readiness is the port file the node writes once it serves (``--port-file``), polled with a deadline;
stopping is SIGTERM (the node drains and exits 0), then SIGKILL if it does not. ``kill`` is the
crash (SIGKILL) the federation tests inflict. Only processes started here are ever signalled, by
their own pid.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

from node.errors import PeerUnavailableError

__all__ = ["NodeProcess", "wait_until"]


def wait_until(condition: object, deadline_s: float, *, what: str, poll_s: float = 0.1) -> None:
    """Poll ``condition()`` until true; PeerUnavailableError naming ``what`` when the deadline passes."""
    check = condition if callable(condition) else None
    if check is None:
        raise TypeError("condition must be callable")
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise PeerUnavailableError(f"timed out after {deadline_s:g}s waiting for {what}")
        time.sleep(poll_s)  # polling a condition in another process, bounded by the deadline


class NodeProcess:
    def __init__(self, node_id: str, config: pathlib.Path, *, env: Mapping[str, str] | None = None,
                 log_level: str = "INFO") -> None:
        self.node_id = node_id
        self.config = config
        self.dir = config.parent
        self.port_file = self.dir / "port"
        self.log_path = self.dir / "node.log"
        self._env = dict(env or {})
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def address(self) -> str:
        return self.port_file.read_text().strip()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, ready_timeout_s: float = 60.0) -> None:
        if self.running():
            return
        self.port_file.unlink(missing_ok=True)
        env = {**os.environ, **self._env, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "node", "--config", str(self.config), "start", "--port-file",
                 str(self.port_file), "--log-level", self._log_level],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.starts += 1
        try:
            wait_until(lambda: self.port_file.exists() or not self.running(), ready_timeout_s,
                       what=f"{self.node_id} to serve")
        except PeerUnavailableError:
            self.stop()
            raise
        if not self.running():
            raise PeerUnavailableError(f"{self.node_id} exited with {self._proc.returncode} at start; "
                                       f"see {self.log_path}:\n{self.tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye (what the tests do to a district mid-stream)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
