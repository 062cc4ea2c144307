"""The day basic information ended (seed 003 篇1 第二十四条(一): 截至终止之日起满3年) is the day its
source first reported it ended, whatever revisions came after: an objection's mark and answer, a
repair, a correction of another field. Before, each later revision moved the 3 years along."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine

from node import access
from node.catalog import Catalog
from node.disclosure import Disclosure, StoredRecord
from node.errors import ConflictError
from node.identity import LoadedIdentity
from node.lifecycle.disclosure import Sweep
from node.records import decode_body
from node.sampledata import unit_uscc
from node.tabular import SourceRow
from tests.lifecycle.kit import CITY, DEPT, DISTRICT, UNIT, Clock, Kit, make_kit, objection_service

D = dt.date
COMPANY = unit_uscc("330102", "MA2K3L4P")


def _licence(**overrides: str) -> dict[str, str]:
    return {"XK_XDR_MC": "杭州某某有限公司", "XK_XDR_LB": "法人及非法人组织", "XK_XDR_SHXYM": COMPANY,
            "XK_FRDB": "王伟", "XK_XKWS": "食品经营许可决定书", "XK_WSH": "杭上市监许〔2020〕1号", "XK_XKLB": "普通",
            "XK_NR": "食品经营", "XK_JDRQ": "2020-05-06", "XK_YXQZ": "2020-05-06", "XK_YXQZI": "长期",
            "XK_XKJG": "上城区市场监管局", "XK_XKJGDM": UNIT, "XK_ZT": "无效", "XK_LYDW": "上城区市场监管局",
            "XK_LYDWDM": UNIT, **overrides}


@pytest.fixture
def district(engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> Kit:
    return make_kit(engine, DISTRICT, parent=CITY, children=[DEPT], ids=ids, catalog=catalog, clock=clock)


def _report(kit: Kit, row: dict[str, str], batch: str) -> str:
    (out,) = kit.ingest.ingest_batch(kit.catalog.item("admin_license"), [SourceRow(2, row)], source="x.csv",
                                     batch_id=batch)
    assert out.outcome != "rejected", out.problems
    return out.record_id


def _public_sees(kit: Kit, rid: str, today: dt.date) -> bool:
    head = kit.head(rid)
    stored = StoredRecord(head.record_id, head.revision, head.item, head.subject_code, head.subject_kind,
                          head.status, head.decision_date, head.body, head.signed)
    disclosure = Disclosure(kit.store.engine, kit.catalog, "330102", access.Policy())
    try:
        return disclosure.view(stored, access.Caller("public:x", "public"), today) is not None
    finally:
        disclosure.close()


def test_a_licence_ended_stays_ended_from_its_first_report_through_later_revisions(
        district: Kit, clock: Clock) -> None:
    # Reported 无效 on 2026-01-10: disclosed through 2029-01-10 (民法典 第二百零一、二百零二条).
    last_day, first_closed = D(2029, 1, 10), D(2029, 1, 11)
    clock.set_day(D(2026, 1, 10))
    rid = _report(district, _licence(), "ended")
    # Two years on, the subject objects and the source confirms: two revisions dated 2028.
    desk = objection_service(district)
    clock.set_day(D(2028, 12, 1))
    case = desk.file(rid, by=COMPANY, reason="许可状态有误")
    clock.set_day(D(2028, 12, 2))
    desk.answer(case.case_id, "confirm")
    # ... and the source corrects another field of the still-ended licence.
    clock.set_day(D(2028, 12, 3))
    _report(district, _licence(XK_NR="食品经营（含冷藏冷冻食品）"), "changed")
    head = district.head(rid)
    assert (head.revision, head.status) == (4, "active")
    assert access.reported_day(decode_body(head.body).reported_at_ms) == D(2028, 12, 3)

    assert _public_sees(district, rid, last_day)
    assert not _public_sees(district, rid, first_closed)
    clock.set_day(first_closed)
    with pytest.raises(ConflictError) as err:  # 在公共信用信息有效期内提出 (seed 001 附件2 一)
        desk.file(rid, by=COMPANY, reason="再次异议")
    assert err.value.code == "E_OBJECTION_NOT_DISCLOSED"
    sweep = Sweep(store=district.store, catalog=district.catalog, reviser=district.reviser, node_id=DISTRICT,
                  scope="all", today=clock.today)
    assert sweep.run(last_day, dry_run=True).moved == []
    assert [m[0] for m in sweep.run(first_closed).moved] == [rid]


def test_a_licence_reinstated_and_ended_again_counts_from_the_second_end(district: Kit, clock: Clock) -> None:
    clock.set_day(D(2026, 1, 10))
    rid = _report(district, _licence(), "ended")
    clock.set_day(D(2026, 6, 1))
    _report(district, _licence(XK_ZT="有效"), "reinstated")
    clock.set_day(D(2027, 3, 1))
    _report(district, _licence(XK_ZT="无效"), "ended-again")
    assert _public_sees(district, rid, D(2030, 3, 1))
    assert not _public_sees(district, rid, D(2030, 3, 2))
