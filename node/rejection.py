"""A refused source row, as it is fed back to its source unit (the value; ``node.store.rejections`` keeps them).

Its own module, free of the store, because the prepare worker makes these by the thousand and
should not have to load SQLAlchemy to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.identifiers import looks_like_id_number, mask_id_number, shown_subject_code

if TYPE_CHECKING:
    from node.catalog_model import Item

__all__ = ["RejectionRow", "row_key", "shown_record_key"]


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


def shown_record_key(key: str, item: Item | None) -> str:
    """A stored ``record_key`` as lists show it: its parts joined by `` / ``, a person's ID number
    in it masked (the key keeps it whole, to match the corrected report).

    The subject code part is masked unless it is a USCC (whose subject kind is not stored with the
    refusal); an ``id_number`` field's part always; of an item the catalogue no longer has, every
    part that reads as an ID number.
    """
    if key.startswith("row:"):
        return key
    parts = key.split("\x1f")
    if item is None:
        return " / ".join(mask_id_number(p) if looks_like_id_number(p) else p for p in parts)
    for i, part in enumerate(parts):
        name = item.key_fields[i] if i < len(item.key_fields) else ""
        if name == "@subject_code":
            parts[i] = shown_subject_code(part) if part else part
        elif part and item.has_field(name) and item.field(name).type == "id_number":
            parts[i] = mask_id_number(part)
    return " / ".join(parts)
