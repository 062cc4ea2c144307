"""Node configuration: YAML in, frozen dataclasses out.

``${ENV}`` and ``${ENV:default}`` are expanded in string values. Unknown keys, missing required
keys and wrongly typed values fail at start with the dotted path of the offending key, so a typo
in a deployment never silently falls back to a default. The sections are declared here; reading
a mapping into them (types, tagged unions, ``${ENV}``) is ``node.config_reader``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

import yaml

from node.config_reader import build_dataclass, required_keys
from node.errors import ConfigError
from node.identifiers import check_uscc, normalize_text
from node.nodeid import parse_node_id
from node.redaction import redacted
from node.routing import LEVEL_RANK, level_of
from node.yamlfile import DuplicateKeyError, load_strict, yaml_problem

LEVELS = ("department", "district", "city", "province")
Level = Literal["department", "district", "city", "province"]


@dataclass(frozen=True)
class IdentityConfig:
    """Where this node's certificates live (DIR with cert.pem, key.pem, ca.pem …)."""

    dir: str
    crl: str = ""  # the federation CA's revocation list (PEM), read at start; '' = none


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///node.db"


@dataclass(frozen=True)
class CatalogConfig:
    path: str = "exchange_config/catalog"
    authority: str = ""  # node id whose signed releases this node accepts ('' = local files only)
    releases: str = "catalog-releases"  # where applied signed releases are kept (the newest is used)


@dataclass(frozen=True)
class ParentConfig:
    id: str
    target: str  # host:port of the parent's gRPC server, or amqps://host:port for amqp
    transport: Literal["grpc", "amqp"] = "grpc"
    server_name: str = ""  # name on the parent's TLS certificate when it differs from the target's host


@dataclass(frozen=True)
class PeerConfig:
    id: str
    target: str
    server_name: str = ""  # name on the peer's TLS certificate when it differs from the target's host


@dataclass(frozen=True)
class ChildConfig:
    id: str
    units: tuple[str, ...] = ()  # source units the child may report for; () = any
    items: tuple[str, ...] = ()  # items the child may report; () = any


@dataclass(frozen=True)
class BrokerConfig:
    """This node's own RabbitMQ, where children using ``amqp`` publish to it (docs/federation.md)."""

    url: str = ""  # amqps://host:port; '' = no child reaches this node over amqp
    server_name: str = ""  # name on the broker's TLS certificate when it differs from the url's host
    prefetch: int = 4  # messages (each a batch of records) in flight to this node's consumer


@dataclass(frozen=True)
class ForwardingConfig:
    """Draining the outbox to the parent (and, over amqp, to children): docs/federation.md."""

    batch: int = 1000  # records per message (amqp) or per stream request (grpc)
    max_attempts: int = 12  # deliveries of a record before it goes to the dead letters
    min_backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    lease_s: float = 30.0  # a delivery claimed by a forwarder that died is retried after this
    reconcile_every_s: float = 3600.0  # compare digests (and send refusal tallies) this often; 0 = on demand only


@dataclass(frozen=True)
class SourceConfig:
    """A source system (certificate role ``source``) that may submit unsigned records over gRPC."""

    id: str  # its certificate's node id, e.g. source:330102:scjgj-db
    units: tuple[str, ...] = ()  # source units (USCC) it may report for; () = any the node accepts


