"""Disclosure windows (pure) and the archive sweep on real stores, small and large (≥ 100k records)."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select

from node import access
from node.catalog import Catalog
from node.identity import LoadedIdentity
from node.integrity import verify_store
from node.lifecycle.disclosure import Sweep, add_months, latest_closable_decision, window
from node.lifecycle.measures import measures_for
from node.records import body_digest, content_digest, decode_body, make_record_id, pb
from node.signing import Signer
from node.store import RecordRow
from node.store.tables import outbox, record_heads
from tests.lifecycle.kit import CITY, DEPT, DISTRICT, UNIT, Clock, audit_rows, carry_up, make_kit

D = dt.date


def test_penalty_window_by_severity(catalog: Catalog) -> None:
    item = catalog.item("admin_penalty")
    decided = "2024-01-31"
    # Periods count from the day after the decision and include the corresponding day (民法典
    # 第二百零一、二百零二条): the window's end is the first day after them.
    assert window(item, {"CF_SXCD": "严重"}, decided) == (D(2024, 1, 31), D(2027, 2, 1), D(2025, 2, 1))
    assert window(item, {}, decided) == (D(2024, 1, 31), D(2025, 2, 1), D(2024, 5, 1))  # ordinary
    assert window(item, {"CF_SXCD": "轻微"}, decided) == (D(2024, 1, 31), D(2024, 5, 1), D(2024, 2, 1))  # not published
    # 公示截止期 set by the source ends it earlier (inclusive): the next day is the first one withheld.
    assert window(item, {"CF_SXCD": "严重", "CF_GSJZQ": "2024-06-30"}, decided).end == D(2024, 7, 1)


def test_a_minor_penalty_leaves_government_sharing_after_its_period(catalog: Catalog) -> None:
    """轻微 is never published, but not shared for ever: 监管信息最长不得超过三年 (seed 003 篇2
    第二十四条(二)), 不良记录披露期限为5年 (篇5 第二十条, 披露 including sharing, 第十九条); the shipped
    catalogue keeps it 3 months (DOMAIN §4: minor ≤ 3 months), then it is archived."""
    item = catalog.item("admin_penalty")
    minor = {"CF_SXCD": "轻微"}
    assert window(item, minor, "2026-01-10") == (D(2026, 1, 10), D(2026, 4, 11), D(2026, 1, 11))
    assert access.window_state(item, minor, "2026-01-10", D(2026, 4, 10)) == "not_public"  # its last day
    assert access.window_state(item, minor, "2026-01-10", D(2026, 4, 11)) == "closed"
    assert access.window_state(item, minor, "2022-01-10", D(2026, 12, 7)) == "closed"
    bound = latest_closable_decision(item, D(2026, 4, 11))
    assert bound is not None and bound >= D(2026, 1, 10)


def test_a_list_entry_is_archived_from_its_removal_day(catalog: Catalog) -> None:
    """移出日期 is the first day off the list, not the last on it: the window ends on it, and the
    sweep's bound reaches an entry removed today."""
    black = catalog.item("serious_dishonest_list")
    removed = {"SX_YXQZ": "2027-05-01", "SX_YCRQ": "2026-03-02", "SX_YCYY": "信用修复"}
    assert window(black, removed, "2026-03-02").end == D(2026, 3, 2)  # listed and taken off the same day
    bound = latest_closable_decision(black, D(2026, 3, 2))
    assert bound is not None and bound >= D(2026, 3, 2)
    abnormal = catalog.item("abnormal_operation")
    assert window(abnormal, {"YC_YCRQ": "2025-06-01", "YC_YCYY": "已补报年报"}, "2025-01-01").end == D(2025, 6, 1)


