"""``credit-node ca`` and ``credit-node init``: certificates and node directories."""

from __future__ import annotations

import pathlib

import click

from node.cli import DAYS, cli, emit_json, handle_errors, report


@cli.group()
def ca() -> None:
    """Development certificate authority (production uses the federation's CA)."""


@ca.command("init")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="directory for the CA")
@click.option("--name", default="credit federation dev CA", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def ca_init(out: str, name: str, as_json: bool) -> None:
    """Create a development CA (ca.pem, ca-key.pem written 0600)."""
    from node.identity import init_ca

    path = init_ca(pathlib.Path(out), name=name)
    report(as_json, {"ca": str(path), "cert": str(path / "ca.pem")}, f"created CA in {path}")


@ca.command("issue")
@click.option("--ca", "ca_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--id", "node_id", required=True, help="node id, e.g. district:330106")
@click.option("--role", default=None,
              help="node | source | gov | agency | public | self | admin | auditor | judicial "
                   "[default: the id's: node for a level id, else its first part]")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--host", "hosts", multiple=True,
              help="DNS name or IP the certificate serves (repeatable) [default for a node: localhost, 127.0.0.1; "
                   "another role serves nothing unless given: then it only serves, as a broker]")
@click.option("--days", default=825, show_default=True, type=DAYS)
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def ca_issue(ca_dir: str, node_id: str, role: str | None, out: str, hosts: tuple[str, ...], days: int,
             as_json: bool) -> None:
    """Issue certificates for NODE_ID into OUT (cert.pem, key.pem, ca.pem, signing keys)."""
    from node.identity import issue
    from node.nodeid import role_of

    _check_id(node_id)
    role = role or role_of(node_id)  # given, it must still fit the id (issue checks)
    _check_hosts(hosts)
    path = issue(pathlib.Path(ca_dir), node_id, role, pathlib.Path(out),
                 hosts=hosts or None, days=days)
    report(as_json, {"id": node_id, "role": role, "dir": str(path), "days": days},
           f"issued {node_id} ({role}) into {path}")


def _check_id(node_id: str) -> None:
    """An --id no id can be, refused as the operator's option, not as a configuration's (E_CONFIG)."""
    from node.errors import ConfigError, UsageError
    from node.nodeid import parse_node_id

    try:
        parse_node_id(node_id)
    except ConfigError as exc:
        raise UsageError(f"--id: {exc.message}", field="id") from None


def _check_hosts(hosts: tuple[str, ...]) -> None:
    """Refused before a key is made or a file written, naming the option as typed."""
    from node.errors import UsageError
    from node.hostnames import host_problem

    for host in hosts:
        if problem := host_problem(host):
            raise UsageError(f"--host {host!r} {problem}", field="host")


@ca.command("revoke")
@click.argument("target")
@click.option("--ca", "ca_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--reason", default="unspecified", show_default=True,
              help="CRL reason: key_compromise, affiliation_changed, superseded, cessation_of_operation, …")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def ca_revoke(target: str, ca_dir: str, reason: str, as_json: bool) -> None:
    """Revoke TARGET: an issued directory (both its certificates: a node goes as a whole), a
    certificate file, or a serial number in hex. Kept in the CA's revoked.json; `ca crl` publishes it."""
    from node.errors import UsageError
    from node.identity import revoke

    path = pathlib.Path(target)
    what: pathlib.Path | int
    if path.exists():
        what = path
    else:
        try:
            what = int(target.removeprefix("0x").removeprefix("0X"), 16)
        except ValueError:
            raise UsageError(f"{target}: neither a certificate file, an issued directory nor a serial number in hex",
                             field="target") from None
    serials = revoke(pathlib.Path(ca_dir), what, reason)
    shown = [f"{s:x}" for s in serials]
    report(as_json, {"revoked": shown, "reason": reason},
           f"revoked {', '.join(shown)} ({reason}); publish with: credit-node ca crl --ca {ca_dir} --out FILE")


@ca.command("crl")
@click.option("--ca", "ca_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the CRL file (PEM) to write")
@click.option("--days", default=30, show_default=True, type=DAYS, help="valid until (next update) in days")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def ca_crl(ca_dir: str, out: str, days: int, as_json: bool) -> None:
    """Write the CA's signed revocation list: every node's identity.crl (read at start)."""
    from node.identity import write_crl

    path = write_crl(pathlib.Path(ca_dir), pathlib.Path(out), days=days)
    report(as_json, {"crl": str(path), "days": days}, f"wrote {path} (valid {days} days)")


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--id", "node_id", required=True, help="node id, e.g. dept:330106:scjgj")
@click.option("--level", required=True, type=click.Choice(["department", "district", "city", "province"]))
@click.option("--unit", default="", help="USCC of the source unit a department node reports for")
@click.option("--store", "store_url", default="", help="SQLAlchemy URL (default: SQLite in DIRECTORY)")
@click.option("--ca", "ca_dir", type=click.Path(exists=True, file_okay=False),
              help="CA directory to issue from (default: a new dev CA in DIRECTORY/ca)")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True), help="catalogue directory")
@click.option("--listen", default="127.0.0.1:0", show_default=True)
@click.option("--host", "hosts", multiple=True,
              help="DNS name or IP the node's certificate serves (repeatable; default localhost and 127.0.0.1)")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def init(directory: str, node_id: str, level: str, unit: str, store_url: str, ca_dir: str | None,
         catalog_path: str | None, listen: str, hosts: tuple[str, ...], as_json: bool) -> None:
    """Write a working node configuration (DIRECTORY/node.yaml) and the node's certificates."""
    from node.provisioning import init_node

    _check_id(node_id)
    _check_hosts(hosts)

    path = init_node(pathlib.Path(directory), node_id=node_id, level=level, unit=unit, store_url=store_url,
                     ca_dir=pathlib.Path(ca_dir) if ca_dir else None,
                     catalog_path=pathlib.Path(catalog_path) if catalog_path else None, listen=listen,
                     **({"hosts": hosts} if hosts else {}))
    if as_json:
        emit_json({"config": str(path), "id": node_id, "level": level})
    else:
        click.echo(f"node {node_id} ready: credit-node --config {path} …")