@dataclass(frozen=True)
class ValidationConfig:
    uscc_allowlist: tuple[str, ...] = ()  # legally issued early codes failing the pos-18 check
    allow_other_units: bool = False  # department may report rows naming another 数据来源单位


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:0"
    max_workers: int = 16
    grace_s: float = 10.0


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus metrics over mutual TLS (node/metrics.py, docs/operations.md)."""

    listen: str = ""  # HOST:PORT of GET /metrics while `start` runs; '' = not served


@dataclass(frozen=True)
class AccessConfig:
    """Disclosure rules that are local practice rather than law (docs/access.md)."""

    # Records under objection (异议正在处理): Hangzhou suspends them, Shenzhen shows them marked.
    disputed: Literal["suspend", "mark"] = "suspend"
    fanout_deadline_s: float = 2.0  # a cross-region lookup waits this long for peer regions
    delegation_max_age_s: float = 300.0  # a signed delegation older (or newer) than this is refused


@dataclass(frozen=True)
class AbuseConfig:
    """Per-caller rate limits and the automatic block list (DOMAIN §7, seed 004 第十九条)."""

    rate_per_s: float = 200.0  # sustained lookups per caller (token bucket refill)
    burst: int = 400  # bucket size: short bursts above the rate are fine
    block_after: int = 1000  # refusals for rate within block_window_s that block the address
    block_window_s: float = 60.0
    cache_s: float = 1.0  # how stale the block list and the sharing switch may be in a server


@dataclass(frozen=True)
class LifecycleConfig:
    """Deadlines of the credit lifecycle (docs/lifecycle.md). ``*_days`` are working days.

    Whether a record under objection is suspended or shown marked is ``access.disputed``.
    """

    calendar: str = ""  # directory of <name>-<year>.yaml working-day calendars; '' = the bundled one
    check_days: int = 2  # the platform compares with what the source sent (seed 003 篇5 第三十一条)
    source_days: int = 10  # the source answers a verification request (篇5 第三十一条; 篇1 第三十三条: 5)
    result_days: int = 5  # the applicant is told the result (篇5 第三十一条, 篇1 第三十四条)
    statement_days: int = 30  # calendar days a 申请人存疑 statement is kept (seed 001 附件2 六(五))
    statement_within_days: int = 5  # after the result, to attach a statement (seed 001 附件2 六(三))
    # The source checks a record the platform doubts (信息自查: seed 003 篇2 第三十三条; 篇1 第十一条: 5)
    check_source_days: int = 15
    deletion_days: int = 2  # own commendations removed on request (seed 003 篇5 第二十九条)
    evidence_max_bytes: int = 10_485_760  # an objection's evidence file
    # Ids of the `gov` certificates of credit portals, which sign subjects in and act for the subject
    # they name over the Lifecycle service; any other `gov` certificate acts for no one.
    portals: tuple[str, ...] = ()
    sweep_scope: Literal["origin", "all"] = "origin"  # archive sweep: records this node originated, or all
    # While `start` runs: objection tick + archive sweep this often (node/lifecycle/schedule.py); 0 = never
    schedule_every_s: float = 3600.0


@dataclass(frozen=True)
class FileAdapterConfig:
    """A drop folder of CSV/XLSX files in the catalogue templates (docs/adapters.md)."""

    kind: Literal["file"]
    dir: str
    item: str = ""  # '' = from the file name's prefix (item code or item name)
    name: str = ""  # identifies the adapter in logs and the store; default "file:DIR"
    interval_s: float = 5.0  # poll interval; a file is read once unchanged across two polls
    ready_marker: bool = False  # wait for NAME.ready instead of a stable size and mtime
    encoding: str = ""  # '' = detect (UTF-8 with or without BOM, else GB18030)


@dataclass(frozen=True)
class DatabaseAdapterConfig:
    """A table or view a department publishes, pulled incrementally (docs/adapters.md)."""

    kind: Literal["database"]
    item: str
    url: str  # any SQLAlchemy URL, e.g. postgresql://u@h/db, mysql+pymysql://u@h/db
    table: str  # table or view, optionally schema.table
    watermark: str  # a column that grows when a row is added or changed (update time or id)
    key: tuple[str, ...] = ()  # tie-breaker columns, unique with the watermark; () = primary key
    columns: dict[str, str] = field(default_factory=dict)  # field code -> column; default same name
    name: str = ""  # identifies the adapter (its watermark in the store); default "database:TABLE"
    interval_s: float = 30.0
    batch_rows: int = 8192  # rows per committed batch (records + watermark in one transaction)
    page_rows: int = 20000  # rows per keyset query on the source
    feedback_table: str = ""  # '' = never write to the source; else refusals are written there
    timeout_s: float = 30.0  # to connect, and for each statement; a silent source fails the poll, retried


AdapterConfig = FileAdapterConfig | DatabaseAdapterConfig


@dataclass(frozen=True)
class NodeConfig:
    id: str
    level: Level
    identity: IdentityConfig
    unit: str = ""  # the source unit (USCC) a department node reports for
    store: StoreConfig = field(default_factory=StoreConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    abuse: AbuseConfig = field(default_factory=AbuseConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    parent: ParentConfig | None = None
    children: tuple[ChildConfig, ...] = ()
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    forwarding: ForwardingConfig = field(default_factory=ForwardingConfig)
    peers: tuple[PeerConfig, ...] = ()
    adapters: tuple[AdapterConfig, ...] = ()
    sources: tuple[SourceConfig, ...] = ()  # source systems submitting unsigned records over gRPC
    base_dir: str = "."  # directory relative paths are resolved against (the config file's)

    def path(self, value: str) -> pathlib.Path:
        """Resolve a path from the config against the config file's directory."""
        p = pathlib.Path(value).expanduser()
        return p if p.is_absolute() else pathlib.Path(self.base_dir) / p

    @property
    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix):]))
        return url


