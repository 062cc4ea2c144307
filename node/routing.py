"""Where a record goes next: the catalogue's routing rule applied to this node's place in the tree.

Pure: no I/O. Each item names how far up it travels (``routing.up_to``); a node forwards a record
to its parent while the parent's level is within that reach. The rule id travels in the hop
signature so the path of any record can be explained afterwards (``credit-node route explain``).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.errors import ConfigError

# The rule id of a delivery down the tree, toward the node a record came up from (its source).
DOWN_RULE = "down-to-source"
LEVEL_RANK = {"department": 0, "dept": 0, "district": 1, "city": 2, "province": 3, "national": 4}


def level_of(node_id: str) -> str:
    """The level a node id names (``district:330106`` → ``district``)."""
    prefix = node_id.split(":", 1)[0]
    if prefix not in LEVEL_RANK:
        raise ConfigError(f"node id {node_id!r} does not start with a level "
                          f"({', '.join(k for k in LEVEL_RANK if k != 'dept')})")
    return "department" if prefix == "dept" else prefix


@dataclass(frozen=True)
class Destination:
    node_id: str
    rule_id: str


@dataclass(frozen=True)
class Router:
    """Routing for one node: its own id and its parent (if any)."""

    node_id: str
    parent_id: str | None

    def reaches_here(self, up_to: str, rule_id: str) -> bool:
        """Whether a record of an item that travels up to ``up_to`` may come up to this node at all."""
        reach = LEVEL_RANK.get(up_to)
        if reach is None:
            raise ConfigError(f"routing rule {rule_id!r}: unknown level {up_to!r}")
        return LEVEL_RANK[level_of(self.node_id)] <= reach

    def upward(self, up_to: str, rule_id: str) -> list[Destination]:
        """Destinations for a record of an item that travels up to level ``up_to``."""
        if self.parent_id is None:
            return []
        reach = LEVEL_RANK.get(up_to)
        if reach is None:
            raise ConfigError(f"routing rule {rule_id!r}: unknown level {up_to!r}")
        if LEVEL_RANK[level_of(self.parent_id)] <= reach:
            return [Destination(self.parent_id, rule_id)]
        return []