def test_a_red_list_entry_without_validity_is_disclosed_3_years(catalog: Catalog) -> None:
    """表彰奖励 is 提示信息 (seed 003 篇1 第十五条(一)): 存在有效期的…与有效期一致；不存在有效期的
    公开发布期限为3年 (第二十四条(二)). An entry with a validity keeps it, 长期 included; one without
    ends 3 years after its 认定日期, and its incentive measures with it."""
    red = catalog.item("red_list")
    assert window(red, {}, "2023-06-15") == (D(2023, 6, 15), D(2026, 6, 16), None)
    assert access.window_state(red, {}, "2023-06-15", D(2026, 6, 15)) == "open"  # its last day
    assert access.window_state(red, {}, "2023-06-15", D(2026, 6, 16)) == "closed"
    assert window(red, {"HM_YXQZ": "2028-12-31"}, "2023-06-15").end == D(2029, 1, 1)  # 与有效期一致
    assert window(red, {"HM_YXQZ": "2099-12-31"}, "2023-06-15").end == D(2100, 1, 1)  # 长期
    bound = latest_closable_decision(red, D(2026, 6, 16))
    assert bound is not None and bound >= D(2023, 6, 15)
    assert measures_for(red, "active", access.window_state(red, {}, "2023-06-15", D(2026, 6, 15)))
    assert measures_for(red, "active", access.window_state(red, {}, "2023-06-15", D(2026, 6, 16))) == ()


def test_other_rule_kinds(catalog: Catalog) -> None:
    reg = catalog.item("registration")  # while valid + 3 years
    assert window(reg, {"DJ_ZXRQ": "2023-05-10"}, "2001-01-01").end == D(2026, 5, 11)
    assert window(reg, {}, "2001-01-01").end is None
    listed = catalog.item("serious_dishonest_list")  # while listed, at most 5 years
    assert window(listed, {"SX_YXQZ": "2026-12-31"}, "2025-01-01").end == D(2027, 1, 1)
    assert window(listed, {}, "2025-01-01") == (D(2025, 1, 1), D(2030, 1, 2), None)
    assert window(listed, {"SX_YXQZ": "2099-12-31"}, "2025-01-01").end == D(2030, 1, 2)
    inspection = catalog.item("admin_inspection")  # 3 years from the decision: 2027-02-28 is the last day
    assert window(inspection, {}, "2024-02-29").end == D(2027, 3, 1)
    assert add_months(D(2024, 1, 31), 1) == D(2024, 2, 29)


@pytest.mark.parametrize(("code", "fields", "decided", "last_day", "min_repair"), [
    # 民法典 第二百零二条: the corresponding day of the last month is the last day; without one, that
    # month's last day. Decided on the leap day 2028-02-29, a year ends on 2029-02-28.
    ("admin_penalty", {}, "2028-02-29", D(2029, 2, 28), D(2028, 5, 30)),
    ("admin_penalty", {"CF_SXCD": "严重"}, "2028-02-29", D(2031, 2, 28), D(2029, 3, 1)),
    ("admin_penalty", {"CF_SXCD": "轻微"}, "2027-11-30", D(2028, 2, 29), D(2027, 12, 1)),  # shared 3 months
    ("admin_penalty", {}, "2027-02-28", D(2028, 2, 28), D(2027, 5, 29)),  # the 28th has its day
    ("admin_penalty", {"CF_SXCD": "严重"}, "2026-08-31", D(2029, 8, 31), D(2027, 9, 1)),
    ("red_list", {}, "2028-02-29", D(2031, 2, 28), None),  # no validity: 3 years (篇1 第二十四条(二))
    ("serious_dishonest_list", {}, "2028-02-29", D(2033, 2, 28), None),  # at most 5 years (篇5 第二十条)
    ("abnormal_operation", {}, "2026-02-28", D(2029, 2, 28), None),  # at most 3 years (篇2 第二十四条(二))
    ("admin_inspection", {}, "2028-02-29", D(2031, 2, 28), None),
])
def test_periods_in_months_end_on_the_corresponding_day_or_the_month_end(
        catalog: Catalog, code: str, fields: dict[str, str], decided: str, last_day: dt.date,
        min_repair: dt.date | None) -> None:
    item = catalog.item(code)
    w = window(item, fields, decided)
    assert (w.end, w.min_repair) == (last_day + dt.timedelta(days=1), min_repair)
    assert access.window_state(item, fields, decided, last_day) != "closed"
    assert access.window_state(item, fields, decided, last_day + dt.timedelta(days=1)) == "closed"


