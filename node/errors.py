"""One exception tree for the whole node, with stable codes (docs/protocol.md lists them).

Every error a user, a peer or an operator can see derives from :class:`NodeError`. Codes are part
of the wire contract (acks, gRPC status details, CLI output, feedback files): never rename one.
``retryable`` tells the forwarder and the CLI whether trying again could succeed.
Errors of pika, grpc and SQLAlchemy are wrapped where they cross a boundary, never leaked.
"""

from __future__ import annotations

from dataclasses import dataclass


class NodeError(Exception):
    code = "E_NODE"
    retryable = False
    exit_code = 1

    def __init__(self, message: str, *, field: str = "", code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.code}{where}: {self.message}"


# --- configuration and usage -------------------------------------------------------------------
class ConfigError(NodeError):
    """Bad configuration file or option; the node refuses to start."""

    code = "E_CONFIG"
    exit_code = 2


class UsageError(NodeError):
    code = "E_USAGE"
    exit_code = 2


# --- catalogue ------------------------------------------------------------------------------------
class CatalogError(NodeError):
    code = "E_CATALOG"
    exit_code = 2


class ProhibitedFieldError(CatalogError):
    """A catalogue names personal information the law forbids collecting."""

    code = "E_CATALOG_PROHIBITED_FIELD"


class UnknownItemError(CatalogError):
    code = "E_UNKNOWN_ITEM"


# --- input files --------------------------------------------------------------------------------
class InputFileError(NodeError):
    """The file as a whole cannot be read (encoding, headers, format)."""

    code = "E_INPUT"
    exit_code = 2


# --- records: validation, signatures, authority ------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One reason a record is refused (or warned about): the unit of feedback to a source."""

    code: str
    field: str
    message: str
    row: int = 0
    warning: bool = False


MESSAGE_CHARS = 500  # of a problem's message quoting a value: what a reader needs, whatever was sent


def clipped(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text`` cut in its middle to about ``limit`` characters: a refusal quoting a huge value
    keeps its start (the value's beginning) and its end (what was expected instead)."""
    if len(text) <= limit:
        return text
    half = max(1, (limit - 30) // 2)
    return f"{text[:half]}…[{len(text) - 2 * half:,} characters]…{text[-half:]}"


class RecordRejected(NodeError):
    """A record failed validation; carries every problem found, not only the first."""

    code = "E_RECORD_REJECTED"

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0] if problems else Problem("E_RECORD_REJECTED", "", "rejected")
        super().__init__(first.message, field=first.field, code=first.code)
        self.problems = problems


class SignatureError(NodeError):
    code = "E_SIGNATURE_INVALID"


class UntrustedSignerError(SignatureError):
    code = "E_SIGNER_UNTRUSTED"


class NotAuthorizedError(NodeError):
    """The caller or sender may not do this (wrong role, item, unit, missing purpose …)."""

    code = "E_NOT_AUTHORIZED"
    exit_code = 3


class BlockedError(NotAuthorizedError):
    code = "E_BLOCKED"


class UnauthenticatedError(NotAuthorizedError):
    """The caller's certificate is not (or no longer) one the node accepts: expired, revoked …"""

    code = "E_UNAUTHENTICATED"


class NotFoundError(NodeError):
    code = "E_NOT_FOUND"


class ConflictError(NodeError):
    code = "E_CONFLICT"


class DeadlineError(NodeError):
    code = "E_DEADLINE"


class UnimplementedError(NodeError):
    """A method this node's servicer does not implement (a client built from a newer .proto)."""

    code = "E_UNIMPLEMENTED"


# --- infrastructure (wrapped at the boundary) --------------------------------------------------
class StoreError(NodeError):
    code = "E_STORE"
    retryable = True
    exit_code = 4  # the database unavailable, locked or full (README: exit codes)


class TransportError(NodeError):
    code = "E_TRANSPORT"
    retryable = True
    exit_code = 4  # a service or peer unavailable (README: exit codes)


class PeerUnavailableError(TransportError):
    code = "E_PEER_UNAVAILABLE"


class PeerNotReadyError(TransportError):
    """The peer answers but cannot take deliveries until someone acts: a queue or binding missing,
    our permissions gone, a broker in a resource alarm. No delivery is at fault, so waiting for the
    cause to go spends none of their attempts (the forwarder gives its claim back)."""

    code = "E_PEER_NOT_READY"


class MessageTooLargeError(TransportError):
    """A gRPC message over a side's size limit: sending it again gives the same, so not retryable."""

    code = "E_MESSAGE_TOO_LARGE"
    retryable = False


class IntegrityError(NodeError):
    """Stored data or a log chain does not verify: tampering or corruption."""

    code = "E_INTEGRITY"
