"""List measures (联合奖惩): what a list entry means for the subject, while the entry stands.

List items (``is_list``: 严重失信主体名单, 守信红名单, 经营异常名录) carry their measures in the
catalogue (``measures``; seed 003 篇1 第二十六-二十七条, 篇2 第二十七-二十八条, 篇5 第二十五-二十七条).
A subject enters a list with the record's first revision and leaves it by a revision: its
source sets the end date or revokes it, the archive sweep expires it after that date, an
objection deletes it, a repair takes it out of public view. Each of these is a signed revision
that travels like any other, so every node stops applying the measures when the head says so.
The Query service attaches :func:`measures_for` to each hit.
"""

from __future__ import annotations

from typing import Final

from node.catalog import Item

__all__ = ["IN_FORCE", "measures_for"]

# Statuses of a list entry that stands. A ``disputed`` entry's measures are suspended while the
# objection runs (seed 001 附件2 六(一): 暂停使用); a repaired, expired, revoked or deleted one has left.
IN_FORCE: Final = ("active", "corrected", "confirmed")


def measures_for(item: Item, status: str, window: str = "open") -> tuple[str, ...]:
    """The measures that apply to a record of ``item`` with head ``status`` and disclosure
    ``window`` (``node.access.window_state``); () for non-list items and entries not in force."""
    if not item.is_list or status not in IN_FORCE or window != "open":
        return ()
    return item.measures