def _random_fields(item_code: str, rng: random.Random, decided: dt.date) -> dict[str, str]:
    later = (decided + dt.timedelta(days=rng.randrange(0, 2000))).isoformat()
    if item_code == "admin_penalty":
        out = {"CF_SXCD": rng.choice(["轻微", "一般", "严重", ""])}
        if rng.random() < 0.3:
            out["CF_GSJZQ"] = later
        return out
    field = {"registration": "DJ_ZXRQ", "serious_dishonest_list": "SX_YXQZ", "red_list": "HM_YXQZ",
             "admin_license": "XK_YXQZI", "abnormal_operation": "YC_YCRQ",
             "professional_qualification": "ZG_YXQZ"}.get(item_code)
    out = {field: later} if field and rng.random() < 0.7 else {}
    if item_code == "serious_dishonest_list" and rng.random() < 0.4:  # taken off, perhaps before the planned end
        out["SX_YCRQ"] = (decided + dt.timedelta(days=rng.randrange(0, 2000))).isoformat()
    return out


def test_window_agrees_with_the_access_policy_and_the_sweep_bound(catalog: Catalog) -> None:
    """The read path (access.window_state) and the archive agree day by day; the SQL bound misses nothing."""
    rng = random.Random(7)
    for item in catalog.items.values():
        for _ in range(400):
            decided = D(2019, 1, 1) + dt.timedelta(days=rng.randrange(0, 2500))
            fields = _random_fields(item.code, rng, decided)
            today = decided + dt.timedelta(days=rng.randrange(0, 2500))
            w = window(item, fields, decided.isoformat())
            state = access.window_state(item, fields, decided.isoformat(), today)
            closed = w.end is not None and today >= w.end
            assert (state == "closed") == closed, (item.code, fields, decided, today, w)
            bound = latest_closable_decision(item, today)
            if closed:
                assert bound is not None and decided <= bound, (item.code, fields, decided, today, bound)


def _outbox_to(kit_store: object, destination: str, engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)
                                .where(outbox.c.destination == destination)).scalar_one())


def test_sweep_archives_what_is_past_its_window_once(engine: Engine, ids: dict[str, LoadedIdentity],
                                                     catalog: Catalog, clock: Clock) -> None:
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    record_ids = kit.import_penalties(60)  # decided 2024-01 … 2025-08, ordinary: 12 months
    today = clock.today()
    due = {rid for rid in record_ids if add_months(D.fromisoformat(kit.head(rid).decision_date), 12) < today}
    assert 0 < len(due) < len(record_ids)
    sweep = Sweep(store=kit.store, catalog=catalog, reviser=kit.reviser, node_id=DEPT, today=clock.today)
    audit_before, outbox_before = audit_rows(kit.store), _outbox_to(kit.store, DISTRICT, engine)

    dry = sweep.run(dry_run=True)
    assert {r for r, _v, _i in dry.moved} == due
    assert audit_rows(kit.store) == audit_before  # a dry run stores nothing

    report = sweep.run()
    assert {r for r, _v, _i in report.moved} == due and report.by_item == {"admin_penalty": len(due)}
    for rid in record_ids:
        head = kit.head(rid)
        assert head.status == ("expired" if rid in due else "active")
        assert head.revision == (2 if rid in due else 1)
        assert len(kit.store.records.history(rid)) == head.revision  # the old revision is kept
    assert _outbox_to(kit.store, DISTRICT, engine) == outbox_before + len(due)  # the revisions travel up
    assert audit_rows(kit.store) == audit_before + 1

    again = sweep.run()
    assert again.moved == [] and audit_rows(kit.store) == audit_before + 1  # idempotent
    assert verify_store(kit.store, kit.verifier).ok

    expired = kit.head(sorted(due)[0])
    facts = access.RecordFacts(expired.item, "A", expired.subject_code, expired.subject_kind, expired.status)
    assert not access.decide(access.Caller("public:x", "public"), facts, access.Policy()).visible
    judicial = access.decide(access.Caller("judicial:c", "judicial", "函"), facts, access.Policy())
    assert judicial.visible and access.MARK_ARCHIVED in judicial.marks


