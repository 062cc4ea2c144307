"""Composition root: the only place that turns a loaded configuration into concrete parts.

``Node`` owns the store, the catalogue, the identity and the record pipeline of one node. Long
running parts (gRPC server, forwarder, adapters) are created by ``start`` from the same config.
Nothing here is module-level state: every process builds its own ``Node``.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node.catalog import Catalog, load_catalog
from node.config import NodeConfig
from node.conflicts import Conflicts
from node.errors import CatalogError, ConfigError, NodeError
from node.identifiers import readable_name
from node.identity import LoadedIdentity, load_identity
from node.inbox import Inbox
from node.ingest import Ingest
from node.pipeline import FileReader, PreparerSetup, PrepareWorker, headers_for, import_file, new_batch_id
from node.preparing import ImportSummary, Preparer
from node.releases import Releases, RunningCatalog
from node.revocation import stale_warning
from node.routing import Router
from node.runtime import Runtime
from node.signing import Signer, Verifier
from node.store import Store, migrate, open_engine
from node.truststore import TrustStore
from node.validation import Validator

log = logging.getLogger(__name__)


@dataclass
class Node:
    config: NodeConfig
    catalog: Catalog
    identity: LoadedIdentity
    trust: TrustStore
    store: Store
    signer: Signer
    verifier: Verifier
    ingest: Ingest
    inbox: Inbox
    catalog_dir: pathlib.Path  # where ``catalog`` was loaded from: the applied release, else the configured one

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def import_file(self, path: pathlib.Path, item_code: str, *, encoding: str | None = None,
                    on_bytes: Callable[[int], None] | None = None,
                    progress: Callable[[int], None] | None = None) -> ImportSummary:
        """Import one CSV/XLSX file of catalogue item ``item_code`` (streamed, batch by batch)."""
        item = self.catalog.item(item_code)  # an unknown item is a usage error before any work starts
        reader = FileReader(item=item_code, source=readable_name(path.name), batch_id=new_batch_id(), path=str(path),
                            encoding=encoding, headers=headers_for(item))
        return import_file(self.ingest, self.preparer_setup, reader, size=path.stat().st_size,
                           on_bytes=on_bytes, progress=progress)

    @property
    def preparer_setup(self) -> PreparerSetup:
        """What a worker process needs to prepare records exactly as this node's ingest does."""
        cfg = self.config
        # The worker validates against the catalogue this node loaded, an applied release included.
        return PreparerSetup(node_id=cfg.id, catalog_path=str(self.catalog_dir),
                             uscc_allowlist=cfg.validation.uscc_allowlist, source_unit=self.own_unit,
                             allow_other_units=cfg.validation.allow_other_units)

    def prepare_worker(self) -> PrepareWorker:
        """A worker process (started on first use) that prepares batches for one adapter."""
        return PrepareWorker(self.preparer_setup)

    @property
    def own_unit(self) -> str:
        """The source unit rows must name: a department reports only for itself."""
        return self.config.unit if self.config.level == "department" else ""


def load_trust(config: NodeConfig, identity: LoadedIdentity) -> TrustStore:
    trust = TrustStore(identity.ca_pem)
    if config.identity.crl:
        crl_path = config.path(config.identity.crl)
        try:
            trust.load_crl(crl_path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"identity.crl: cannot read {crl_path}: {exc.strerror}", field="identity.crl") from None
        except ConfigError as exc:
            raise ConfigError(f"identity.crl: {crl_path}: {exc.message}", field="identity.crl") from None
        stale_warning(trust, crl_path)
    trust.add_certificate(identity.signing_cert_der)
    return trust


def conflict_detection(config: NodeConfig, store: Store) -> Conflicts | None:
    """Where facts arrive from several source units, note them and flag disagreements.

    A department node reports for its own unit only, so two units can never meet there (unless
    ``validation.allow_other_units``): it is spared the index write per record.
    """
    if config.level == "department" and not config.validation.allow_other_units:
        return None
    return Conflicts(store.engine, actor=config.id)


# The node a store belongs to, set by the first node that opens it.
OWNER_KEY = "store.owner"


def _claim_store(store: Store, config: NodeConfig) -> None:
    """Refuse a store another node holds: two node.yaml naming one database (easily done on a
    shared PostgreSQL server) would mix their records, and each would fail to verify the other's."""
    # A read first: the common case (the store is this node's) takes no write transaction.
    owner = store.meta.get(OWNER_KEY) or store.meta.claim(OWNER_KEY, config.id)
    if owner != config.id:
        from sqlalchemy.engine import make_url

        where = make_url(config.store_url).render_as_string(hide_password=True)
        raise ConfigError(f"the store {where} belongs to node {owner}, not {config.id}: every node needs a "
                          "store of its own (on a shared server, a database of its own)", field="store.url")


