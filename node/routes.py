"""``credit-node route explain``: which rule moved a record where, hop by hop, from its stored chain.

The chain is the proof (DESIGN §2.2): ``chain[0]`` is the origin's signature; every later link is
the HOP signature of a node that forwarded the record, naming the routing rule it applied and
when. Link *i* was signed by the node that sent the record to the signer of link *i+1* — or, for
the last link, to this node, which holds it. What happens next comes from this node's outbox
(delivered, pending, dead) and its routing rule; a revision that came down from the parent goes
on only toward its source. The chain is verified before it is explained: an
explanation of a chain that does not verify says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.catalog import Catalog
from node.errors import NodeError, NotFoundError
from node.records import decode_body, decode_signed, pb
from node.routing import DOWN_RULE, LEVEL_RANK, Router, level_of
from node.signing import Verifier
from node.store import Store
from node.store.deliveries import Deliveries

__all__ = ["Hop", "Route", "explain_route"]


@dataclass(frozen=True)
class Hop:
    position: int
    kind: str  # origin | hop
    signer: str
    to: str  # the node the signer handed the record to ('' for the origin signature)
    rule_id: str
    signed_at_ms: int

    def as_dict(self) -> dict[str, object]:
        return {"position": self.position, "kind": self.kind, "signer": self.signer, "to": self.to,
                "rule_id": self.rule_id, "signed_at_ms": self.signed_at_ms}


@dataclass(frozen=True)
class Onward:
    destination: str
    rule_id: str
    state: str  # pending | done | dead | not yet queued
    attempts: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"destination": self.destination, "rule_id": self.rule_id, "state": self.state,
                "attempts": self.attempts, "last_error": self.last_error}


@dataclass(frozen=True)
class Route:
    record_id: str
    revision: int
    item: str
    origin: str
    held_at: str
    received_from: str
    hops: list[Hop]
    verified: bool
    problem: str = ""
    onward: list[Onward] = field(default_factory=list)
    stops_here: str = ""  # why the record goes no further, if it does not

    def as_dict(self) -> dict[str, object]:
        return {"record_id": self.record_id, "revision": self.revision, "item": self.item, "origin": self.origin,
                "held_at": self.held_at, "received_from": self.received_from, "verified": self.verified,
                "problem": self.problem, "hops": [h.as_dict() for h in self.hops],
                "onward": [o.as_dict() for o in self.onward], "stops_here": self.stops_here}


def explain_route(*, store: Store, verifier: Verifier, catalog: Catalog, router: Router, node_id: str,
                  record_id: str, revision: int | None = None) -> Route:
    row = store.records.get(record_id, revision)
    if row is None:
        what = f"{record_id} revision {revision}" if revision else record_id
        raise NotFoundError(f"no record {what} is held here", field="record_id")
    signed = decode_signed(row.signed)
    body = decode_body(row.body)
    error = verifier.verify([signed])[0]
    chain = list(signed.chain)
    hops = []
    for i, sig in enumerate(chain):
        # Link i was appended by the node that handed the record on: to the next link's signer,
        # or, for the last link, to us. The origin signature only says who made the record.
        to = "" if sig.kind == pb.ORIGIN else (chain[i + 1].signer if i + 1 < len(chain) else node_id)
        hops.append(Hop(i, "origin" if sig.kind == pb.ORIGIN else "hop", sig.signer, to, sig.rule_id,
                        sig.signed_at_ms))
    deliveries = [d for d in Deliveries(store.engine).of_record(record_id) if d.revision == row.revision]
    onward = [Onward(d.destination, d.rule_id, d.state, d.attempts, d.last_error) for d in deliveries]
    stops_here = ""
    try:
        item = catalog.item(row.item)
        # What the parent sent down goes on toward its source (the deliveries above), never back up.
        came_down = router.parent_id is not None and row.received_from == router.parent_id
        planned = [] if came_down else router.upward(item.routing.up_to, item.routing.rule_id)
        if came_down:
            stops_here = (f"revision {row.revision} came down from {row.received_from} (rule {DOWN_RULE}); "
                          "a revision from above is not sent back up")
        elif not planned and router.parent_id is None and _goes_higher(router.node_id, item.routing.up_to):
            # The rule is not why it stops: the operator has not (yet) configured a parent here.
            stops_here = (f"rule {item.routing.rule_id} sends {row.item} up to {item.routing.up_to}; "
                          f"{node_id} has no parent, so it goes no further from here")
        elif not planned:
            stops_here = (f"rule {item.routing.rule_id} sends {row.item} up to {item.routing.up_to}; "
                          f"{node_id} forwards it no further")
        for dest in planned:
            if not any(o.destination == dest.node_id for o in onward):
                onward.append(Onward(dest.node_id, dest.rule_id, "not yet queued"))
    except NodeError as exc:
        stops_here = f"item not in this node's catalogue: {exc.message}"
    return Route(record_id=row.record_id, revision=row.revision, item=row.item, origin=body.origin_node,
                 held_at=node_id, received_from=row.received_from, hops=hops, verified=error is None,
                 problem="" if error is None else f"{error.code}: {error.message}", onward=onward,
                 stops_here=stops_here)


def _goes_higher(node_id: str, up_to: str) -> bool:
    return LEVEL_RANK.get(up_to, -1) > LEVEL_RANK[level_of(node_id)]