def test_sweep_scope_origin_leaves_records_of_other_nodes(engine: Engine, more_engines: Callable[[], Engine],
                                                          ids: dict[str, LoadedIdentity], catalog: Catalog,
                                                          clock: Clock) -> None:
    dept = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    district = make_kit(more_engines(), DISTRICT, parent=CITY, children=[DEPT], ids=ids, catalog=catalog,
                        clock=clock)
    dept.import_penalties(20)
    assert carry_up(dept, district) == 20
    own = Sweep(store=district.store, catalog=catalog, reviser=district.reviser, node_id=DISTRICT,
                today=clock.today)
    assert own.run().moved == []
    every = Sweep(store=district.store, catalog=catalog, reviser=district.reviser, node_id=DISTRICT,
                  scope="all", today=clock.today)
    assert every.run().moved
    moved_at_dept = Sweep(store=dept.store, catalog=catalog, reviser=dept.reviser, node_id=DEPT,
                          today=clock.today).run()
    assert moved_at_dept.moved


def _bulk_rows(signer: Signer, n: int, start: int, rng: random.Random, today: dt.date) -> list[RecordRow]:
    """``n`` signed 行政处罚 revisions decided over the last five years, made straight for the store."""
    template = pb.RecordBody(revision=1, item="admin_penalty", catalog_version="2026.11",
                             subject_code="91330102MA0000000X", subject_kind="legal_person",
                             source_unit=UNIT, origin_node=DEPT, reported_at_ms=1, status="active")
    made: list[tuple[str, str, bytes, bytes]] = []
    for i in range(start, start + n):
        decided = (today - dt.timedelta(days=rng.randrange(0, 5 * 365))).isoformat()
        fields = (("CF_WSH", f"W{i}"), ("CF_JDRQ", decided), ("CF_SXCD", rng.choice(("轻微", "一般", "严重"))))
        rid = make_record_id("admin_penalty", UNIT, f"W{i}\x1f91330102MA0000000X")
        body = pb.RecordBody()
        body.CopyFrom(template)
        body.record_id, body.subject_name, body.decision_date = rid, f"公司{i}", decided
        for k, v in fields:
            body.fields.add(name=k, value=v)
        made.append((rid, decided, body.SerializeToString(), content_digest("admin_penalty", UNIT, fields)))
    sigs = signer.sign_origin([b for _r, _d, b, _c in made], now_ms=1_770_000_000_000)
    return [RecordRow(rid, 1, "admin_penalty", "91330102MA0000000X", "legal_person", UNIT, DEPT, "active",
                      decided, body, body_digest(body), digest,
                      pb.SignedRecord(body=body, chain=[sig]).SerializeToString(), 1, "", "2026.11")
            for (rid, decided, body, digest), sig in zip(made, sigs, strict=True)]


LARGE = 100_000


