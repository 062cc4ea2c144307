"""The day a record of basic information ended, as its disclosure period counts it.

基本信息公开发布期限截至终止之日起满3年 (seed 003 篇1 第二十四条(一)): a licence reported 无效, a
certificate reported 注销 …, ended on the day its source first reported it so (the catalogue's
``ended_field``, docs/catalogue.md). Every later revision carries the same fields with its own
``reported_at``: an objection's mark and answer, a repair, the source correcting another field. The
head's date alone would move the end, and with it the 3 years, at each of them; so the day is the
report day of the earliest revision of the run, up to the head, that still says the record ended.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select

from node import access
from node.catalog import Item
from node.records import decode_body, pb
from node.store._sql import translated
from node.store.tables import record_revisions

__all__ = ["ended_reported_on"]


def ended_reported_on(engine: Engine, item: Item, record_id: str, revision: int,
                      body: pb.RecordBody) -> dt.date | None:
    """``reported_on`` for ``window``/``window_state`` of the revision ``revision`` with ``body``."""
    rule = item.disclosure
    day = access.reported_day(body.reported_at_ms)
    if not rule.ended_field or revision <= 1 or not _ended(item, body):
        return day  # nothing ended, or the first report: its own day
    r = record_revisions.c
    stmt = (select(r.body).where(r.record_id == record_id, r.revision < revision).order_by(r.revision.desc()))
    with translated("reading a record's history"), engine.connect() as conn:
        for (earlier,) in conn.execute(stmt):
            older = decode_body(bytes(earlier))
            if not _ended(item, older):
                break
            day = access.reported_day(older.reported_at_ms) or day
    return day


def _ended(item: Item, body: pb.RecordBody) -> bool:
    rule = item.disclosure
    return any(f.name == rule.ended_field and f.value in rule.ended_values for f in body.fields)
