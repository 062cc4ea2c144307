"""Which federation parts a node runs, from its configuration alone (called by ``app.build_runtime``).

- a node with a parent forwards to it over ``parent.transport`` (``amqp``: the parent's broker;
  ``grpc``: the parent's ``Exchange.Submit``) and receives what comes down: over amqp by
  consuming ``down.<id>`` on the parent's broker, over grpc by pulling from the parent's
  ``Federation.Pull`` (the child always dials: docs/decisions/downward-channel.md);
- a node with its own broker (``broker.url``) consumes ``up.<id>`` (its children's batches and
  reconciliation requests) and pushes downward deliveries to ``down.<child>``;
- every node with children serves ``Federation`` (pull and reconcile) on its gRPC server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.backoff import Backoff
from node.forwarding import Forwarder
from node.transport.base import Transport

if TYPE_CHECKING:
    from node.app import Node

__all__ = ["backoff_of", "extensions", "transports"]


def backoff_of(node: Node) -> Backoff:
    f = node.config.forwarding
    return Backoff(min_s=f.min_backoff_s, max_s=f.max_backoff_s, max_attempts=f.max_attempts)


def transports(node: Node) -> dict[str, Callable[[], Transport]]:
    """A transport factory per outbox destination this node delivers to itself."""
    from node.transport.amqp import AmqpPublisher
    from node.transport.amqp_topology import DOWN_EXCHANGE, down_key, parse_amqp_url

    cfg, me = node.config, node.identity
    out: dict[str, Callable[[], Transport]] = {}
    parent = cfg.parent
    if parent is not None:
        if parent.transport == "amqp":
            address = parse_amqp_url(parent.target, parent.server_name)
            out[parent.id] = lambda: AmqpPublisher(peer=parent.id, address=address, identity=me)
        else:
            from node.transport.grpc_forward import GrpcForward

            out[parent.id] = lambda: GrpcForward(peer=parent.id, target=parent.target, identity=me,
                                                 server_name=parent.server_name)
    if cfg.broker.url:
        own = parse_amqp_url(cfg.broker.url, cfg.broker.server_name)
        def downward(child: str) -> Callable[[], Transport]:
            return lambda: AmqpPublisher(peer=child, address=own, identity=me, exchange=DOWN_EXCHANGE,
                                         routing_key=down_key(child))

        for child in cfg.children:
            out[child.id] = downward(child.id)
    return out


def extensions(node: Node, seen: Callable[[str], None] = lambda _node_id: None) -> list[Any]:
    """The long-running federation parts of ``node`` (each with ``start``/``stop``).

    ``seen(node_id)`` is told of every exchange with the parent or a child (``PeerContacts``).
    """
    from node.downward import Downward
    from node.transport.amqp_consumer import AmqpConsumer
    from node.transport.amqp_topology import down_queue, parse_amqp_url, up_queue

    cfg = node.config
    backoff = backoff_of(node)
    downward = Downward(node)
    out: list[Any] = []
    lanes = transports(node)
    if lanes:
        out.append(Forwarder(outbox=node.store.outbox, signer=node.signer, trust=node.trust, transports=lanes,
                             backoff=backoff, batch=cfg.forwarding.batch, lease_s=cfg.forwarding.lease_s,
                             on_contact=seen))
    if cfg.broker.url and cfg.children:
        from node.reconciliation import answer
        from node.transport.amqp_downward import DownwardPublisher, refused_notices
        from node.transport.amqp_inbound import UpwardHandler

        own = parse_amqp_url(cfg.broker.url, cfg.broker.server_name)
        handler = UpwardHandler(inbox=node.inbox, store=node.store,
                                answer=lambda child, request: answer(node, child, request),
                                on_refused=refused_notices(downward))
        out.append(AmqpConsumer(name="amqp inbound", address=own, identity=node.identity, queue=up_queue(cfg.id),
                                handler=handler, prefetch=cfg.broker.prefetch, on_contact=seen))
        out.append(DownwardPublisher(node, downward, own, backoff))
    parent = cfg.parent
    if parent is not None:
        if parent.transport == "amqp":
            from node.transport.amqp_downward import DownwardHandler

            out.append(AmqpConsumer(name="amqp downward", address=parse_amqp_url(parent.target, parent.server_name),
                                    identity=node.identity, queue=down_queue(cfg.id),
                                    handler=DownwardHandler(node, downward), prefetch=1, on_contact=seen))
        else:
            from node.transport.grpc_downward import DownwardPuller

            out.append(DownwardPuller(node, downward, backoff, on_contact=seen))
        if cfg.forwarding.reconcile_every_s > 0:
            from node.reconciliation import ReconcileSchedule
            from node.transport.reconciliation_client import peer_for

            out.append(ReconcileSchedule(node, lambda: peer_for(node), cfg.forwarding.reconcile_every_s))
    return out


def services(node: Node, seen: Callable[[str], None] = lambda _node_id: None) -> list[Any]:
    """gRPC services this node adds to its server (``grpc_server.Service``): ``Federation`` for children."""
    if not node.config.children:
        return []
    from node.downward import Downward
    from node.transport.federation_service import SERVICE_NAME, FederationService
    from node.transport.grpc_server import Service

    service = FederationService(node, Downward(node), on_contact=seen)
    return [Service(SERVICE_NAME, service.register)]
