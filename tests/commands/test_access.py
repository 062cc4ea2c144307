"""The operator's commands against a real node (``build_node`` + ``build_runtime``, mTLS, port 0):
``lookup``, ``verify-list``, ``authz``, ``blocks``, ``sharing``, ``audit verify`` and their exit codes."""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text

from node.app import build_node, build_runtime
from node.cli import cli
from node.config import load_config
from node.provisioning import init_node
from node.transport.grpc_server import GrpcServer
from tests.access_world import CALLERS, ORG, ORG2, PERSON, Pki, make_pki, seed

CITY = "city:330100"
DEPT = "dept:330100:scjgj"


@dataclass
class World:
    pki: Pki
    config: pathlib.Path
    target: str
    tags: dict[str, str]

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])

    def client(self, command: str, role: str, *args: str) -> Result:
        return CliRunner().invoke(cli, [command, *args, "--target", self.target,
                                        "--identity", str(self.pki.dir(CALLERS[role]))])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("cli")
    pki = make_pki(root)
    config = init_node(root / "city", node_id=CITY, level="city", ca_dir=pki.ca)
    with config.open("a", encoding="utf-8") as f:
        f.write("abuse: {cache_s: 0}\n")  # switches take effect at once (default: within 1 s)
        f.write(f"children: [{{id: '{DEPT}'}}]\n")  # a department that reports while sharing is off
    with build_node(load_config(config)) as node:
        tags = seed(node.store, node.signer, node.catalog)
        runtime = build_runtime(node)
        runtime.start()
        try:
            yield World(pki, config, runtime.extension(GrpcServer).address, tags)
        finally:
            runtime.stop()


