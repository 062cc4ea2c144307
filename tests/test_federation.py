"""The federation with real processes: department → district → city over grpc and over amqp (mTLS).

One federation per transport (a city, two districts, a department under each) runs for the whole
module; each test adds records and ends with the same checks (``assert_settled``): every record
at the city exactly once, every chain verified by ``credit-node verify`` at every node, no dead
letters, nothing pending. Synchronisation is by polling stores and logs with deadlines; the only
waits are outages the tests inflict on purpose.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml

from node.demo.layout import demo_plan
from node.demo.local import LocalFederation
from node.demo.processes import wait_until
from node.provisioning import bundled_catalog
from tests.federation_support import assert_settled, start_federation

pytestmark = pytest.mark.slow

CITY = "city:330100"
WEST, EAST = "district:330102", "district:330106"
DEPT_WEST, DEPT_EAST = "dept:330102:scjgj", "dept:330106:scjgj"


@pytest.fixture(scope="module", params=["grpc", "amqp"])
def fed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    yield from start_federation(tmp_path_factory.mktemp(f"fed-{request.param}"), demo_plan(), request.param)


def expected_at_city(fed: LocalFederation) -> set[tuple[str, int]]:
    """What the city must hold: everything the departments hold, plus revisions made at the city."""
    keys: set[tuple[str, int]] = set()
    for dept in fed.layout.departments:
        keys |= fed.keys(dept.id)
    return keys | {k for k in fed.keys(CITY) if k not in keys and k[1] > 1}


def background_import(fed: LocalFederation, dept: str, path: pathlib.Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "node", "--config", str(fed.config(dept)), "import", str(path),
                             "--item", "admin_penalty", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen[str]) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"import failed ({proc.returncode}): {out}\n{err}"


def test_records_reach_the_city_exactly_once_with_verified_chains(fed: LocalFederation) -> None:
    west = fed.import_file(DEPT_WEST, fed.sample_csv(DEPT_WEST, 1500, seed=1))
    east = fed.import_file(DEPT_EAST, fed.sample_csv(DEPT_EAST, 1200, seed=2))
    assert (west["accepted"], east["accepted"]) == (1500, 1200)
    fed.wait_for(CITY, 2700)
    assert_settled(fed, expected_at_city(fed))
    # Every city record came through the district of its department, and the chain says so.
    record_id = sorted(fed.keys(DEPT_EAST))[0][0]
    route = fed.cli_json(CITY, "route", "explain", record_id)
    assert route["verified"]
    assert [(h["signer"], h["to"], h["rule_id"]) for h in route["hops"]] == [
        (DEPT_EAST, "", ""), (DEPT_EAST, EAST, "penalty-to-province"), (EAST, CITY, "penalty-to-province")]
    assert "no further" in route["stops_here"]
    # Admin.Status: each district has heard from its parent and from its department, on either transport.
    for district, dept in ((WEST, DEPT_WEST), (EAST, DEPT_EAST)):
        contacts = last_contacts(fed, district)
        assert contacts[CITY] > 0 and contacts[dept] > 0, contacts
    assert last_contacts(fed, CITY)[WEST] > 0


def last_contacts(fed: LocalFederation, node_id: str) -> dict[str, int]:
    from node.identity import load_identity
    from node.transport import grpc_client

    assert fed.provisioned is not None
    # Asked as the node itself: a call from a parent or child would count as a contact of its own.
    me = load_identity(fed.provisioned.dir(node_id) / "identity")
    with grpc_client.open_channel(fed.provisioned.target(node_id), me, server_name="localhost") as channel:
        return {p.node_id: p.last_contact_ms for p in grpc_client.status(channel, timeout=10).peers}


def test_a_district_killed_mid_stream_and_restarted(fed: LocalFederation) -> None:
    before = fed.count(WEST)
    proc = background_import(fed, DEPT_WEST, fed.sample_csv(DEPT_WEST, 6000, seed=3, start_no=100_000))
    wait_until(lambda: fed.count(WEST) > before, 120, what="records flowing through the district")
    fed.nodes[WEST].kill()  # SIGKILL: no drain, leases and unacknowledged messages left behind
    finish(proc)
    assert fed.count(CITY) < len(expected_at_city(fed))  # the stream was cut mid-way
    fed.nodes[WEST].start()
    fed.wait_for(CITY, len(expected_at_city(fed)))
    assert_settled(fed, expected_at_city(fed))


def test_the_parent_offline_for_a_while_then_back(fed: LocalFederation) -> None:
    city_before = fed.count(CITY)
    east_before = fed.count(EAST)
    log = fed.nodes[EAST].log_path
    offset = log.stat().st_size
    assert fed.nodes[CITY].stop() == 0  # SIGTERM: the city drains and goes away
    assert fed.import_file(DEPT_EAST, fed.sample_csv(DEPT_EAST, 1000, seed=4, start_no=200_000))["accepted"] == 1000
    wait_until(lambda: fed.count(EAST) >= east_before + 1000, 120, what="the district to hold the new records")
    if fed.transport == "grpc":
        # The district keeps trying to reach the city. With max_attempts=3, spending an attempt per
        # try would have dead-lettered everything by the 4th: wait for 8 tries (about 10 s here).
        def tries() -> int:
            return log.read_bytes()[offset:].count(b"unreachable")

        wait_until(lambda: tries() >= 8, 120, what="the district to retry the city 8 times")
        assert fed.pending(EAST) >= 1000
    else:
        # Over amqp the district is not affected at all: the broker takes the batches for the city.
        wait_until(lambda: fed.pending(EAST) == 0, 120, what="the district to hand everything to the broker")
    assert fed.dead_letters(EAST) == 0
    assert fed.count(CITY) == city_before
    fed.nodes[CITY].start()
    fed.wait_for(CITY, len(expected_at_city(fed)))
    assert_settled(fed, expected_at_city(fed))


@pytest.mark.parametrize("fed", ["amqp"], indirect=True)  # over grpc there is no broker to restart
def test_the_broker_restarted_mid_stream(fed: LocalFederation) -> None:
    assert fed.broker is not None
    before = fed.count(WEST)
    proc = background_import(fed, DEPT_WEST, fed.sample_csv(DEPT_WEST, 6000, seed=5, start_no=300_000))
    wait_until(lambda: fed.count(WEST) > before, 120, what="records flowing through the district")
    fed.broker.stop()
    finish(proc)  # the department keeps importing: its outbox holds what it cannot send
    fed.broker.start()  # same port, same data: quorum queues and their messages survive
    fed.wait_for(CITY, len(expected_at_city(fed)), deadline_s=400)
    assert_settled(fed, expected_at_city(fed))


def test_a_revision_made_at_the_city_travels_down_to_its_source(fed: LocalFederation) -> None:
    record_id = sorted(k for k in fed.keys(DEPT_WEST) if k[1] == 1)[0][0]
    done = fed.cli_json(CITY, "downward", "revise", record_id, "--status", "revoked", "--reason", "决定已撤销")
    assert done["revision"] == 2 and WEST in done["to"]
    wait_until(lambda: (record_id, 2) in fed.keys(DEPT_WEST), 120, what="revision 2 at the department")
    route = fed.cli_json(DEPT_WEST, "route", "explain", record_id)
    assert route["verified"] and route["revision"] == 2
    assert [(h["signer"], h["to"], h["rule_id"]) for h in route["hops"]] == [
        (CITY, "", ""), (CITY, WEST, "down-to-source"), (WEST, DEPT_WEST, "down-to-source")]
    assert (record_id, 2) not in fed.keys(DEPT_EAST)  # addressed down one branch only
    assert_settled(fed, expected_at_city(fed))


def test_a_catalogue_release_signed_by_the_city_reaches_every_node(fed: LocalFederation,
                                                                   tmp_path: pathlib.Path) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(bundled_catalog(), catalog)
    meta = yaml.safe_load((catalog / "catalog.yaml").read_text(encoding="utf-8"))
    version = f"{meta['version']}.{fed.transport}"  # newer than the bundled one, new in each run
    meta["version"] = version
    (catalog / "catalog.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
    # Only the authority's signature counts: the district's is refused at its own node.
    refused = fed.cli(WEST, "downward", "release", str(catalog))
    assert refused.returncode != 0 and "authority" in refused.stderr
    assert fed.cli_json(CITY, "downward", "release", str(catalog))["applied"]
    for node_id in fed.nodes:
        wait_until(lambda n=node_id: fed.cli_json(n, "downward", "status")["release"] == version, 120,
                   what=f"release {version} at {node_id}")
    # Held, not yet in use: the running node loaded its catalogue when it started.
    held = fed.cli_json(DEPT_EAST, "downward", "status")
    assert held["running"] != version and held["next_start"] == version
    fed.nodes[DEPT_EAST].stop()
    fed.nodes[DEPT_EAST].start()
    assert fed.cli_json(DEPT_EAST, "downward", "status")["running"] == version
