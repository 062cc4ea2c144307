"""``credit-node ca``: a development CA and the certificates it issues."""

from __future__ import annotations

import pathlib

import pytest
from click.testing import CliRunner

from node.cli import cli


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("ca") / "ca"
    result = CliRunner().invoke(cli, ["ca", "init", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _issue(ca_dir: pathlib.Path, out: pathlib.Path, *hosts: str) -> tuple[int, str]:
    args = ["ca", "issue", "--ca", str(ca_dir), "--id", "district:330106", "--out", str(out)]
    for host in hosts:
        args += ["--host", host]
    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("host", ["node one.example", "node.example:50051", "https://node.example", "-node.example",
                                  "node-.example", "a..example", "*.example.org", "节点.example", "x" * 64 + ".example",
                                  "10.0.0.256", "", "city.330100.node.invalid", "NODE.INVALID"])
def test_issue_refuses_a_host_that_is_no_dns_name_or_ip(ca_dir: pathlib.Path, tmp_path: pathlib.Path,
                                                         host: str) -> None:
    code, out = _issue(ca_dir, tmp_path / "id", "localhost", host)
    assert code == 2, out
    assert f"--host {host!r}" in out
    assert not (tmp_path / "id").exists()


def test_issue_accepts_dns_names_and_ip_addresses(ca_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    code, out = _issue(ca_dir, tmp_path / "id", "localhost", "node-1.district.example.org", "xn--fiq228c.example",
                       "127.0.0.1", "::1", "fd00::5")
    assert code == 0, out
    assert (tmp_path / "id" / "cert.pem").is_file()


def test_issue_without_role_takes_the_ids_and_a_role_given_must_still_fit(ca_dir: pathlib.Path,
                                                                          tmp_path: pathlib.Path) -> None:
    import json

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    base = ["ca", "issue", "--ca", str(ca_dir), "--id", "gov:330100:x"]
    result = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "gov"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["role"] == "gov"
    cert = x509.load_pem_x509_certificate((tmp_path / "gov" / "cert.pem").read_bytes())
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] == ["gov"]
    result = CliRunner().invoke(cli, [*base, "--role", "node", "--out", str(tmp_path / "wrong")])
    assert result.exit_code == 2 and "its role must be 'gov'" in result.output


def test_revoke_an_issued_node_and_publish_the_crl_that_refuses_it(ca_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    from cryptography import x509

    from node.truststore import TrustStore

    node, other = tmp_path / "node", tmp_path / "other"
    for out, node_id in ((node, "district:330106"), (other, "district:330108")):
        assert CliRunner().invoke(cli, ["ca", "issue", "--ca", str(ca_dir), "--id", node_id, "--out", str(out)]).exit_code == 0
    revoked = CliRunner().invoke(cli, ["ca", "revoke", str(node), "--ca", str(ca_dir), "--reason", "key_compromise"])
    assert revoked.exit_code == 0, revoked.output
    crl = tmp_path / "crl.pem"
    assert CliRunner().invoke(cli, ["ca", "crl", "--ca", str(ca_dir), "--out", str(crl)]).exit_code == 0
    trust = TrustStore((ca_dir / "ca.pem").read_bytes(), crl.read_bytes())
    cert = {p: x509.load_pem_x509_certificate((p / "cert.pem").read_bytes()) for p in (node, other)}
    signing = x509.load_pem_x509_certificate((node / "signing-cert.pem").read_bytes())
    assert trust.is_revoked(cert[node]) and trust.is_revoked(signing)  # the node goes as a whole
    assert not trust.is_revoked(cert[other])


@pytest.mark.parametrize(("target", "reason", "says"), [("not-a-serial", "unspecified", "neither a certificate"),
                                                        ("1f", "because", "unknown revocation reason")])
def test_revoke_refuses_what_it_cannot_revoke(ca_dir: pathlib.Path, target: str, reason: str, says: str) -> None:
    result = CliRunner().invoke(cli, ["ca", "revoke", target, "--ca", str(ca_dir), "--reason", reason])
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output


def test_init_issues_the_node_certificate_for_the_hosts_given(tmp_path: pathlib.Path, ca_dir: pathlib.Path) -> None:
    from cryptography import x509

    args = ["init", str(tmp_path / "city"), "--id", "city:330100", "--level", "city", "--ca", str(ca_dir)]
    result = CliRunner().invoke(cli, [*args, "--host", "city-node.example", "--host", "10.0.0.5"])
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((tmp_path / "city" / "identity" / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["city-node.example", "city.330100.node.invalid"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    bad = CliRunner().invoke(cli, ["init", str(tmp_path / "other"), "--id", "city:330200", "--level", "city",
                                   "--host", "city node"])
    assert bad.exit_code == 2 and "--host" in bad.output and not (tmp_path / "other").exists()


def test_a_callers_certificate_names_no_host_and_only_calls(ca_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    result = CliRunner().invoke(cli, ["ca", "issue", "--ca", str(ca_dir), "--id", "agency:330100:bank1",
                                      "--out", str(tmp_path / "agency")])
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((tmp_path / "agency" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in san] == ["urn:credit-node:agency:330100:bank1"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]


def test_crl_into_a_directory_not_made_yet_is_written_there_as_issue_does(ca_dir: pathlib.Path,
                                                                          tmp_path: pathlib.Path) -> None:
    from cryptography import x509

    out = tmp_path / "published" / "identity.crl"
    result = CliRunner().invoke(cli, ["ca", "crl", "--ca", str(ca_dir), "--out", str(out), "--json"])
    # It was refused naming a temporary file of its own (E_IO: …/..identity.crl.<hex>.new.<hex>.tmp).
    assert result.exit_code == 0, result.output
    assert ".tmp" not in result.output
    assert x509.load_pem_x509_crl(out.read_bytes()).issuer == x509.load_pem_x509_certificate(
        (ca_dir / "ca.pem").read_bytes()).subject


@pytest.mark.parametrize(("option", "value", "code", "field"), [
    ("--listen", "notaport", "E_USAGE", "listen"),
    ("--listen", "127.0.0.1:99999", "E_USAGE", "listen"),
    ("--catalog", "empty-dir", "E_CATALOG", "catalog"),
    ("--catalog", "rows.csv", "E_CATALOG", "catalog"),
])
def test_init_refuses_what_start_would_refuse_and_writes_no_node(tmp_path: pathlib.Path, ca_dir: pathlib.Path,
                                                                  option: str, value: str, code: str,
                                                                  field: str) -> None:
    import json

    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    if option == "--catalog":
        value = str(tmp_path / value)
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "n"), "--id", "city:330100", "--level", "city",
                                      "--ca", str(ca_dir), option, value, "--json"])
    # It wrote the node and said so; `start` then refused the setting it had written.
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert not (tmp_path / "n" / "node.yaml").exists()


@pytest.mark.parametrize("command", [["ca", "issue", "--ca", "{ca}", "--out", "{tmp}/out", "--id", "nobody"],
                                     ["init", "{tmp}/n", "--level", "city", "--id", "nobody"],
                                     ["init", "{tmp}/n", "--level", "city", "--id", "gov:330100:fgw"]])
def test_an_id_no_id_can_be_is_refused_naming_the_option(ca_dir: pathlib.Path, tmp_path: pathlib.Path,
                                                         command: list[str]) -> None:
    import json

    args = [a.format(ca=ca_dir, tmp=tmp_path) for a in command] + ["--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    # It was E_CONFIG with field node_id (ca issue) or none (init), as if node.yaml were at fault.
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_USAGE", "id")
    assert command[-1] in error["message"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "n").exists()