def test_lookup_json_as_gov(world: World) -> None:
    r = world.client("lookup", "gov", ORG.lower(), "--purpose", "行政许可审查", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["subject"] == ORG and out["partial"] is False
    assert {rec["record_id"] for rec in out["records"]} == {
        world.tags[t] for t in ("pen", "blacklist", "inspection", "pen-repaired")}
    rec = next(x for x in out["records"] if x["record_id"] == world.tags["pen"])
    assert rec["signers"] == [CITY] and rec["class"] == "A" and rec["fields"]["CF_WSH"] == "罚1"


def test_lookup_text_and_masking_for_the_public(world: World) -> None:
    r = world.client("lookup", "public", PERSON, "--json")
    assert r.exit_code == 0
    [rec] = json.loads(r.stdout)["records"]
    assert rec["subject_code"] == rec["fields"]["CF_XDR_ZJHM"] == "1101**********002X"
    r = world.client("lookup", "public", ORG)
    assert r.exit_code == 0 and "serious_dishonest_list" in r.stdout


@pytest.mark.parametrize(("role", "args", "code"), [
    ("gov", (), "E_PURPOSE_REQUIRED"),
    ("admin", ("--purpose", "x"), "E_SEPARATION_OF_DUTIES"),
    ("auditor", (), "E_ROLE_CANNOT_QUERY"),
    ("agency", ("--authz", "NOT-A-CODE"), "E_AUTHZ_UNKNOWN"),
])
def test_refused_lookups_exit_3_with_the_reason(world: World, role: str, args: tuple[str, ...], code: str) -> None:
    r = world.client("lookup", role, ORG, *args)
    assert r.exit_code == 3
    assert code in r.stderr and r.stderr.startswith("error: ")


def test_a_refused_lookup_with_json_says_why_on_stdout(world: World) -> None:
    r = world.client("lookup", "gov", ORG, "--json")
    assert r.exit_code == 3
    assert json.loads(r.stdout)["error"]["code"] == "E_PURPOSE_REQUIRED"


def test_a_request_the_node_finds_wrong_exits_2(world: World) -> None:
    r = world.client("lookup", "gov", "", "--purpose", "行政许可审查", "--json")
    assert r.exit_code == 2, r.output
    assert json.loads(r.stdout)["error"]["field"] == "subject_code"


@pytest.mark.parametrize("target", ["127.0.0.1:99999", "notatarget", "127.0.0.1:", ":7443"])
def test_a_target_that_is_not_host_port_is_a_usage_error(world: World, target: str) -> None:
    r = CliRunner().invoke(cli, ["lookup", ORG, "--target", target, "--json",
                                 "--identity", str(world.pki.dir(CALLERS["public"]))])
    assert r.exit_code == 2, r.output
    assert json.loads(r.stdout)["error"]["field"] == "target"


def test_unreachable_node_exits_4(world: World) -> None:
    r = CliRunner().invoke(cli, ["lookup", ORG, "--target", "127.0.0.1:1", "--timeout", "2",
                                 "--identity", str(world.pki.dir(CALLERS["public"]))])
    assert r.exit_code == 4, r.output


def test_verify_list_from_lines_and_from_csv(world: World, tmp_path: pathlib.Path) -> None:
    lines = tmp_path / "codes.txt"
    lines.write_text(f"{ORG}\n{ORG2}\n\n91110000600037341L\n", encoding="utf-8")
    table = tmp_path / "codes.csv"
    table.write_text(f"名称,统一社会信用代码\n甲,{ORG}\n乙,{ORG2}\n", encoding="utf-8-sig")
    for path in (lines, table):
        r = world.client("verify-list", "gov", str(path), "--purpose", "政府采购核查", "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert sorted((h["subject_code"], h["item"]) for h in out["hits"]) == [
            (ORG2, "red_list"), (ORG, "serious_dishonest_list")]
    r = world.client("verify-list", "gov", str(lines), "--purpose", "核查")
    assert "checked 3 subjects: 2 hit(s)" in r.stdout
    assert "no check digit" not in r.stdout
    assert world.client("verify-list", "gov", str(lines)).exit_code == 3


def test_verify_list_names_the_codes_it_could_not_check(world: World, tmp_path: pathlib.Path) -> None:
    lines = tmp_path / "codes.txt"
    lines.write_text(f"{ORG}\nE12345678\n", encoding="utf-8")
    r = world.client("verify-list", "gov", str(lines), "--purpose", "核查")
    assert r.exit_code == 0, r.output
    assert "1 code(s) carry no check digit (not a USCC or an 18-digit ID number), so a mistyped one reads as on " \
           "no list: E12345678" in r.stdout
    out = json.loads(world.client("verify-list", "gov", str(lines), "--purpose", "核查", "--json").stdout)
    assert out["unchecked"] == ["E12345678"] and out["checked"] == 2


def test_authz_grant_use_list_revoke(world: World) -> None:
    r = world.run("authz", "grant", PERSON, "--to", "agency:bank1", "--items", "professional_qualification",
                  "--days", "30", "--json")
    assert r.exit_code == 0, r.output
    grant = json.loads(r.stdout)
    r = world.client("lookup", "agency", PERSON, "--authz", grant["code"], "--json")
    assert r.exit_code == 0
    assert world.tags["qual"] in {x["record_id"] for x in json.loads(r.stdout)["records"]}
    listed = json.loads(world.run("authz", "list", "--json").stdout)
    assert [(a["id"], a["state"]) for a in listed] == [(grant["id"], "valid")]
    assert grant["code"] not in world.run("authz", "list").stdout
    assert world.run("authz", "revoke", grant["id"]).exit_code == 0
    r = world.client("lookup", "agency", PERSON, "--authz", grant["code"])
    assert r.exit_code == 3 and "E_AUTHZ_REVOKED" in r.stderr
    r = world.run("authz", "grant", PERSON, "--to", "gov:330100:fgw", "--items", "x", "--days", "1")
    assert r.exit_code == 2


def test_authz_grant_refuses_an_item_shared_with_government_only(world: World) -> None:
    r = world.run("authz", "grant", ORG, "--to", "agency:bank1", "--items", "admin_inspection", "--days", "30")
    assert r.exit_code == 2 and "admin_inspection" in r.output


def _report(world: World) -> list[int]:
    """A department submits two signed 行政处罚 records over Exchange.Submit; returns the ack outcomes."""
    import time

    from node.catalog import load_catalog
    from node.preparing import Preparer
    from node.provisioning import bundled_catalog
    from node.records import pb
    from node.sampledata import penalty_rows, unit_uscc
    from node.signing import Signer
    from node.tabular import SourceRow
    from node.transport import grpc_client
    from node.validation import Validator

    cat = load_catalog(bundled_catalog())
    unit = unit_uscc("330100", "MB000001")
    ident = world.pki.identity(DEPT)
    rows = [SourceRow(row=i + 1, values=v) for i, v in enumerate(penalty_rows(2, source_unit=unit, seed=11))]
    batch = Preparer(node_id=DEPT, catalog=cat, validator=Validator(cat, source_unit=unit)).prepare(
        cat.item("admin_penalty"), rows, source="test", batch_id="b1")
    bodies = [p.body for p in batch.prepared]
    sigs = Signer(DEPT, ident.signing_key, ident.signing_cert_der).sign_origin(bodies, now_ms=time.time_ns() // 10**6)
    request = pb.SubmitRequest(records=[pb.SignedRecord(body=b, chain=[s]) for b, s in zip(bodies, sigs, strict=True)],
                               certificates=[ident.signing_cert_der])
    channel = grpc_client.open_channel(world.target, ident)
    try:
        return [a.outcome for r in grpc_client.submit(channel, [request], timeout=30) for a in r.acks]
    finally:
        channel.close()


def test_sharing_suspend_stops_disclosure_but_not_reporting(world: World, tmp_path: pathlib.Path) -> None:
    from node.records import pb

    codes = tmp_path / "codes.txt"
    codes.write_text(f"{ORG}\n", encoding="utf-8")
    assert world.run("sharing", "suspend", "--reason", "drill").exit_code == 0
    try:
        r = world.client("lookup", "public", ORG)
        assert r.exit_code == 3 and "E_SHARING_SUSPENDED" in r.stderr
        r = world.client("verify-list", "gov", str(codes), "--purpose", "x")
        assert r.exit_code == 3 and "E_SHARING_SUSPENDED" in r.stderr
        assert _report(world) == [pb.Ack.ACCEPTED, pb.Ack.ACCEPTED]  # reporting keeps working
        status = CliRunner().invoke(cli, ["status", "--target", world.target, "--json",
                                          "--identity", str(world.pki.dir(CALLERS["gov"]))])
        assert json.loads(status.stdout)["sharing_suspended"] is True
    finally:
        assert world.run("sharing", "resume").exit_code == 0
    assert world.client("lookup", "public", ORG).exit_code == 0


def test_blocks_list_and_lift(world: World) -> None:
    from node.abuse import Guard
    from node.config import AbuseConfig
    from node.store import Store

    with Store.open(load_config(world.config).store_url) as store:
        Guard(store, AbuseConfig()).block("ipv4:127.0.0.1", "public:portal", "test burst")
    try:
        listed = json.loads(world.run("blocks", "list", "--json").stdout)
        assert [(b["address"], b["caller"]) for b in listed] == [("ipv4:127.0.0.1", "public:portal")]
        r = world.client("lookup", "gov", ORG, "--purpose", "x")
        assert r.exit_code == 3 and "E_BLOCKED" in r.stderr
    finally:
        assert world.run("blocks", "lift", "ipv4:127.0.0.1").exit_code == 0
    assert world.run("blocks", "list").stdout.strip() == "no blocks in force"
    assert world.run("blocks", "lift", "ipv4:127.0.0.1").exit_code == 1
    assert world.client("lookup", "gov", ORG, "--purpose", "x").exit_code == 0


def test_blocks_list_shows_when_a_block_began_and_when_it_was_lifted(world: World) -> None:
    from node.abuse import Guard
    from node.config import AbuseConfig
    from node.store import Store

    blocked_at, lifted_at = 1_796_630_490_892, 1_796_634_090_892  # an hour apart
    with Store.open(load_config(world.config).store_url) as store:
        Guard(store, AbuseConfig(), wall_ms=lambda: blocked_at).block("ipv4:10.9.9.9", "public:probe", "burst")
        assert "ipv4:10.9.9.9 blocked since 2026-12-07T08:01:30.892Z (caller public:probe)" \
            in world.run("blocks", "list").stdout
        Guard(store, AbuseConfig(), wall_ms=lambda: lifted_at).lift("ipv4:10.9.9.9")
    listed = world.run("blocks", "list", "--all").stdout
    assert ("ipv4:10.9.9.9 lifted at 2026-12-07T09:01:30.892Z (blocked since 2026-12-07T08:01:30.892Z) "
            "(caller public:probe): burst") in listed
    as_json = [b for b in json.loads(world.run("blocks", "list", "--all", "--json").stdout)
               if b["address"] == "ipv4:10.9.9.9"]
    assert [(b["since_ms"], b["lifted_at_ms"]) for b in as_json] == [(blocked_at, lifted_at)]


# --- audit verify: the query log cannot be quietly edited, cut or reordered --------------------------
def _copy_with(world: World, tmp_path: pathlib.Path, name: str, *statements: str) -> pathlib.Path:
    """A copy of the node's store with ``statements`` applied, and a config pointing at it."""
    src = pathlib.Path(load_config(world.config).store_url.removeprefix("sqlite:///"))
    db = tmp_path / f"{name}.db"
    src_engine = create_engine(f"sqlite:///{src}")
    with src_engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM INTO '{db}'")  # a consistent copy while the node runs
    src_engine.dispose()
    engine = create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        for stmt in statements:
            conn.execute(text(stmt))
    engine.dispose()
    cfg = tmp_path / f"{name}.yaml"
    shutil.copy(world.config, cfg)
    text_cfg = cfg.read_text(encoding="utf-8").replace("sqlite:///node.db", f"sqlite:///{db}")
    cfg.write_text(text_cfg.replace("dir: identity", f"dir: {world.config.parent / 'identity'}"), encoding="utf-8")
    return cfg


def _audit(cfg: pathlib.Path) -> Result:
    return CliRunner().invoke(cli, ["--config", str(cfg), "audit", "verify", "--json"])


def test_audit_verify_detects_edited_deleted_and_reordered_rows(world: World, tmp_path: pathlib.Path) -> None:
    for purpose in ("审查一", "审查二", "审查三", "审查四"):
        assert world.client("lookup", "gov", ORG, "--purpose", purpose).exit_code == 0
    # An audit event of this test's own (the module's other tests may not have run before it).
    granted = world.run("authz", "grant", PERSON, "--to", "agency:bank9", "--items", "professional_qualification",
                        "--days", "1", "--json")
    assert granted.exit_code == 0, granted.output
    r = world.run("audit", "verify", "--json")
    assert r.exit_code == 0, r.output
    clean = json.loads(r.stdout)
    assert clean["ok"] and clean["rows"]["query_log"] >= 4
    n = clean["rows"]["query_log"]

    cases = {
        "edited": ["UPDATE query_log SET purpose = '无' WHERE seq = 2"],
        "deleted": ["DELETE FROM query_log WHERE seq = 3"],
        "truncated": [f"DELETE FROM query_log WHERE seq = {n}"],
        "reordered": ["UPDATE query_log SET seq = -1 WHERE seq = 2", "UPDATE query_log SET seq = 2 WHERE seq = 3",
                      "UPDATE query_log SET seq = 3 WHERE seq = -1"],
        "audit-edited": ["UPDATE audit_log SET actor = 'nobody' WHERE seq = 1"],
    }
    for name, statements in cases.items():
        r = _audit(_copy_with(world, tmp_path, name, *statements))
        assert r.exit_code == 1, (name, r.output)
        problems = json.loads(r.stdout)["problems"]
        assert problems, name
        log = "audit_log" if name.startswith("audit") else "query_log"
        assert {p["log"] for p in problems} == {log}, (name, problems)
        expected_seq = {"edited": 2, "deleted": 3, "truncated": n, "reordered": 2, "audit-edited": 1}[name]
        assert expected_seq in {p["seq"] for p in problems}, (name, problems)
    text_out = CliRunner().invoke(cli, ["--config", str(_copy_with(world, tmp_path, "t", *cases["edited"])),
                                        "audit", "verify"])
    assert "BAD query_log seq 2" in text_out.stdout and text_out.exit_code == 1


def test_audit_verify_counts_the_rows_left_after_the_last_was_deleted(world: World, tmp_path: pathlib.Path) -> None:
    assert world.client("lookup", "gov", ORG, "--purpose", "审查").exit_code == 0
    clean = json.loads(world.run("audit", "verify", "--json").stdout)
    n = clean["rows"]["query_log"]
    cut = _copy_with(world, tmp_path, "cut", f"DELETE FROM query_log WHERE seq = {n}")
    r = CliRunner().invoke(cli, ["--config", str(cut), "audit", "verify"])
    assert r.exit_code == 1
    assert f"BAD query_log seq {n}: log truncated" in r.stdout  # still the finding it is
    assert f"query log {n - 1} rows, audit log {clean['rows']['audit_log']} rows: 1 problem(s)" in r.stdout
    assert json.loads(_audit(cut).stdout)["rows"]["query_log"] == n - 1


def test_the_cli_grants_as_many_days_as_an_authorisation_may_last() -> None:
    from node.authz import MAX_DAYS
    from node.commands.access import AUTHZ_MAX_DAYS

    assert AUTHZ_MAX_DAYS == MAX_DAYS


def _verify_list(tmp_path: pathlib.Path, content: bytes) -> Result:
    """``verify-list`` of a file holding ``content``: refused before any node is called."""
    codes = tmp_path / "codes.txt"
    codes.write_bytes(content)
    return CliRunner().invoke(cli, ["verify-list", str(codes), "--target", "127.0.0.1:1", "--json",
                                    "--identity", str(tmp_path)])


@pytest.mark.parametrize("content", [
    f"统一社会信用代码\n{ORG}\n".encode() + "杭州某某公司\n".encode("gbk") + b"91110000600037341L\n",  # GBK in UTF-8
    b"code\n" + b"\x80\x81\xfe\xff" * 8 + b"\n",  # bytes in no encoding
])
def test_a_list_of_codes_that_is_not_text_is_refused_naming_the_line(tmp_path: pathlib.Path, content: bytes) -> None:
    r = _verify_list(tmp_path, content)
    assert r.exit_code == 2, r.output
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "E_INPUT_ENCODING" and error["field"] == "FILE"
    assert error["message"].startswith(("codes.txt line 3: not UTF-8 text, as the lines before it are",
                                        "codes.txt line 2: not text: neither UTF-8 nor GB18030"))
    assert "Traceback" not in r.output


@pytest.mark.parametrize(("content", "line"), [
    ("91330102MA2K3L4P5\ufffd\n", 1),  # a U+FFFD left by an earlier conversion
    (f"{ORG}\n\n9133 0102 MA2K\n", 3),
    (f"名称,code\n甲,{ORG}\n乙,杭州某某公司\n", 3),  # the name pasted into the code column
])
def test_codes_that_are_no_identifier_are_refused_naming_the_line(tmp_path: pathlib.Path, content: str,
                                                                  line: int) -> None:
    r = _verify_list(tmp_path, content.encode())
    assert r.exit_code == 2, r.output
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "E_SUBJECT_CODE_CHECK" and f"line {line}: " in error["message"]


@pytest.mark.parametrize("address", ["notanip", "ipv4:10.0.0.300", "ipv4:::1", "ipv6:10.0.0.7", "10.0.0.0/24", ""])
def test_blocks_lift_of_something_that_is_no_ip_address_is_a_usage_error(world: World, address: str) -> None:
    r = world.run("blocks", "lift", address, "--json")
    assert r.exit_code == 2, r.output
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "E_USAGE" and error["field"] == "ADDRESS" and "is not an IP address" in error["message"]


def test_blocks_lift_takes_a_bare_ip_address(world: World) -> None:
    from node.abuse import Guard
    from node.config import AbuseConfig
    from node.store import Store

    with Store.open(load_config(world.config).store_url) as store:
        Guard(store, AbuseConfig()).block("ipv4:10.8.8.8", "public:portal", "test burst")
    r = world.run("blocks", "lift", "10.8.8.8", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"address": "ipv4:10.8.8.8", "lifted": 1}
