"""``route explain``: why a record goes no further from the node that holds it."""

from __future__ import annotations

import pathlib

import pytest

from node.app import Node, build_node
from node.config import load_config
from node.provisioning import init_node
from node.routes import explain_route
from node.routing import Router
from node.sampledata import penalty_rows, unit_uscc
from node.tabular import SourceRow

UNIT = unit_uscc("330102", "MB000001")
DEPT = "dept:330102:scjgj"


@pytest.fixture
def dept(tmp_path: pathlib.Path):
    with build_node(load_config(init_node(tmp_path / "d", node_id=DEPT, level="department", unit=UNIT))) as node:
        rows = list(penalty_rows(1, source_unit=UNIT, seed=3))
        outcomes = node.ingest.ingest_batch(node.catalog.item("admin_penalty"), [SourceRow(2, rows[0])],
                                            source="t", batch_id="b")
        assert [o.outcome for o in outcomes] == ["accepted"]
        yield node


def explain(node: Node, router: Router) -> dict[str, object]:
    record_id = next(node.store.records.iter_revisions()).record_id
    return explain_route(store=node.store, verifier=node.verifier, catalog=node.catalog, router=router,
                         node_id=router.node_id, record_id=record_id).as_dict()


def test_a_node_without_a_parent_says_so_when_the_rule_goes_higher(dept: Node) -> None:
    # penalty-to-province: the rule reaches the province; a department standing alone (or the
    # top of a tree below the rule's level) keeps it only because it has nowhere to send it.
    route = explain(dept, Router(DEPT, None))
    assert route["stops_here"] == (f"rule penalty-to-province sends admin_penalty up to province; "
                                   f"{DEPT} has no parent, so it goes no further from here")
    assert route["onward"] == []


def test_a_node_whose_parent_is_beyond_the_rule_names_the_rule(dept: Node) -> None:
    route = explain(dept, Router("province:330000", "national:000000"))
    assert route["stops_here"] == ("rule penalty-to-province sends admin_penalty up to province; "
                                   "province:330000 forwards it no further")
