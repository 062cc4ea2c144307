"""The local store's schema: one MetaData, one Table per concept (DESIGN §2.8).

This module is the single description of the schema that code is written against; the Alembic
migrations in ``migrations/versions`` are frozen snapshots of how it came to be, and a test checks
that migrating an empty database yields exactly these tables. Timestamps are unix milliseconds in
BIGINT columns (no time zones, no driver conversions); digests and hashes are raw 32-byte values.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

__all__ = [
    "audit_log",
    "authorizations",
    "blocks",
    "certificates",
    "conflicts",
    "dead_letters",
    "facts",
    "meta",
    "metadata",
    "objection_events",
    "objections",
    "outbox",
    "query_log",
    "record_heads",
    "record_revisions",
    "refusal_tallies",
    "rejections",
    "repair_requests",
]

# Deterministic constraint names, so later migrations can address them on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-assigns an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
_AutoId = BigInteger().with_variant(Integer(), "sqlite")

RECORD_ID_LEN = 64
NODE_ID_LEN = 128
CODE_LEN = 64

# Append-only: every revision of every record exactly as received. Never updated, never deleted.
record_revisions = Table(
    "record_revisions",
    metadata,
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("item", String(CODE_LEN), nullable=False),
    Column("subject_code", String(CODE_LEN), nullable=False),
    Column("subject_kind", String(32), nullable=False),
    Column("source_unit", String(CODE_LEN), nullable=False),
    Column("origin_node", String(NODE_ID_LEN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("decision_date", String(10), nullable=False),  # ISO date or ''
    Column("body", LargeBinary, nullable=False),  # the exact RecordBody bytes (DESIGN §2.1)
    Column("body_digest", LargeBinary(32), nullable=False),
    Column("content_digest", LargeBinary(32), nullable=False),
    Column("signed", LargeBinary, nullable=False),  # SignedRecord incl. the chain as held here
    Column("received_at_ms", BigInteger, nullable=False),
    Column("received_from", String(NODE_ID_LEN), nullable=False),  # node id, '' if ingested here
    Column("catalog_version", String(CODE_LEN), nullable=False),
    PrimaryKeyConstraint("record_id", "revision"),  # no subject index: lookups go through the heads
    Index(None, "item", "decision_date"),  # reconciliation reads the days that differ, not every day
)

# Derived current view (the highest revision of each record), written with the revisions and rebuildable
# from them: a cache with a proof, not a second truth. No foreign key to record_revisions here or in
# outbox: only RecordStore.append writes either, and on SQLite the per-row check cost a row's write.
record_heads = Table(
    "record_heads",
    metadata,
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("item", String(CODE_LEN), nullable=False),
    Column("subject_code", String(CODE_LEN), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source_unit", String(CODE_LEN), nullable=False),
    Column("decision_date", String(10), nullable=False),
    Column("body_digest", LargeBinary(32), nullable=False),
    Column("content_digest", LargeBinary(32), nullable=False),
    Column("received_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("record_id"),
    Index(None, "subject_code"),
    Index(None, "item", "decision_date"),
)

OUTBOX_STATES = ("pending", "done", "dead")

# Transactional outbox (DESIGN §2.5): rows are written with the revision they forward.
outbox = Table(
    "outbox",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("destination", String(NODE_ID_LEN), nullable=False),
    Column("rule_id", String(CODE_LEN), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("state", String(8), nullable=False),
    CheckConstraint("state IN ('pending', 'done', 'dead')", name="state"),
    Index(None, "destination", "state", "id"),
)

DEAD_LETTER_KINDS = ("outbox", "inbound")

# Deliveries that exhausted their retries (kind 'outbox') and received records that could not be
# accepted (kind 'inbound'); an operator inspects and replays them.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("record_id", String(RECORD_ID_LEN), nullable=False),  # '' if the payload had none
    Column("revision", Integer, nullable=False),
    Column("destination_or_sender", String(NODE_ID_LEN), nullable=False),
    Column("reason", String(CODE_LEN), nullable=False),  # stable error code
    Column("message", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # may be empty
    Column("created_at_ms", BigInteger, nullable=False),
    Column("replayed_at_ms", BigInteger, nullable=True),
    Column("outbox_id", BigInteger, nullable=True),  # kind 'outbox': the delivery to put back
    CheckConstraint("kind IN ('outbox', 'inbound')", name="kind"),
    Index(None, "kind", "id"),
)

# Validation feedback to source units: open until a corrected version of the same fact arrives.
rejections = Table(
    "rejections",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("batch_id", String(CODE_LEN), nullable=False),
    Column("source", String(255), nullable=False),  # file name or sender node id
    Column("source_unit", String(CODE_LEN), nullable=False),
    Column("item", String(CODE_LEN), nullable=False),
    Column("row", BigInteger, nullable=False),  # row in the source file, 0 if none
    Column("record_key", String(255), nullable=False),  # the item's natural key, '' if unknown
    Column("field", String(CODE_LEN), nullable=False),
    Column("code", String(CODE_LEN), nullable=False),
    Column("message", Text, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("closed_at_ms", BigInteger, nullable=True),  # NULL = open
    Column("closed_by_record_id", String(RECORD_ID_LEN), nullable=True),
    Index(None, "item", "source_unit", "record_key"),
    Index(None, "source_unit", "closed_at_ms"),
)


# Refusal counts of the units below, as the children last reported them with reconciliation
# (node/tallies.py): a snapshot per child, replaced whole, never added to.
refusal_tallies = Table(
    "refusal_tallies",
    metadata,
    Column("origin", String(NODE_ID_LEN), nullable=False),  # the node holding the refused rows
    Column("source_unit", String(CODE_LEN), nullable=False),
    Column("item", String(CODE_LEN), nullable=False),
    Column("day", String(10), nullable=False),  # Beijing date of the facts' latest refusal
    Column("refused", Integer, nullable=False),
    Column("received_from", String(NODE_ID_LEN), nullable=False),  # the child whose snapshot it is
    Column("received_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("origin", "source_unit", "item", "day"),
    Index(None, "received_from"),
)


def _chained(name: str, *columns: Column[object] | Index) -> Table:
    """A hash-chained, append-only log table (see ``audit.HashChainLog``).

    ``seq`` is assigned by the appender, not the database: it is part of the hashed content, so
    it must be known before the row is written.
    """
    return Table(
        name,
        metadata,
        Column("seq", BigInteger, primary_key=True, autoincrement=False),
        Column("at_ms", BigInteger, nullable=False),
        *columns,
        Column("prev_hash", LargeBinary(32), nullable=False),
        Column("hash", LargeBinary(32), nullable=False),
    )


audit_log = _chained(
    "audit_log",
    Column("actor", String(NODE_ID_LEN), nullable=False),
    Column("action", String(CODE_LEN), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("detail", Text, nullable=False),  # canonical JSON
    # Notices are kept once, by id, however often the refusal behind them comes again.
    Index(None, "subject"),
)

query_log = _chained(
    "query_log",
    Column("caller", String(NODE_ID_LEN), nullable=False),
    Column("role", String(32), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("subject", String(CODE_LEN), nullable=False),
    Column("items", Text, nullable=False),  # canonical JSON list of item codes
    Column("result_count", Integer, nullable=False),
    Column("detail", Text, nullable=False),  # canonical JSON
)

# Signer certificates learned from peers (SubmitRequest.certificates), by key id.
certificates = Table(
    "certificates",
    metadata,
    Column("key_id", LargeBinary(32), primary_key=True),
    Column("node_id", String(NODE_ID_LEN), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("added_at_ms", BigInteger, nullable=False),
    Index(None, "node_id"),
)

# Authorisation codes (授权查询): a subject lets one grantee see its B items until expiry or
# revocation. ``code`` is the SHA-256 (hex) of the code; the code itself is shown only at grant.
authorizations = Table(
    "authorizations",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("subject", String(CODE_LEN), nullable=False),
    Column("grantee", String(NODE_ID_LEN), nullable=False),
    Column("items", Text, nullable=False),  # canonical JSON list of item codes
    Column("issued_at_ms", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger, nullable=True),
    Index(None, "subject"),
    Index(None, "grantee"),
)

# Addresses blocked after abnormal bursts of access (seed 004 第十九条); lifted, never deleted.
blocks = Table(
    "blocks",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("address", String(255), nullable=False),
    Column("caller", String(NODE_ID_LEN), nullable=False),  # the certificate seen when it was blocked
    Column("reason", Text, nullable=False),
    Column("since_ms", BigInteger, nullable=False),
    Column("lifted_at_ms", BigInteger, nullable=True),  # NULL = in force
    Index(None, "address", "lifted_at_ms"),
)

# Each fact by its source-independent key (item + natural key): which source unit reported what
# (node/conflicts.py), so a second unit saying something else about the same fact is flagged.
facts = Table(
    "facts",
    metadata,
    Column("fact_hash", LargeBinary(32), nullable=False),  # sha256 of item U+001F natural key
    Column("source_unit", String(CODE_LEN), nullable=False),
    Column("item", String(CODE_LEN), nullable=False),
    Column("fact_key", String(255), nullable=False),  # the natural key, readable
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("substance", Text, nullable=False),  # canonical JSON of the compared fields
    Column("seen_at_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("fact_hash", "source_unit"),
)

CONFLICT_STATES = ("open", "resolved", "agreed", "revoked")

# Two source units reporting one fact differently; open until the platform resolves it.
conflicts = Table(
    "conflicts",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("item", String(CODE_LEN), nullable=False),
    Column("fact_key", String(255), nullable=False),
    Column("fact_hash", LargeBinary(32), nullable=False),
    Column("record_a", String(RECORD_ID_LEN), nullable=False),  # the report seen first
    Column("source_unit_a", String(CODE_LEN), nullable=False),
    Column("revision_a", Integer, nullable=False),
    Column("record_b", String(RECORD_ID_LEN), nullable=False),  # the report that disagrees
    Column("source_unit_b", String(CODE_LEN), nullable=False),
    Column("revision_b", Integer, nullable=False),
    Column("differences", Text, nullable=False),  # canonical JSON {field: [a, b]}
    Column("detected_at_ms", BigInteger, nullable=False),
    Column("state", String(8), nullable=False),
    Column("kept_record_id", String(RECORD_ID_LEN), nullable=True),
    Column("note", Text, nullable=False),
    Column("resolved_by", String(NODE_ID_LEN), nullable=True),
    Column("resolved_at_ms", BigInteger, nullable=True),
    CheckConstraint("state IN ('open', 'resolved', 'agreed', 'revoked')", name="state"),
    Index(None, "fact_hash"),
    Index(None, "state", "id"),
)

CASE_ID_LEN = 96

# Objection cases (异议, node/lifecycle/objections.py): the current state of each case, one row per
# case, never deleted. Every step is also an ``objection_events`` row (append-only) and an audit
# event, so the objection log is kept permanently (seed 001 附件2 八(一)).
objections = Table(
    "objections",
    metadata,
    Column("case_id", String(CASE_ID_LEN), primary_key=True),  # "<record_id>@<revision the case made>"
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),  # the revision the case stored (disputed or corrected)
    Column("item", String(CODE_LEN), nullable=False),
    Column("subject_code", String(CODE_LEN), nullable=False),
    Column("applicant", String(CODE_LEN), nullable=False),  # the subject; a check: the platform node opening it
    Column("reason", Text, nullable=False),
    Column("evidence_name", String(255), nullable=False),  # '' when none
    Column("evidence_digest", LargeBinary(32), nullable=True),
    Column("evidence", LargeBinary, nullable=True),
    Column("state", String(16), nullable=False),
    Column("outcome", String(24), nullable=False),  # '' until closed
    Column("filed_on", String(10), nullable=False),  # ISO dates from here on ('' when not set)
    Column("source_due", String(10), nullable=False),
    Column("result_due", String(10), nullable=False),
    Column("closed_on", String(10), nullable=False),
    Column("withdrawn_revision", Integer, nullable=False),  # revision that withdrew it when overdue; 0
    Column("answer_revision", Integer, nullable=False),  # revision that answered it; 0
    Column("statement", Text, nullable=False),  # 申请人存疑 statement, '' when none
    Column("statement_until", String(10), nullable=False),
    Column("filed_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False, server_default="objection"),  # objection | check (信息自查)
    # The case's own limit (seed 001 附件2 三: 30 days, + at most 15 working days approved); '' for a check
    Column("limit_due", String(10), nullable=False, server_default=""),
    Column("extended_days", Integer, nullable=False, server_default="0"),
    CheckConstraint("state IN ('awaiting_source', 'overdue', 'closed')", name="state"),
    Index(None, "record_id"),
    Index(None, "state", "source_due"),
)

# Append-only log of every objection step, also for cases filed elsewhere (a source department
# logs its answer under the case id it was sent). Never updated, never deleted.
objection_events = Table(
    "objection_events",
    metadata,
    Column("id", _AutoId, primary_key=True, autoincrement=True),
    Column("case_id", String(CASE_ID_LEN), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(NODE_ID_LEN), nullable=False),
    Column("kind", String(32), nullable=False),  # filed | request_sent | corrected_at_once | answered …
    Column("state", String(16), nullable=False),  # the case's state after the step ('' if not held here)
    Column("revision", Integer, nullable=False),  # the revision the step stored, 0 if none
    Column("detail", Text, nullable=False),  # canonical JSON
    Index(None, "case_id", "id"),
)

# Credit repair requests (信用修复, node/lifecycle/repair.py): decided once, never deleted.
repair_requests = Table(
    "repair_requests",
    metadata,
    Column("case_id", String(CASE_ID_LEN), primary_key=True),
    Column("record_id", String(RECORD_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),  # the head revision the request was about
    Column("item", String(CODE_LEN), nullable=False),
    Column("subject_code", String(CODE_LEN), nullable=False),
    Column("applicant", String(CODE_LEN), nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("decision_reason", Text, nullable=False),
    Column("decided_by", String(NODE_ID_LEN), nullable=False),
    Column("repaired_revision", Integer, nullable=False),  # 0 unless approved
    Column("requested_at_ms", BigInteger, nullable=False),
    Column("decided_at_ms", BigInteger, nullable=True),
    CheckConstraint("state IN ('requested', 'approved', 'rejected')", name="state"),
    Index(None, "record_id"),
    Index(None, "state"),
)


# Small facts about the store itself: owner node id, catalogue version, hash-chain heads.
meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)
