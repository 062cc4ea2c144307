"""The revocation list, re-read while the node runs: a revocation takes effect without a restart.

The CA publishes a new list (``credit-node ca crl``) and the operator puts it where
``identity.crl`` points; every ``interval_s`` the node looks at the file and, when it changed,
loads it into the trust store. Callers are checked against the trust store on every call and on
every request of a Submit stream, records' signers when they are verified: from the next of these,
a revoked certificate is refused. A list that does not load (not a CRL, not signed by the
federation CA, half copied) is logged and the one in force stays: the node never runs with no list.
"""

from __future__ import annotations

import logging
import pathlib
from datetime import UTC, datetime

from node.errors import NodeError
from node.runtime import ThreadExtension
from node.truststore import TrustStore

__all__ = ["CrlWatch", "stale_warning"]

log = logging.getLogger(__name__)

INTERVAL_S = 30.0


def stale_warning(trust: TrustStore, path: pathlib.Path) -> None:
    """Log ``trust.crl_stale`` if the list in force is past its next update."""
    due = trust.crl_next_update
    if due is not None and due < datetime.now(UTC):
        # Still applied (it is the best list there is), but revocations made since are unknown here.
        log.warning("trust.crl_stale", extra={"crl": str(path), "next_update": due.isoformat(),
                                              "remedy": "put the CA's newest list (credit-node ca crl) in place"})


class CrlWatch(ThreadExtension):
    name = "crl watch"

    def __init__(self, trust: TrustStore, path: pathlib.Path, *, interval_s: float = INTERVAL_S) -> None:
        super().__init__()
        self._trust = trust
        self._path = path
        self._interval_s = interval_s
        self._seen = self._stamp()  # the file as it was loaded at start

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def check(self) -> bool:
        """Load the file if it changed since last seen; True when a new list is in force."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False  # unchanged, or gone for a moment (being replaced): keep the list in force
        try:
            self._trust.load_crl(self._path.read_bytes())
        except (OSError, NodeError) as exc:
            reason = exc.message if isinstance(exc, NodeError) else exc.strerror
            log.error("trust.crl_refused", extra={"crl": str(self._path), "reason": reason,
                                                  "remedy": "the list in force stays; put a CRL of the federation "
                                                            "CA in place (credit-node ca crl)"})
            self._seen = stamp  # said once per change, not at every look
            return False
        self._seen = stamp
        log.info("trust.crl_loaded", extra={"crl": str(self._path), "revoked": self._trust.revoked_count})
        stale_warning(self._trust, self._path)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.check()
