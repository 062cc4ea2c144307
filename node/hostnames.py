"""The hosts a certificate may name (its subject alternative names): DNS names and IP addresses.

A DNS name is RFC 1123 labels — letters, digits and inner hyphens, 1 to 63 characters each, 253
in all — so a typo (a space, a ``:port``, a URL) is refused when the certificate is issued, not
found out when a peer's TLS check fails. Wildcards (``*.example``) are not issued: every node
names its own hosts. Internationalised names are given in their ASCII form (``xn--…``).

A node's TLS certificate also names the node itself: ``city:330100`` is ``city.330100.node.invalid``
(:func:`node_name`). A node calling its parent or a peer region checks THAT name, not the host it
dialled, so only the certificate issued for that node id passes, whatever address it is reached
by (``.invalid`` is reserved, RFC 6761: no host is ever called so). No ``--host`` may be under it.
"""

from __future__ import annotations

import ipaddress
import re

from node.errors import ConfigError

__all__ = ["NODE_NAME_SUFFIX", "host_problem", "node_name", "split_host_port"]

NODE_NAME_SUFFIX = "node.invalid"

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def host_problem(host: str) -> str:
    """Why ``host`` is neither an IP address nor a DNS name; ``""`` when it is one."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ""
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name's root dot
    if not name or len(name) > 253:
        return "is neither an IP address nor a DNS name (1 to 253 characters)"
    for label in name.split("."):
        if not _LABEL.fullmatch(label):
            return (f"is neither an IP address nor a DNS name ({label!r} is not a DNS label: "
                    "letters, digits and inner hyphens, at most 63)")
    if name.lower() == NODE_NAME_SUFFIX or name.lower().endswith("." + NODE_NAME_SUFFIX):
        return f"is under {NODE_NAME_SUFFIX}, which only a node's own certificate names (its node id)"
    if name.rsplit(".", 1)[-1].isdigit():
        return "is neither an IP address nor a DNS name (a DNS name does not end in a number)"
    return ""


def node_name(node_id: str) -> str:
    """The name a node's TLS certificate carries for ``node_id`` and its callers check."""
    return f"{node_id.replace(':', '.')}.{NODE_NAME_SUFFIX}"


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ConfigError naming the address otherwise.
    Here, not with the gRPC server, so that `init` checks a --listen without loading grpc."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"server.listen: {address!r} is not HOST:PORT", field="server.listen")
    return host, int(port)