def parse_config(data: Mapping[str, Any], *, base_dir: str = ".",
                 environ: Mapping[str, str] | None = None) -> NodeConfig:
    if "base_dir" in data:
        raise ConfigError("unknown configuration key: base_dir")
    cfg = build_dataclass(NodeConfig, {**data, "base_dir": base_dir}, "", environ)
    if cfg.level == "department" and not cfg.unit:
        raise ConfigError("unit: a department node must name the source unit (USCC) it reports for", field="unit")
    try:
        parse_node_id(cfg.id)
        named = level_of(cfg.id)
    except ConfigError as exc:
        raise ConfigError(f"id: {exc.message}", field="id") from None
    if named != cfg.level:
        raise ConfigError(f"level: {cfg.level!r}, but the node id {cfg.id!r} names level {named!r}", field="level")
    _check_quantities(cfg, "")
    for i, code in enumerate(cfg.validation.uscc_allowlist):
        # The list excuses a failed check character, or an authority/category GB 32100's table does
        # not have yet; a code no USCC can be (length, alphabet, division) would never match.
        listed = normalize_text(code).replace(" ", "").upper()
        problem = check_uscc(listed, label=f"validation.uscc_allowlist[{i}]", allowlist=frozenset({listed}))
        if problem is not None and not problem.warning:
            raise ConfigError(problem.message, field=f"validation.uscc_allowlist[{i}]")
    if cfg.unit and cfg.unit not in cfg.validation.uscc_allowlist:
        # Every record this node signs as its origin names this unit; a typo would be signed in.
        problem = check_uscc(cfg.unit, label="unit")
        if problem is not None:
            raise ConfigError(problem.message, field="unit")
    _check_node_ids(cfg)
    for i, child in enumerate(cfg.children):
        _check_units(child.units, f"children[{i}].units", cfg.validation.uscc_allowlist)
    for i, source in enumerate(cfg.sources):
        _check_units(source.units, f"sources[{i}].units", cfg.validation.uscc_allowlist)
    names = [adapter_name(a) for a in cfg.adapters]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"adapters[{i}].name: {n!r} is used by another adapter; give each a name",
                              field=f"adapters[{i}].name")
    for i, source in enumerate(cfg.sources):
        try:
            kind = parse_node_id(source.id).kind
        except ConfigError as exc:
            raise ConfigError(f"sources[{i}].id: {exc.message}", field=f"sources[{i}].id") from None
        if kind != "source":
            raise ConfigError(f"sources[{i}].id: {source.id!r} is not a source id (source:<name>…)",
                              field=f"sources[{i}].id")
    _check_tree_levels(cfg)
    return cfg


def _check_tree_levels(cfg: NodeConfig) -> None:
    # A parent at this level or below would be sent what the catalogue keeps here (class C, a city).
    rank = LEVEL_RANK[cfg.level]
    if cfg.parent is not None and LEVEL_RANK[level_of(cfg.parent.id)] <= rank:
        raise ConfigError(f"parent.id: {cfg.parent.id!r} is not above this {cfg.level} node", field="parent.id")
    for i, c in enumerate(cfg.children):
        if LEVEL_RANK[level_of(c.id)] >= rank:
            raise ConfigError(f"children[{i}].id: {c.id!r} is not below this {cfg.level} node", field=f"children[{i}].id")


