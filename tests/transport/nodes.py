"""A small federation for transport tests: real certificates, real node configs, real signed records.

Plain functions (the fixtures live in conftest.py) so that tests outside this package, such as
``tests/commands/test_service.py``, can build the same setup.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from node.app import build_node
from node.config import NodeConfig, parse_config
from node.identity import LoadedIdentity, init_ca, issue, load_identity, revoke, write_crl
from node.provisioning import bundled_catalog
from node.records import pb
from node.sampledata import penalty_rows, unit_uscc
from node.tabular import SourceRow

UNIT = unit_uscc("330102", "MB000001")
OTHER_UNIT = unit_uscc("330102", "MB000002")
PARENT_ID = "district:330102"
CHILD_ID = "dept:330102:scjgj"
SOURCE_ID = "source:330102:scjgj-db"
STRANGER_ID = "dept:330102:other"

# name -> (node id, role); every one issued by the federation CA unless noted in make_pki.
IDENTITIES: dict[str, tuple[str, str]] = {
    "parent": (PARENT_ID, "node"),
    "child": (CHILD_ID, "node"),
    "stranger": (STRANGER_ID, "node"),  # a node, but not a registered child
    "source": (SOURCE_ID, "source"),
    "unregistered_source": ("source:330102:rogue", "source"),
    "gov": ("gov:330100:fgw", "gov"),
    "agency": ("agency:330100:xyz", "agency"),
    "revoked": ("dept:330102:revoked", "node"),
}


@dataclass(frozen=True)
class Pki:
    base: pathlib.Path
    ca: pathlib.Path
    crl: pathlib.Path
    foreign: pathlib.Path  # a certificate from another CA, same node id as the child
    expired: pathlib.Path  # issued by our CA, expired

    def dir(self, name: str) -> pathlib.Path:
        return self.base / name

    def identity(self, name: str) -> LoadedIdentity:
        return load_identity(self.dir(name))


def make_pki(base: pathlib.Path) -> Pki:
    ca = init_ca(base / "ca")
    other = init_ca(base / "other-ca", name="another CA")
    for name, (node_id, role) in IDENTITIES.items():
        issue(ca, node_id, role, base / name)
    issue(other, CHILD_ID, "node", base / "foreign")
    issue(ca, "dept:330102:expired", "node", base / "expired", days=1,
          not_before=datetime.now(UTC) - timedelta(days=10))
    revoke(ca, base / "revoked", "key_compromise")
    write_crl(ca, base / "crl.pem")
    return Pki(base=base, ca=ca, crl=base / "crl.pem", foreign=base / "foreign", expired=base / "expired")


def parent_config_data(pki: Pki, store_dir: pathlib.Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": PARENT_ID,
        "level": "district",
        "identity": {"dir": str(pki.dir("parent")), "crl": str(pki.crl)},
        "store": {"url": f"sqlite:///{store_dir / 'parent.db'}"},
        "catalog": {"path": str(bundled_catalog())},
        "server": {"listen": "127.0.0.1:0", "grace_s": 5.0},
        "children": [{"id": CHILD_ID, "units": [UNIT]}],
        "sources": [{"id": SOURCE_ID, "units": [UNIT]}],
    }
    data.update(overrides)
    return data


def parent_config(pki: Pki, store_dir: pathlib.Path, **overrides: Any) -> NodeConfig:
    return parse_config(parent_config_data(pki, store_dir, **overrides), base_dir=str(store_dir))


def write_parent_config(pki: Pki, store_dir: pathlib.Path, **overrides: Any) -> pathlib.Path:
    path = store_dir / "node.yaml"
    path.write_text(yaml.safe_dump(parent_config_data(pki, store_dir, **overrides), allow_unicode=True),
                    encoding="utf-8")
    return path


def penalty_values(n: int, *, start_no: int = 1, unit: str = UNIT, seed: int = 7) -> list[dict[str, str]]:
    return list(penalty_rows(n, source_unit=unit, seed=seed, start_no=start_no))


def child_records(pki: Pki, work: pathlib.Path, n: int, *, start_no: int = 1, name: str = "child",
                  unit: str = UNIT) -> tuple[list[pb.SignedRecord], bytes]:
    """``n`` records signed by the department node ``name`` (origin), and its signing certificate."""
    node_id = IDENTITIES[name][0]
    config = parse_config({
        "id": node_id, "level": "department", "unit": unit,
        "identity": {"dir": str(pki.dir(name))},
        "store": {"url": f"sqlite:///{work / f'{name}-{start_no}.db'}"},
        "catalog": {"path": str(bundled_catalog())},
    }, base_dir=str(work))
    with build_node(config) as child:
        item = child.catalog.item("admin_penalty")
        rows = [SourceRow(row=i + 1, values=v) for i, v in enumerate(penalty_values(n, start_no=start_no,
                                                                                     unit=unit))]
        outcomes = child.ingest.ingest_batch(item, rows, source="test", batch_id=f"b{start_no}")
        assert all(o.outcome == "accepted" for o in outcomes), [o.problems for o in outcomes][:3]
        signed = [pb.SignedRecord.FromString(r.signed) for r in child.store.records.iter_revisions()]
        return signed, child.identity.signing_cert_der


def unsigned_records(n: int, *, start_no: int = 1, unit: str = UNIT) -> list[pb.UnsignedRecord]:
    return [pb.UnsignedRecord(item="admin_penalty", fields=[pb.Field(name=k, value=v) for k, v in row.items()])
            for row in penalty_values(n, start_no=start_no, unit=unit)]