def build_node(config: NodeConfig, *, migrate_store: bool = True) -> Node:
    # The newest catalogue release this node applied (signed by its authority), else the configured one.
    catalog_dir = Releases(config).current_path()
    try:
        catalog = load_catalog(catalog_dir)
    except CatalogError as exc:
        if exc.field or catalog_dir != config.path(config.catalog.path):
            raise
        raise type(exc)(exc.message, field="catalog.path", code=exc.code) from None  # the setting to fix
    try:
        identity = load_identity(config.path(config.identity.dir))
    except ConfigError as exc:  # missing or unreadable files: named by the setting that points there
        raise ConfigError(f"identity.dir: {exc.message}", field=exc.field or "identity.dir") from None
    trust = load_trust(config, identity)
    engine = open_engine(config.store_url)
    try:
        if migrate_store:
            migrate(engine)
        store = Store(engine)
        _claim_store(store, config)
    except BaseException:
        engine.dispose()
        raise
    for der in store.certificates.all():  # signers learned from children: stored chains verify after a restart
        with contextlib.suppress(NodeError):  # one that no longer vets stays unknown (E_SIGNER_UNKNOWN)
            trust.add_certificate(der)
    signer = Signer(identity.node_id, identity.signing_key, identity.signing_cert_der)
    verifier = Verifier(trust)
    validator = Validator(catalog, uscc_allowlist=config.validation.uscc_allowlist,
                          source_unit=config.unit if config.level == "department" else "",
                          allow_other_units=config.validation.allow_other_units)
    router = Router(config.id, config.parent.id if config.parent else None)
    preparer = Preparer(node_id=config.id, catalog=catalog, validator=validator)
    conflicts = conflict_detection(config, store)
    ingest = Ingest(preparer=preparer, signer=signer, store=store, router=router, conflicts=conflicts)
    inbox = Inbox(node_id=config.id, catalog=catalog, validator=validator, verifier=verifier, trust=trust,
                  store=store, router=router, children=config.children, conflicts=conflicts)
    return Node(config=config, catalog=catalog, identity=identity, trust=trust, store=store,
                signer=signer, verifier=verifier, ingest=ingest, inbox=inbox, catalog_dir=catalog_dir)


def build_runtime(node: Node) -> Runtime:
    """The one place that decides which long-running parts (extensions) a node runs.

    Started in this order, stopped in reverse: the contacts are flushed after the server drained.
    grpc is imported here, not at the top, so the one-shot CLI commands do not pay for it.
    """
    from adapters import build_runners
    from node import federation
    from node.lifecycle.desk import build_desk
    from node.lifecycle.schedule import schedule_for
    from node.revocation import CrlWatch
    from node.transport.admin_service import AdminService
    from node.transport.contacts import PeerContacts, relations_of
    from node.transport.exchange_service import ExchangeService
    from node.transport.grpc_server import GrpcServer, Service
    from node.transport.lifecycle_service import SERVICE_NAME as LIFECYCLE
    from node.transport.lifecycle_service import LifecycleService
    from node.transport.peers import CallerCache, vetted_caller
    from node.transport.query_service import SERVICE_NAME as QUERY
    from node.transport.query_service import build_query_service
    from node.transport.sources import SourceIntake

    cfg = node.config
    contacts = PeerContacts(node.store.meta, relations_of(cfg))
    callers = CallerCache()
    intake = SourceIntake(catalog=node.catalog, ingest=node.ingest, sources=cfg.sources)
    exchange = ExchangeService(trust=node.trust, inbox=node.inbox, intake=intake, contacts=contacts,
                               callers=callers)
    query = build_query_service(node, callers=callers)
    admin = AdminService(config=cfg, catalog=node.catalog, store=node.store, trust=node.trust,
                         contacts=contacts, callers=callers, sharing_suspended=query.sharing_suspended)
    desk = build_desk(node)
    lifecycle = LifecycleService(objections=desk.objections, trust=node.trust, callers=callers,
                                 portals=cfg.lifecycle.portals)
    services = [Service("credit.v1.Exchange", exchange.register), Service("credit.v1.Admin", admin.register),
                Service(QUERY, query.register), Service(LIFECYCLE, lifecycle.register)]
    services += federation.services(node, contacts.seen)

    def admit(context: Any) -> None:  # health and reflection: a revoked certificate is refused there too
        vetted_caller(context, node.trust, cache=callers)

    server = GrpcServer(node.identity, cfg.server.listen, services, max_workers=cfg.server.max_workers,
                        grace_s=cfg.server.grace_s, admit=admit)
    # Stopped in reverse: the server stops taking records, then the federation's consumers and
    # forwarder; query stops after the server (it closes peer channels).
    # The lifecycle schedule (objection deadlines, archive sweep) stops before the server drains.
    # The adapters come last, so they are the first to stop: no new input while the rest drains.
    running = RunningCatalog(node.store.meta, node.catalog.version)
    # A new revocation list is taken in while the node runs (checked on every call from then on).
    watch = [CrlWatch(node.trust, cfg.path(cfg.identity.crl))] if cfg.identity.crl else []
    return Runtime(node, [running, *watch, contacts, query, *federation.extensions(node, contacts.seen), server,
                          *metrics_for(node, contacts), *schedule_for(desk, cfg.lifecycle, node.store.meta),
                          *build_runners(node)])


def metrics_for(node: Node, contacts: Any) -> list[Any]:
    """The metrics endpoint, when ``metrics.listen`` names one."""
    if not node.config.metrics.listen:
        return []
    from prometheus_client import CollectorRegistry

    from node.metrics import MetricsServer, NodeCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node_id=node.config.id, level=node.config.level,
                                     catalog_version=node.catalog.version, store=node.store,
                                     contacts=contacts.snapshot))
    return [MetricsServer(node.identity, node.trust, node.config.metrics.listen, registry)]