def _check_node_ids(cfg: NodeConfig) -> None:
    """The nodes of the tree by an id a node's certificate can carry: another would match no peer,
    and what it sent (or acknowledged, or released) would be refused one by one at run time."""
    named = [("parent.id", cfg.parent.id)] if cfg.parent else []
    named += [(f"children[{i}].id", c.id) for i, c in enumerate(cfg.children)]
    named += [(f"peers[{i}].id", p.id) for i, p in enumerate(cfg.peers)]
    named += [("catalog.authority", cfg.catalog.authority)] if cfg.catalog.authority else []
    for where, text in named:
        try:
            is_node = parse_node_id(text).is_node
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}", field=where) from None
        if not is_node:
            raise ConfigError(f"{where}: {text!r} is a caller's id, not a node's (dept:330102:scjgj, "
                              "district:330102, city:330100 …)", field=where)


def _check_units(units: tuple[str, ...], path: str, allowlist: tuple[str, ...]) -> None:
    """Refuse a unit no record can name: it would match nothing, and every row of the peer it was
    meant for would be refused (E_NOT_AUTHORIZED) while the node ran as if configured."""
    for j, unit in enumerate(units):
        where = f"{path}[{j}]"
        if unit == "*":  # the catalogue's source_units writes "any" so; here it is the empty list
            raise ConfigError(f"{where}: '*' is no unit; to accept any unit, write units: [] (or leave it out)",
                              field=where)
        problem = None if unit in allowlist else check_uscc(unit, label=where)
        if problem is not None:
            raise ConfigError(problem.message, field=where)


# Counts, sizes and intervals where 0 would stall or break the node (a pool of no threads, batches
# of nothing, polling without pause); every other number in the configuration may be 0 but not
# negative (reconcile_every_s: 0 = on demand only; lifecycle.schedule_every_s: 0 = never).
_MORE_THAN_ZERO: Final = frozenset({
    "prefetch", "batch", "max_attempts", "max_workers", "burst", "batch_rows", "page_rows", "evidence_max_bytes",
    "rate_per_s", "interval_s", "timeout_s", "fanout_deadline_s", "delegation_max_age_s", "block_after",
    "block_window_s", "lease_s", "min_backoff_s", "max_backoff_s"})


def _check_quantities(value: object, path: str) -> None:
    """Refuse, naming the key, a number the node cannot run with (checked at start, not at use)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            sub = f"{path}.{f.name}" if path else f.name
            v = getattr(value, f.name)
            if isinstance(v, int | float) and not isinstance(v, bool):
                if v < 0 or (v == 0 and f.name in _MORE_THAN_ZERO):
                    need = "more than 0" if f.name in _MORE_THAN_ZERO else "0 or more"
                    raise ConfigError(f"{sub}: must be {need}, got {v!r}", field=sub)
            else:
                _check_quantities(v, sub)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_quantities(item, f"{path}[{i}]")


def adapter_name(cfg: AdapterConfig) -> str:
    """The adapter's stable name: its state in the store (watermarks) is kept under it."""
    if cfg.name:
        return cfg.name
    return f"file:{cfg.dir}" if isinstance(cfg, FileAdapterConfig) else f"database:{cfg.table}"


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> NodeConfig:
    p = pathlib.Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a UTF-8 text file (byte {exc.start}): is it the node's YAML "
                          "configuration?") from None
    try:
        # Plain scalars as text: each setting's declared type reads it, so YAML 1.1 never turns a
        # name `no` into False or 1.10 into 1.1 before it gets there.
        data = load_strict(text, typed=False)
    except DuplicateKeyError as exc:
        raise ConfigError(f"{p}: {exc}", field=exc.path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: {yaml_problem(exc, text)}") from None
    except ValueError as exc:  # PyYAML building a value it recognised: 2026-13-01 as a date
        raise ConfigError(f"{p}: a value cannot be read ({exc}); quote it if it is text") from None
    if data is None or data == {}:  # 0 bytes, only comments, or `{}`: not one key to name as missing
        raise ConfigError(f"{p}: the file is empty (no settings); a node's configuration gives at least "
                          f"{', '.join(required_keys(NodeConfig))} (and unit, for a department); "
                          "`credit-node init` writes one")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return parse_config(data, base_dir=str(p.resolve().parent), environ=environ)


def to_dict(cfg: NodeConfig) -> dict[str, Any]:
    """For ``show-config``: the effective configuration after defaults and ${ENV} expansion.

    Passwords in URLs (the store's, a broker's, a department database's) are shown as ``***``:
    the output is for reading and pasting into tickets, and secrets are never printed.
    """
    out = dataclasses.asdict(cfg)
    out.pop("base_dir", None)
    return cast(dict[str, Any], redacted(out))
