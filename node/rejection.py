"""A refused source row, as it is fed back to its source unit (the value; ``node.store.rejections`` keeps them).

Its own module, free of the store, because the prepare worker makes these by the thousand and
should not have to load SQLAlchemy to do so.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RejectionRow", "row_key"]


@dataclass(frozen=True)
class RejectionRow:
    """One problem with one source row (a record may have several)."""

    batch_id: str
    source: str  # file name or sender node id
    source_unit: str
    item: str
    row: int  # row in the source file, 0 if none
    record_key: str  # the item's natural key, '' if it could not be read
    field: str
    code: str
    message: str
    created_at_ms: int = 0  # 0: the time of storing


def row_key(source: str, row: int) -> str:
    """The key of a refused row whose natural key could not be read: its place in its source.

    A later report of the same row of the same file (or the same primary key of the same table)
    supersedes or, when accepted, closes it.
    """
    return f"row:{row}@{source}"[:255]
