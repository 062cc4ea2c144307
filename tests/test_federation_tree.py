"""The whole tree over grpc (mTLS): department → district → city → province, two cities.

Real processes (``credit-node start``), one development CA, SQLite stores. A department imports
one file of each of five catalogue items, each with its own routing rule, and every level is
checked against that rule: what arrived, what did not, the chains, the route, a revision from the
province, reconciliation, status, and a district whose parent is down while the rest runs.
Synchronisation is by polling stores and Admin.Status with deadlines, as in ``test_federation``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.catalog import load_catalog
from node.demo.layout import FederationLayout, NodePlan
from node.demo.local import LocalFederation
from node.demo.processes import wait_until
from node.provisioning import bundled_catalog
from node.routing import LEVEL_RANK, level_of
from node.sampledata import penalty_rows, unit_uscc, write_csv
from tests.federation_support import assert_settled, start_federation

pytestmark = pytest.mark.slow

PROVINCE, HANGZHOU, NINGBO = "province:330000", "city:330100", "city:330200"
WEST, EAST, HAISHU = "district:330102", "district:330106", "district:330203"
DEPT_WEST, DEPT_EAST, DEPT_HAISHU = "dept:330102:scjgj", "dept:330106:scjgj", "dept:330203:scjgj"
PATH_WEST = (DEPT_WEST, WEST, HANGZHOU, PROVINCE)
SOURCE = "杭州市上城区市场监督管理局"
# item → its rule, as the bundled catalogue says (checked below, so a catalogue change shows here)
RULES = {"admin_penalty": ("penalty-to-province", "province"),
         "admin_license": ("license-to-province", "province"),
         "admin_inspection": ("inspection-to-city", "city"),  # class C: internal, stops at the city
         "serious_dishonest_list": ("dishonest-list-to-national", "national"),  # a list item
         "professional_qualification": ("qualification-to-province", "province")}  # natural persons


def tree() -> FederationLayout:
    return FederationLayout((
        NodePlan(PROVINCE), NodePlan(HANGZHOU, PROVINCE), NodePlan(NINGBO, PROVINCE),
        NodePlan(WEST, HANGZHOU), NodePlan(EAST, HANGZHOU), NodePlan(HAISHU, NINGBO),
        NodePlan(DEPT_WEST, WEST, unit_uscc("330102", "MB000001")),
        NodePlan(DEPT_EAST, EAST, unit_uscc("330106", "MB000002")),
        NodePlan(DEPT_HAISHU, HAISHU, unit_uscc("330203", "MB000003"))))


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    yield from start_federation(tmp_path_factory.mktemp("tree"), tree(), "grpc")


def item_rows(unit: str, division: str, seed: int) -> dict[str, list[dict[str, str]]]:
    pen = list(penalty_rows(60, source_unit=unit, division=division, seed=seed))
    orgs = [r for r in pen if r["CF_XDR_LB"] == "法人及非法人组织"][:2]
    people = [r for r in pen if r["CF_XDR_LB"] == "自然人"][:2]
    assert len(orgs) == 2 and len(people) == 2
    return {
        "admin_penalty": pen[:4],
        "admin_inspection": [{
            "JC_XDR_MC": r["CF_XDR_MC"], "JC_XDR_LB": "法人及非法人组织", "JC_XDR_SHXYM": r["CF_XDR_SHXYM"],
            "JC_JCBH": f"检{seed}-{i}", "JC_JCSX": "日常检查", "JC_JCRQ": "2026-03-01", "JC_JCJG": "未发现问题",
            "JC_JCBM": SOURCE, "JC_JCBMDM": unit, "JC_SJLY": SOURCE, "JC_SJLYDM": unit}
            for i, r in enumerate(orgs)],
        "admin_license": [{
            "XK_XDR_MC": r["CF_XDR_MC"], "XK_XDR_LB": "法人及非法人组织", "XK_XDR_SHXYM": r["CF_XDR_SHXYM"],
            "XK_FRDB": r["CF_FRDB"], "XK_FR_ZJLX": r.get("CF_FR_ZJLX", ""), "XK_FR_ZJHM": r.get("CF_FR_ZJHM", ""),
            "XK_XKWS": "准予行政许可决定书", "XK_WSH": f"许{seed}-{i}", "XK_XKLB": "普通", "XK_NR": "食品经营",
            "XK_JDRQ": "2026-02-01", "XK_YXQZ": "2026-02-01", "XK_YXQZI": "2031-01-31", "XK_XKJG": SOURCE,
            "XK_XKJGDM": unit, "XK_ZT": "1", "XK_LYDW": SOURCE, "XK_LYDWDM": unit} for i, r in enumerate(orgs)],
        "serious_dishonest_list": [{
            "SX_ZTMC": r["CF_XDR_MC"], "SX_ZTLB": "法人及非法人组织", "SX_SHXYM": r["CF_XDR_SHXYM"],
            "SX_FRDB": r.get("CF_FRDB") or "王伟", "SX_MDLX": "严重违法失信主体", "SX_SXXW": "严重违法行为",
            "SX_LRYJ": "认定依据", "SX_RDWSH": f"认{seed}-{i}", "SX_RDJG": SOURCE, "SX_RDJGDM": unit,
            "SX_LRRQ": "2026-03-01", "SX_SJLY": SOURCE, "SX_SJLYDM": unit} for i, r in enumerate(orgs)],
        "professional_qualification": [{
            "ZG_XM": r["CF_XDR_MC"], "ZG_ZJLX": "身份证", "ZG_ZJHM": r["CF_XDR_ZJHM"], "ZG_ZGLB": "职业资格",
            "ZG_ZGMC": "执业药师", "ZG_ZSBH": f"证{seed}-{i}", "ZG_QDRQ": "2025-01-01", "ZG_ZT": "有效",
            "ZG_FZJG": SOURCE, "ZG_SJLY": SOURCE, "ZG_SJLYDM": unit} for i, r in enumerate(people)],
    }


def import_items(fed: LocalFederation, dept: str, seed: int) -> int:
    plan = fed.layout.node(dept)
    catalog = load_catalog(bundled_catalog())
    imported = 0
    for code, rows in item_rows(plan.unit, dept.split(":")[1], seed).items():
        path = fed.base / f"{plan.dirname}-{code}-{seed}.csv"
        write_csv(path, catalog.item(code), iter(rows))
        result = fed.import_file(dept, path, code)
        assert (result["accepted"], result["rejected"]) == (len(rows), 0), (code, result)
        imported += len(rows)
    return imported


def reaches(node_id: str, item: str) -> bool:
    return LEVEL_RANK[level_of(node_id)] <= LEVEL_RANK[RULES[item][1]]


def items_at(fed: LocalFederation, node_id: str) -> dict[str, int]:
    return {item: n for item in RULES if (n := fed.count(node_id, item))}


@pytest.fixture(scope="module")
def imported(fed: LocalFederation) -> int:
    catalog = load_catalog(bundled_catalog())
    assert {code: (catalog.item(code).routing.rule_id, catalog.item(code).routing.up_to) for code in RULES} == RULES
    n = import_items(fed, DEPT_WEST, seed=11)
    fed.wait_drained()
    return n


def test_each_item_reaches_exactly_the_levels_its_rule_names(fed: LocalFederation, imported: int) -> None:
    held_at_dept = items_at(fed, DEPT_WEST)
    assert sum(held_at_dept.values()) == imported
    for node_id in PATH_WEST:
        assert items_at(fed, node_id) == {i: n for i, n in held_at_dept.items() if reaches(node_id, i)}, node_id
    assert "admin_inspection" not in items_at(fed, PROVINCE)
    for other in (EAST, DEPT_EAST, NINGBO, HAISHU, DEPT_HAISHU):
        assert items_at(fed, other) == {}, other  # nothing crosses into another branch
    assert_settled(fed, {k for k in fed.keys(DEPT_WEST)
                         if reaches(PROVINCE, next(i for i in RULES if k[0].startswith(i + "-")))})


def test_route_explain_at_the_province_names_every_hop_and_its_rule(fed: LocalFederation, imported: int) -> None:
    records = sorted(fed.keys(PROVINCE))
    assert records
    for record_id, revision in records:
        route = fed.cli_json(PROVINCE, "route", "explain", record_id, "--revision", str(revision))
        rule, up_to = RULES[route["item"]]
        assert route["verified"] and route["origin"] == DEPT_WEST and route["onward"] == []
        assert [(h["kind"], h["signer"], h["to"], h["rule_id"]) for h in route["hops"]] == [
            ("origin", DEPT_WEST, "", ""), ("hop", DEPT_WEST, WEST, rule), ("hop", WEST, HANGZHOU, rule),
            ("hop", HANGZHOU, PROVINCE, rule)]
        expected_stop = "has no parent" if up_to == "national" else f"{PROVINCE} forwards it no further"
        assert expected_stop in route["stops_here"], route["stops_here"]


def test_a_revision_made_at_the_province_comes_down_to_its_source_only(fed: LocalFederation,
                                                                        imported: int) -> None:
    record_id = sorted(k[0] for k in fed.keys(PROVINCE) if k[0].startswith("admin_license-"))[0]
    done = fed.cli_json(PROVINCE, "downward", "revise", record_id, "--status", "revoked", "--reason", "许可已撤销")
    assert (done["revision"], done["to"]) == (2, [HANGZHOU])
    wait_until(lambda: (record_id, 2) in fed.keys(DEPT_WEST), 120, what="revision 2 at the department")
    fed.wait_drained()
    holding = {n for n in fed.nodes if (record_id, 2) in fed.keys(n)}
    assert holding == set(PATH_WEST)
    route = fed.cli_json(DEPT_WEST, "route", "explain", record_id)
    assert [(h["signer"], h["to"], h["rule_id"]) for h in route["hops"]] == [
        (PROVINCE, "", ""), (PROVINCE, HANGZHOU, "down-to-source"), (HANGZHOU, WEST, "down-to-source"),
        (WEST, DEPT_WEST, "down-to-source")]
    for node_id in PATH_WEST:
        assert fed.cli_json(node_id, "verify")["ok"], node_id


def test_reconcile_with_the_parent_finds_nothing_missing_at_any_level(fed: LocalFederation, imported: int) -> None:
    for node_id in (DEPT_WEST, WEST, HANGZHOU, NINGBO, HAISHU, DEPT_HAISHU):
        report = fed.cli_json(node_id, "reconcile", "--with", "parent")
        assert (report["in_sync"], report["missing"], report["differing"]) == (True, 0, []), (node_id, report)


def status(fed: LocalFederation, node_id: str) -> dict[str, object]:
    assert fed.provisioned is not None
    data: dict[str, object] = fed.cli_json(node_id, "status", "--target", fed.nodes[node_id].address,
                                           "--identity", str(fed.provisioned.dir(node_id) / "identity"),
                                           "--server-name", "localhost")
    return data


def test_status_shows_each_nodes_parent_and_children(fed: LocalFederation, imported: int) -> None:
    for plan in fed.layout.nodes:
        expected = {(c.id, "child") for c in fed.layout.children(plan.id)}
        expected |= {(plan.parent, "parent")} if plan.parent else set()
        got = status(fed, plan.id)
        assert got["level"] == plan.level
        assert {(p["node_id"], p["relation"]) for p in got["peers"]} == expected, plan.id  # type: ignore[attr-defined]


def test_a_district_whose_parent_is_down_keeps_its_records_while_the_rest_runs(fed: LocalFederation,
                                                                              imported: int) -> None:
    before = fed.keys(PROVINCE)
    fed.nodes[NINGBO].stop()
    try:
        n = import_items(fed, DEPT_HAISHU, seed=21)
        wait_until(lambda: fed.count(HAISHU) == n, 120, what=f"{n} records at {HAISHU}")
        wait_until(lambda: fed.pending(HAISHU) == n, 120, what=f"{n} deliveries waiting at {HAISHU}")
        more = import_items(fed, DEPT_WEST, seed=12)  # the other city's branch goes on meanwhile
        wait_until(lambda: fed.keys(DEPT_WEST) <= fed.keys(HANGZHOU), 120,
                   what=f"the {more} new records of {DEPT_WEST} at {HANGZHOU}")
        assert fed.dead_letters(HAISHU) == 0
        assert not any(k[0] in {r for r, _ in fed.keys(DEPT_HAISHU)} for k in fed.keys(PROVINCE) - before)
    finally:
        fed.nodes[NINGBO].start()
    fed.wait_drained()
    haishu = fed.keys(DEPT_HAISHU)
    assert {k for k in haishu if not k[0].startswith("admin_inspection-")} <= fed.keys(PROVINCE)
    assert {k for k in haishu if k[0].startswith("admin_inspection-")} <= fed.keys(NINGBO)
    assert not {k for k in haishu if k[0].startswith("admin_inspection-")} & fed.keys(PROVINCE)
    for node_id in fed.nodes:
        assert fed.dead_letters(node_id) == 0, node_id
        assert fed.cli_json(node_id, "verify")["ok"], node_id
