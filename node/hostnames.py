"""The hosts a certificate may name (its subject alternative names): DNS names and IP addresses.

A DNS name is RFC 1123 labels — letters, digits and inner hyphens, 1 to 63 characters each, 253
in all — so a typo (a space, a ``:port``, a URL) is refused when the certificate is issued, not
found out when a peer's TLS check fails. Wildcards (``*.example``) are not issued: every node
names its own hosts. Internationalised names are given in their ASCII form (``xn--…``).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["host_problem"]

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
    if name.rsplit(".", 1)[-1].isdigit():
        return "is neither an IP address nor a DNS name (a DNS name does not end in a number)"
    return ""