def test_sweep_on_a_large_store(engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog,
                                clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    """≥ 100k records over five years of decisions: one sweep archives exactly those past their window."""
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    rng = random.Random(3)
    today = clock.today()
    t0 = time.perf_counter()
    expected = 0
    item = catalog.item("admin_penalty")
    for start in range(0, LARGE, 10_000):
        rows = _bulk_rows(kit.signer, 10_000, start, rng, today)
        kit.store.records.append(rows)
        expected += sum(1 for r in rows if (w := window(item, {"CF_SXCD": _sev(r)}, r.decision_date)).end
                        and w.end <= today)
    built = time.perf_counter() - t0
    sweep = Sweep(store=kit.store, catalog=catalog, reviser=kit.reviser, node_id=DEPT, today=clock.today)
    t1 = time.perf_counter()
    report = sweep.run()
    took = time.perf_counter() - t1
    assert len(report.moved) == expected
    t2 = time.perf_counter()
    again = sweep.run()
    took_again = time.perf_counter() - t2
    assert again.moved == []
    with engine.connect() as conn:
        expired = conn.execute(select(func.count()).select_from(record_heads)
                               .where(record_heads.c.status == "expired")).scalar_one()
    assert expired == expected
    with capsys.disabled():
        print(f"\n[{engine.dialect.name}] built {LARGE} records in {built:.1f}s; sweep examined "
              f"{report.examined}, archived {len(report.moved)} in {took:.1f}s; second sweep examined "
              f"{again.examined} in {took_again:.1f}s")


def _sev(row: RecordRow) -> str:
    return next(f.value for f in decode_body(row.body).fields if f.name == "CF_SXCD")


@pytest.mark.parametrize("code", ["admin_license", "red_list", "serious_dishonest_list", "professional_qualification"])
def test_an_end_date_stored_past_2099_reads_as_no_end_and_breaks_nothing(catalog: Catalog, code: str) -> None:
    # Stored before validation read such dates as 长期: the period arithmetic overflowed year 9999,
    # and the sweep and every lookup of the subject failed.
    item = catalog.item(code)
    end_field = item.disclosure.end_field
    assert end_field
    fields = {end_field: "9999-12-31"}
    w = window(item, fields, "2024-03-01")
    assert access.window_state(item, fields, "2024-03-01", D(2026, 1, 1)) == "open"
    assert w.end is None or w.end < D(2100, 1, 1)  # a list's cap from listing still applies


@pytest.mark.parametrize(("code", "ended"), [("admin_license", {"XK_ZT": "2"}), ("professional_qualification",
                                                                             {"ZG_ZT": "注销"})])
def test_basic_information_reported_ended_is_disclosed_three_years_from_that_report(catalog: Catalog, code: str,
                                                                                    ended: dict[str, str]) -> None:
    # seed 003 篇1 第二十四条: 基本信息公开发布期限截至终止之日起满3年. A licence reported 无效 (its
    # 有效期至 still 长期) ended on the day its source said so; until then it is disclosed.
    item = catalog.item(code)
    end_field = item.disclosure.end_field
    fields = {end_field: "2099-12-31", **ended}
    reported = D(2022, 1, 10)
    w = window(item, fields, "2020-05-06", reported)
    assert w.end == D(2025, 1, 11)
    for day, state in ((D(2025, 1, 10), "open"), (D(2025, 1, 11), "closed")):
        assert access.window_state(item, fields, "2020-05-06", day, reported) == state
    # Still valid: 长期 stays open; and a report date later than 有效期至 does not extend it.
    still = {end_field: "2099-12-31"}
    assert access.window_state(item, still, "2020-05-06", D(2030, 1, 1), reported) == "open"
    early = {end_field: "2021-06-30", **ended}
    assert window(item, early, "2020-05-06", reported).end == D(2024, 7, 1)


def test_sweep_archives_minor_penalties_past_their_sharing_period(
        engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> None:
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    record_ids = kit.import_penalties(12, CF_SXCD="轻微")  # decided 2024-01 … 2025-08: all past 3 months
    report = Sweep(store=kit.store, catalog=catalog, reviser=kit.reviser, node_id=DEPT, today=clock.today).run()
    assert {r for r, _v, _i in report.moved} == set(record_ids)
    assert {kit.head(rid).status for rid in record_ids} == {"expired"}
