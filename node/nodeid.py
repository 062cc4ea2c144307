"""Node ids and roles: the names certificates carry (DESIGN §2.4) and their grammar.

A certificate's subject CN is a node id and its OU a role. The grammar (ABNF, RFC 5234)::

    node-id   = level-id / role-id                     ; at most 64 characters (X.509 CN limit)
    level-id  = ("province" / "city" / "district") ":" region
              / "dept" ":" region ":" name             ; a department's front node (前置机)
    region    = 6DIGIT                                 ; GB/T 2260 division code
    role-id   = role ":" name *2(":" name)             ; people and systems, e.g. gov:330100:fgw
    role      = "source" / "gov" / "agency" / "public" / "self" / "admin" / "auditor" / "judicial"
    name      = (LCALPHA / DIGIT) *31(LCALPHA / DIGIT / "-" / "_" / ".")

and further:

- the region matches the level: a province code ends in ``0000`` (``330000``), a city code in
  ``00`` but not ``0000`` (``330100``), a district code not in ``00`` (``330106``); a ``dept``
  may sit at any level, so its region is any six digits;
- the role ``node`` goes with a level id and only with one; a role id carries its own role
  (``gov:330100:fgw`` is a ``gov``), so a certificate cannot claim one role in CN and another in OU.

Only lower case is allowed so that two ids that look alike are equal (``SCJGJ`` vs ``scjgj``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from node.errors import ConfigError

__all__ = ["LEVELS", "MAX_NODE_ID", "ROLES", "Identity", "NodeId", "check_identity", "parse_node_id", "role_of"]

LEVELS = ("dept", "district", "city", "province")
ROLES = ("node", "source", "gov", "agency", "public", "self", "admin", "auditor", "judicial")
MAX_NODE_ID = 64  # ub-common-name in RFC 5280

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_REGION = re.compile(r"[0-9]{6}")


@dataclass(frozen=True)
class NodeId:
    """A parsed node id. ``kind`` is a level (``dept`` … ``province``) or a role (``gov`` …)."""

    kind: str
    region: str  # six-digit division code for level ids; '' for role ids
    names: tuple[str, ...]  # dept: (unit,); role ids: their name parts; () otherwise

    @property
    def is_node(self) -> bool:
        """A federation node (has a level), as opposed to a person's or a system's id."""
        return self.kind in LEVELS

    def __str__(self) -> str:
        parts = [self.kind, *([self.region] if self.region else []), *self.names]
        return ":".join(parts)


@dataclass(frozen=True)
class Identity:
    """Who a certificate speaks for: a node id and a role (see :func:`check_identity`)."""

    node_id: str
    role: str


def parse_node_id(text: str) -> NodeId:
    """Parse and validate ``text`` against the grammar above; ConfigError says what is wrong."""
    if not isinstance(text, str) or not text:
        raise ConfigError("a node id must be a non-empty string", field="node_id")
    if len(text) > MAX_NODE_ID:
        raise ConfigError(f"node id {text!r} is longer than {MAX_NODE_ID} characters", field="node_id")
    kind, *rest = text.split(":")
    if kind in LEVELS:
        return _parse_level(text, kind, rest)
    if kind in ROLES and kind != "node":
        if not 1 <= len(rest) <= 3:
            raise ConfigError(f"node id {text!r}: a {kind} id has one to three names after '{kind}:'",
                              field="node_id")
        for name in rest:
            _check_name(text, name)
        return NodeId(kind, "", tuple(rest))
    raise ConfigError(
        f"node id {text!r} must start with a level ({', '.join(LEVELS)}) or a role "
        f"({', '.join(r for r in ROLES if r != 'node')})", field="node_id")


def _parse_level(text: str, level: str, rest: list[str]) -> NodeId:
    want = 2 if level == "dept" else 1
    if len(rest) != want:
        shape = "dept:<region>:<unit>" if level == "dept" else f"{level}:<region>"
        raise ConfigError(f"node id {text!r} must look like {shape}", field="node_id")
    region = rest[0]
    if not _REGION.fullmatch(region):
        raise ConfigError(f"node id {text!r}: region {region!r} is not a six-digit division code",
                          field="node_id")
    problem = {
        "province": "a province code ends in 0000" if not region.endswith("0000") else "",
        "city": "a city code ends in 00 but not 0000"
        if not region.endswith("00") or region.endswith("0000") else "",
        "district": "a district code does not end in 00" if region.endswith("00") else "",
    }.get(level, "")
    if problem:
        raise ConfigError(f"node id {text!r}: {problem}", field="node_id")
    if level == "dept":
        _check_name(text, rest[1])
        return NodeId(level, region, (rest[1],))
    return NodeId(level, region, ())


def _check_name(text: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"node id {text!r}: {name!r} must be 1-32 of a-z, 0-9, '.', '-', '_' (starting with a "
            "letter or digit)", field="node_id")


def role_of(node_id: str) -> str:
    """The one role ``node_id`` can carry: ``node`` for a level id, else its first part."""
    parsed = parse_node_id(node_id)
    return "node" if parsed.is_node else parsed.kind


def check_identity(node_id: str, role: str) -> Identity:
    """Validate a (node id, role) pair as a certificate would carry it."""
    parsed = parse_node_id(node_id)
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; roles are {', '.join(ROLES)}", field="role")
    if parsed.is_node and role != "node":
        raise ConfigError(f"node id {node_id!r} names a federation node, so its role must be 'node'",
                          field="role")
    if not parsed.is_node and role != parsed.kind:
        raise ConfigError(f"node id {node_id!r} is a {parsed.kind} id, so its role must be {parsed.kind!r}",
                          field="role")
    return Identity(node_id, role)
