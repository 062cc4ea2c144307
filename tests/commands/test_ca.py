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
                                  "10.0.0.256", ""])
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
