"""node/app.py: wiring a node from its configuration."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from node.provisioning import init_node


def test_a_node_built_for_a_one_shot_command_loads_neither_grpc_nor_alembic(tmp_path: pathlib.Path) -> None:
    # An import, a query, a verify: grpc (~20 MB, and its threads) is for the running node and the
    # network clients, Alembic for a store not made yet (init makes a SQLite one); the import
    # benchmark's memory floor has no room for either.
    config = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit="11330102MB0000019G")
    probe = ("import sys; from node.app import build_node; from node.config import load_config; "
             f"build_node(load_config({str(config)!r})).close(); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'grpc', 'pika', 'alembic'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_store_another_node_holds_is_refused_naming_its_node(tmp_path: pathlib.Path, db_url: str) -> None:
    import pytest

    from node.app import build_node
    from node.config import load_config
    from node.errors import ConfigError

    # Two node.yaml naming one database, as is easily done on a shared PostgreSQL server.
    dept = load_config(init_node(tmp_path / "dept", node_id="dept:330102:scjgj", level="department",
                                 unit="11330102MB0000019G", store_url=db_url))
    city = load_config(init_node(tmp_path / "city", node_id="city:330100", level="city", store_url=db_url))
    build_node(dept).close()
    with pytest.raises(ConfigError) as caught:
        build_node(city)
    assert caught.value.field == "store.url" and caught.value.exit_code == 2
    assert "belongs to node dept:330102:scjgj, not city:330100" in caught.value.message
    build_node(dept).close()  # its own node still opens it


def test_a_node_started_with_a_revocation_list_past_its_next_update_says_so(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    # Revocations made since that list are unknown to the node: the list is still applied (it is
    # the best there is), but an operator must learn that a newer one is due.
    import datetime as dt
    import logging

    import yaml
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from node.app import build_node
    from node.config import load_config

    path = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit="11330102MB0000019G")
    ca_dir = tmp_path / "n" / "ca"
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(now - dt.timedelta(days=60)).next_update(now - dt.timedelta(days=30))
           .sign(key, hashes.SHA256()))
    (path.parent / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["identity"]["crl"] = "crl.pem"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="node.revocation"):
        build_node(load_config(path)).close()
    stale = [r for r in caplog.records if r.getMessage() == "trust.crl_stale"]
    assert len(stale) == 1
    assert stale[0].next_update == crl.next_update_utc.isoformat()  # type: ignore[attr-defined]
    assert stale[0].crl == str(path.parent / "crl.pem")  # type: ignore[attr-defined]


def test_a_configured_catalogue_that_does_not_load_is_named_by_its_key(tmp_path: pathlib.Path) -> None:
    from node.app import build_node
    from node.config import load_config
    from node.errors import CatalogError

    config = init_node(tmp_path / "n", node_id="city:330100", level="city")
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace(text.split("catalog:\n")[1].split("\n")[0], "  path: no-such-catalogue"),
                      encoding="utf-8")
    with pytest.raises(CatalogError) as refused:
        build_node(load_config(config))
    # It said only "no catalogue at …/no-such-catalogue": which setting to fix was the operator's guess.
    assert refused.value.field == "catalog.path"
    assert "no-such-catalogue" in refused.value.message and "catalog.path" in str(refused.value)


@pytest.mark.parametrize(("setting", "value", "field"), [
    ("identity", {"dir": "no-such-identity"}, "identity.dir"),
    ("identity", {"dir": "identity", "crl": "no-such.crl"}, "identity.crl"),
    ("identity", {"dir": "identity", "crl": "node.yaml"}, "identity.crl"),
])
def test_an_identity_setting_that_cannot_be_read_is_named_by_its_key(tmp_path: pathlib.Path, setting: str,
                                                                     value: dict[str, str], field: str) -> None:
    import yaml

    from node.app import build_node
    from node.config import load_config
    from node.errors import ConfigError

    config = init_node(tmp_path / "n", node_id="city:330100", level="city")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    config.write_text(yaml.safe_dump({**data, setting: value}), encoding="utf-8")
    # They were E_CONFIG or E_IO naming a file, or (a CRL that is no CRL) nothing at all.
    with pytest.raises(ConfigError) as refused:
        build_node(load_config(config))
    assert refused.value.field == field
    assert pathlib.Path(value[field.split(".")[1]]).name in refused.value.message
