"""``credit-node start`` (the node as a service) and ``credit-node status`` (ask a running node)."""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import secrets
import sys
from typing import Any

import click

from node.cli import NODE_HELP, SECONDS, cli, emit_json, handle_errors, node_config, node_id, when
from node.errors import ConfigError, UsageError

log = logging.getLogger(__name__)


def _write_port_file(path: pathlib.Path, address: str) -> None:
    """Write atomically: a test or a script polling for the file never reads half an address."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(address + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _remove_port_file(path: pathlib.Path, address: str) -> None:
    """Remove the file once the node has stopped, unless another run has written its own since."""
    try:
        if path.read_text(encoding="utf-8").strip() == address:
            path.unlink()
    except (OSError, UnicodeDecodeError):
        pass  # gone already, or not ours to remove


@cli.command("start")
@click.option("--listen", default=None, help="HOST:PORT to serve on (default: server.listen; port 0 = any)")
@click.option("--port-file", type=click.Path(dir_okay=False), default=None,
              help="write the bound HOST:PORT to this file once serving (for scripts and tests)")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
@handle_errors
def start(ctx: click.Context, listen: str | None, port_file: str | None, log_level: str) -> None:
    """Run the node in the foreground until SIGTERM/SIGINT (which drain calls and exit 0)."""
    from node.app import build_node, build_runtime
    from node.instance import running_instance
    from node.logs import configure_logging
    from node.runtime import Runtime
    from node.transport.grpc_server import GrpcServer

    config = node_config(ctx)
    if listen:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, listen=listen))
    configure_logging(config.id, level=log_level)

    announced: list[str] = []

    def announce(runtime: Runtime) -> None:
        address = runtime.extension(GrpcServer).address
        click.echo(f"{config.id} listening on {address}")
        sys.stdout.flush()
        if port_file:
            _write_port_file(pathlib.Path(port_file), address)
            announced.append(address)

    if port_file:
        if not pathlib.Path(port_file).resolve().parent.is_dir():  # found out before serving, not after
            raise UsageError(f"--port-file {port_file}: its directory does not exist", field="port-file")
        # A file left by an earlier run (killed, so it could not remove it) names a dead address:
        # whoever waits for the file must see only this run's.
        pathlib.Path(port_file).unlink(missing_ok=True)
    try:
        with running_instance(config, "start"), build_node(config) as node:
            # Alone now: whatever an earlier run of this node had leased, it was killed holding.
            resumed = node.store.outbox.resume()
            if resumed:
                log.info("outbox.resumed", extra={"deliveries": resumed})
            build_runtime(node).run(on_started=announce)
    except ConfigError as exc:
        if listen and exc.field == "server.listen":  # the operator typed it on this command line
            reason = exc.message.removeprefix("server.listen: ")
            raise ConfigError(f"--listen {listen}: {reason}", field="listen") from None
        raise
    finally:
        # The address it names is dead now; a script waiting for the file must not find it.
        if port_file and announced:
            _remove_port_file(pathlib.Path(port_file), announced[0])


def _status_dict(resp: Any) -> dict[str, object]:
    return {
        "node_id": resp.node_id, "level": resp.level, "catalog_version": resp.catalog_version,
        "counts": {c.item: c.records for c in resp.counts}, "outbox_depth": resp.outbox_depth,
        "peers": [{"node_id": p.node_id, "relation": p.relation, "last_contact_ms": p.last_contact_ms}
                  for p in resp.peers],
        "sharing_suspended": resp.sharing_suspended,
    }


@cli.command("status")
@click.option("--target", required=True, help="HOST:PORT of the node to ask")
@click.option("--identity", "identity_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="directory with cert.pem, key.pem, ca.pem and the signing files")
@click.option("--server-name", default=None, help="name the server's certificate carries, if not TARGET's host")
@click.option("--node", default=None, callback=node_id, help=NODE_HELP)
@click.option("--timeout", default=10.0, show_default=True, type=SECONDS, help="seconds")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def status(target: str, identity_dir: str, server_name: str | None, node: str | None, timeout: float,
           as_json: bool) -> None:
    """Ask a running node for its status (needs role node, admin, auditor or gov)."""

    from node.identity import load_identity
    from node.transport import grpc_client

    me = load_identity(pathlib.Path(identity_dir))
    # A service that does not answer is a TransportError: exit 4, as for every command.
    with grpc_client.open_channel(target, me, server_name=server_name, node_id=node) as channel:
        resp = grpc_client.status(channel, timeout=timeout)
    data = _status_dict(resp)
    if as_json:
        emit_json(data)
        return
    click.echo(f"{resp.node_id} ({resp.level}), catalogue {resp.catalog_version}, "
               f"outbox {resp.outbox_depth}{', sharing suspended' if resp.sharing_suspended else ''}")
    for c in resp.counts:
        click.echo(f"  {c.item}: {c.records}")
    for p in resp.peers:
        click.echo(f"  {p.relation} {p.node_id}: last contact {when(p.last_contact_ms) or 'never'}")
