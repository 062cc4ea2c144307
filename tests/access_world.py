"""A small world for the access tests: a dev CA, a certificate per role, a store seeded with real
signed records of every class, and a Query service on a real mTLS gRPC server (port 0).

Used by tests/transport/test_query_service.py, tests/test_fanout.py and tests/commands/test_access.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import pathlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from node.abuse import Guard, SharingSwitch
from node.authz import Authorizations
from node.catalog import Catalog, Item, load_catalog
from node.config import AbuseConfig, AccessConfig, PeerConfig
from node.fanout import Fanout
from node.identity import LoadedIdentity, init_ca, issue, load_identity
from node.provisioning import bundled_catalog
from node.querylog import QueryRecorder
from node.records import body_digest, content_digest, make_record_id, pb, rpc
from node.signing import Signer
from node.store import RecordRow, Store
from node.transport.grpc_client import open_channel
from node.transport.grpc_server import GrpcServer, Service
from node.transport.query_service import SERVICE_NAME, QueryService
from node.truststore import TrustStore

ORG = "91350100M000100Y43"
ORG2 = "91330100MA27XL0E2K"
PERSON = "11010519491231002X"
UNIT = "11330100002482975K"
TODAY = dt.date(2026, 6, 1)
T_MS = 1_780_000_000_000

CALLERS = {
    "public": "public:portal",
    "agency": "agency:bank1",
    "gov": "gov:330100:fgw",
    "judicial": "judicial:330100:court",
    "self-org": f"self:{ORG.lower()}",
    "self-person": f"self:{PERSON.lower()}",
    "admin": "admin:ops",
    "auditor": "auditor:audit",
}


@dataclass
class Pki:
    root: pathlib.Path
    ca: pathlib.Path
    dirs: dict[str, pathlib.Path] = field(default_factory=dict)
    loaded: dict[str, LoadedIdentity] = field(default_factory=dict)

    def dir(self, node_id: str) -> pathlib.Path:
        if node_id not in self.dirs:
            role = node_id.split(":")[0]
            role = "node" if role in ("city", "district", "province", "dept") else role
            self.dirs[node_id] = issue(self.ca, node_id, role, self.root / node_id.replace(":", "_"))
        return self.dirs[node_id]

    def identity(self, node_id: str) -> LoadedIdentity:
        if node_id not in self.loaded:
            self.loaded[node_id] = load_identity(self.dir(node_id))
        return self.loaded[node_id]


def make_pki(root: pathlib.Path) -> Pki:
    return Pki(root, init_ca(root / "ca"))


@functools.cache
def catalog() -> Catalog:
    return load_catalog(bundled_catalog())  # immutable: one load for the whole session


def record(signer: Signer, item: Item, subject: str, kind: str, name: str, fields: dict[str, str], *,
           status: str = "active", decision_date: str = "2026-05-01", tag: str = "") -> RecordRow:
    """A stored revision with a real body and a real origin signature (batch of one)."""
    key = tag or f"{item.code}/{subject}/{decision_date}/{status}"
    rid = make_record_id(item.code, UNIT, key)
    ordered = [(f.code, fields[f.code]) for f in item.fields if f.code in fields]
    body = pb.RecordBody(record_id=rid, revision=1, item=item.code, catalog_version="test",
                         subject_code=subject, subject_kind=kind, subject_name=name, source_unit=UNIT,
                         origin_node=signer.node_id, fields=[pb.Field(name=k, value=v) for k, v in ordered],
                         reported_at_ms=T_MS, status=status, decision_date=decision_date).SerializeToString()
    [sig] = signer.sign_origin([body], now_ms=T_MS)
    return RecordRow(record_id=rid, revision=1, item=item.code, subject_code=subject, subject_kind=kind,
                     source_unit=UNIT, origin_node=signer.node_id, status=status, decision_date=decision_date,
                     body=body, body_digest=body_digest(body), content_digest=content_digest(item.code, UNIT, ordered),
                     signed=pb.SignedRecord(body=body, chain=[sig]).SerializeToString(), received_at_ms=T_MS,
                     received_from="", catalog_version="test")


def seed(store: Store, signer: Signer, cat: Catalog) -> dict[str, str]:
    """Records of every class and state; returns tag → record id."""
    pen, insp = cat.item("admin_penalty"), cat.item("admin_inspection")
    qual, black, red = cat.item("professional_qualification"), cat.item("serious_dishonest_list"), cat.item("red_list")

    def penalty(wsh: str, **kw: Any) -> dict[str, str]:
        return {"CF_XDR_MC": "杭州测试有限公司", "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": ORG,
                "CF_FRDB": "王伟", "CF_FR_ZJLX": "身份证", "CF_FR_ZJHM": PERSON, "CF_WSH": wsh, **kw}

    rows = {
        "pen": record(signer, pen, ORG, "legal_person", "杭州测试有限公司", penalty("罚1"), tag="pen"),
        "pen-disputed": record(signer, pen, ORG, "legal_person", "杭州测试有限公司", penalty("罚2"),
                               status="disputed", tag="pen-disputed"),
        "pen-expired": record(signer, pen, ORG, "legal_person", "杭州测试有限公司", penalty("罚3"),
                              status="expired", tag="pen-expired"),
        "pen-old": record(signer, pen, ORG, "legal_person", "杭州测试有限公司", penalty("罚4"),
                          decision_date="2020-01-01", tag="pen-old"),
        "pen-repaired": record(signer, pen, ORG, "legal_person", "杭州测试有限公司", penalty("罚5"),
                               status="repaired", tag="pen-repaired"),
        "inspection": record(signer, insp, ORG, "legal_person", "杭州测试有限公司",
                             {"JC_XDR_MC": "杭州测试有限公司", "JC_JCBH": "检1"}, tag="inspection"),
        "blacklist": record(signer, black, ORG, "legal_person", "杭州测试有限公司",
                            {"SX_ZTMC": "杭州测试有限公司", "SX_RDWSH": "认1"}, decision_date="2026-03-01",
                            tag="blacklist"),
        "redlist": record(signer, red, ORG2, "legal_person", "杭州守信有限公司",
                          {"HM_ZTMC": "杭州守信有限公司", "HM_RDWH": "红1"}, decision_date="2026-02-01",
                          tag="redlist"),
        "pen-person": record(signer, pen, PERSON, "natural_person", "张三",
                             {"CF_XDR_MC": "张三", "CF_XDR_LB": "自然人", "CF_XDR_ZJLX": "身份证",
                              "CF_XDR_ZJHM": PERSON, "CF_WSH": "罚6"}, tag="pen-person"),
        "qual": record(signer, qual, PERSON, "natural_person", "张三",
                       {"ZG_XM": "张三", "ZG_ZJLX": "身份证", "ZG_ZJHM": PERSON, "ZG_ZSBH": "证1"}, tag="qual"),
    }
    store.records.append(list(rows.values()))
    return {tag: row.record_id for tag, row in rows.items()}


@dataclass
class Server:
    service: QueryService
    grpc_server: GrpcServer
    pki: Pki
    store: Store
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_server.port}"

    def stub(self, node_id: str) -> Any:
        if node_id not in self.channels:
            self.channels[node_id] = open_channel(self.target, self.pki.identity(node_id))
        return rpc.QueryStub(self.channels[node_id])  # type: ignore[no-untyped-call]

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


@contextmanager
def serve(pki: Pki, node_id: str, store: Store, *, access: AccessConfig | None = None,
          abuse: AbuseConfig | None = None, peers: Sequence[PeerConfig] = (), delegators: Sequence[str] = (),
          today: Callable[[], dt.date] = lambda: TODAY, authz_clock: Callable[[], int] | None = None,
          extra: Sequence[Service] = (), recorder: QueryRecorder | None = None) -> Iterator[Server]:
    """A Query service of ``node_id`` over ``store`` on a real mTLS server at 127.0.0.1:0."""
    ident = pki.identity(node_id)
    trust = TrustStore(ident.ca_pem)
    cat = catalog()
    fanout = Fanout(node_id, ident.signing_key, ident.signing_cert_der, peers,
                    lambda target: open_channel(target, ident)) if peers else None
    cfg = abuse or AbuseConfig(rate_per_s=10_000, burst=10_000)
    authz = Authorizations(store, clock=authz_clock) if authz_clock else Authorizations(store)
    service = QueryService(node_id=node_id, catalog=cat, store=store, trust=trust, settings=access or AccessConfig(),
                           guard=Guard(store, cfg), sharing=SharingSwitch(store, cache_s=cfg.cache_s),
                           authz=authz, recorder=recorder or QueryRecorder(store.queries), fanout=fanout,
                           delegators=delegators, today=today)
    server = GrpcServer(ident, "127.0.0.1:0", [Service(SERVICE_NAME, service.register), *extra], grace_s=0.5)
    server.start()
    running = Server(service, server, pki, store)
    try:
        yield running
    finally:
        running.close()
        server.stop()
        service.stop()


def refusal(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """(status, stable code) of a failed call."""
    trailing = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
    return exc.code(), str(trailing.get("credit-error-code", ""))  # type: ignore[attr-defined]
