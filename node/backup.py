"""Backups of a node's store, the restore drill, and the restore.

Seed 000 第二十四条: 共享平台应当对重要文件、数据……作定期备份,以便应急恢复; seed 001 附件3 五(二): 每年至少进行
一次灾备恢复演练; seed 003 requires 异地备份设施. So a backup must be a file that can be carried
elsewhere, and it must be possible to prove, without touching the node, that it would restore.

A backup is one SQLite file whatever the store is (SQLite or PostgreSQL): every table of the
schema as one consistent snapshot (all read in one transaction, while the node keeps running),
and a ``backup_manifest`` table saying whose store it is, when it was taken, at which schema
revision, how many rows each table held and the heads of the two hash-chained logs. It is written
beside its destination and renamed into place only when complete, mode 0600: it holds every
record unmasked and the query log. Keys are not in it; the identity directory is kept, and
guarded, on its own (docs/operations.md).

The drill (``drill``) restores the file into a scratch store and proves it whole: row counts and
log heads as the manifest says, every record's signature chain verified, both logs' hash chains
intact. ``restore`` copies a backup into the node's own store, which must hold nothing yet, in one
transaction, and then runs the same checks on the result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from cryptography import x509
from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, Text, func, insert, select, text

from node.durable import sync_dir
from node.errors import NodeError, StoreError, UsageError
from node.integrity import Finding, verify_store
from node.signing import Verifier
from node.store import Store
from node.store._sql import (
    execute_many,
    insert_for,
    is_postgres,
    positional_sql,
    translated,
    write_transaction,
)
from node.store.engine import HEAD_REVISION, SCHEMA_UNKNOWN, migrate, open_engine
from node.store.tables import (
    audit_log,
    certificates,
    meta,
    metadata,
    query_log,
    record_heads,
    record_revisions,
)
from node.truststore import TrustStore, identity_of, key_id_of

__all__ = ["FORMAT", "DrillReport", "Manifest", "create_backup", "drill", "read_manifest", "restore"]

FORMAT = "credit-node-backup/1"
_PAGE = 5000  # rows read and written at a time: bounded memory whatever the store's size
_MANIFEST = Table("backup_manifest", MetaData(), Column("key", String(64), primary_key=True),
                  Column("value", Text, nullable=False))
# What a node writes into a store it opens before anything else happens: a restore may replace it.
_FRESH_META_KEYS = frozenset({"store.owner"})
_PARTIAL = ".partial"  # suffix of a backup being written (".NAME.partial")
_SCRATCH = "credit-node-restore-"  # the drill's and the restore's scratch directories, in the temp directory


@dataclass(frozen=True)
class Manifest:
    node_id: str
    created_at: str  # ISO 8601, UTC
    schema: str  # the store's Alembic revision when copied
    source: str  # sqlite | postgresql
    tables: dict[str, int]
    audit_head: int  # highest seq of the audit log (0: empty)
    query_head: int

    def as_dict(self) -> dict[str, object]:
        return {"format": FORMAT, **asdict(self)}


@dataclass(frozen=True)
class DrillReport:
    manifest: Manifest
    records: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


def create_backup(engine: Engine, node_id: str, out: pathlib.Path, *,
                  signer: bytes | None = None) -> tuple[Manifest, str]:
    """Copy the store behind ``engine`` into the new file ``out``; returns its manifest and SHA-256.

    ``signer`` is the node's own signing certificate (DER): added to the backup's ``certificates``
    so that the records the node signed verify wherever the backup is checked or restored (another
    node of the federation, or this node restored with a new identity), not only beside its keys."""
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} exists: a backup is never written over another file", field="out")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a directory", field="out")
    partial = out.with_name(f".{out.name}{_PARTIAL}")  # a killed run's leftover is not a backup
    _sweep_partials(out.parent)
    try:
        held = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}", field="out") from None
    # Locked while this run writes it: a backup killed half-way leaves its copy unlocked, and the
    # next backup into the directory, whatever its name, removes it (see _sweep_partials).
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        dst = open_engine(f"sqlite:///{partial}")
        try:
            migrate(dst)
            with _snapshot(engine) as src, translated("writing the backup"), write_transaction(dst) as conn:
                schema = src.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                if schema != HEAD_REVISION:
                    raise StoreError(f"the store is at schema {schema}, this node's code at {HEAD_REVISION}: "
                                     "open it once with this version (any command migrates it), then back it up")
                tables = {t.name: _copy(src, conn, t) for t in metadata.sorted_tables}
                if signer is not None:
                    tables[certificates.name] += _add_certificate(conn, signer)
                manifest = Manifest(node_id=node_id, created_at=dt.datetime.now(dt.UTC).isoformat(
                    timespec="seconds"), schema=schema, source=src.dialect.name, tables=tables,
                    audit_head=_head(src, audit_log), query_head=_head(src, query_log))
                _MANIFEST.create(conn)
                conn.execute(insert(_MANIFEST), [{"key": k, "value": str(v)} for k, v in _flat(manifest)])
            with dst.connect() as conn:  # one self-contained file: no -wal beside it to forget
                conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
        finally:
            dst.dispose()
        digest = _sha256(partial)
        os.replace(partial, out)
        sync_dir(out.parent)
    except BaseException:
        _remove_partial(partial)
        raise
    finally:
        os.close(held)
    return manifest, digest


def _sweep_partials(directory: pathlib.Path) -> None:
    """Remove what backups killed half-way left in ``directory``: ``.NAME.partial`` files (and
    their SQLite journals) whose lock no process holds. Backups are named by date, so waiting for
    one of the same name would leave each killed run's copy there for good; near its end such a
    copy holds the whole store, unmasked, and no audit entry says it was taken."""
    for path in directory.glob(f".*{_PARTIAL}"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone meanwhile, or not ours to open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a backup still being written
        else:
            _remove_partial(path)
        finally:
            os.close(fd)


def _remove_partial(path: pathlib.Path) -> None:
    for leftover in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))):
        leftover.unlink(missing_ok=True)


def read_manifest(path: pathlib.Path) -> Manifest:
    """The manifest of the backup ``path``, read without changing the file."""
    import sqlite3

    if not path.is_file():
        raise UsageError(f"{path} is not a file", field="file")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            rows = dict(db.execute("SELECT key, value FROM backup_manifest").fetchall())
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path} is not a node backup ({exc})", field="file") from None
    if rows.get("format") != FORMAT:
        raise UsageError(f"{path} is not a node backup in format {FORMAT} (format {rows.get('format')!r})",
                         field="file")
    try:
        tables = {k.removeprefix("rows."): int(v) for k, v in rows.items() if k.startswith("rows.")}
        return Manifest(node_id=rows["node_id"], created_at=rows["created_at"], schema=rows["schema"],
                        source=rows["source"], tables=tables, audit_head=int(rows["audit_head"]),
                        query_head=int(rows["query_head"]))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"{path}: the backup's manifest is damaged ({exc})", field="file") from None


def drill(path: pathlib.Path, trust: TrustStore) -> DrillReport:
    """Restore ``path`` into a scratch store and check it whole (the backup is not changed)."""
    manifest = read_manifest(path)
    with _scratch_copy(path, manifest.schema) as store:
        return _checked(store, manifest, trust)


def restore(path: pathlib.Path, target: Store, node_id: str, trust: TrustStore) -> DrillReport:
    """Copy the backup ``path`` of node ``node_id`` into ``target``, which must hold nothing yet."""
    manifest = read_manifest(path)
    if manifest.node_id != node_id:
        raise UsageError(f"{path} is a backup of node {manifest.node_id}, not of {node_id}", field="file")
    with (_scratch_copy(path, manifest.schema) as scratch, translated("restoring the backup"),
          write_transaction(target.engine) as conn):
        held = _held(conn)
        if held:
            listed = ", ".join(f"{name}: {n}" for name, n in sorted(held.items()))
            raise UsageError(f"the node's store is not empty ({listed}): restore into a new store "
                             "(point store.url at a new file or database)", field="store.url")
        conn.execute(meta.delete())
        with _snapshot(scratch.engine) as src:
            for table in metadata.sorted_tables:
                _copy(src, conn, table)
        if is_postgres(conn):
            _advance_sequences(conn)
    return _checked(target, manifest, trust)


# --- copying ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one moment of the store, while writers go on."""
    with translated("reading the store"), engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
        else:
            with conn.begin():
                conn.exec_driver_sql("BEGIN")  # deferred: the first read fixes the snapshot (WAL)
                yield conn


def _copy(src: Connection, dst: Connection, table: Table) -> int:
    columns = [c.name for c in table.columns]
    sql = positional_sql(dst, insert(table), columns)
    result = src.execution_options(yield_per=_PAGE).execute(select(table))
    n = 0
    with translated(f"copying table {table.name}"):  # a row the target refuses: which table it is in
        for part in result.partitions():
            execute_many(dst, insert(table), columns, [tuple(row) for row in part], sql=sql)
            n += len(part)
    return n


def _add_certificate(conn: Connection, der: bytes) -> int:
    """Add ``der`` to the ``certificates`` of the copy unless it is there already; 1 if added."""
    row = {"key_id": key_id_of(der), "node_id": identity_of(x509.load_der_x509_certificate(der)).node_id,
           "der": der, "added_at_ms": time.time_ns() // 1_000_000}
    return conn.execute(insert_for(conn, certificates).values(**row).on_conflict_do_nothing(
        index_elements=["key_id"])).rowcount


def _head(conn: Connection, log: Table) -> int:
    return int(conn.execute(select(func.coalesce(func.max(log.c.seq), 0))).scalar_one())


def _held(conn: Connection) -> dict[str, int]:
    held = {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in metadata.sorted_tables if t is not meta}
    held = {name: n for name, n in held.items() if n}
    keys = set(conn.execute(select(meta.c.key)).scalars())
    if keys - _FRESH_META_KEYS:
        held["meta"] = len(keys)
    return held


def _advance_sequences(conn: Connection) -> None:
    """PostgreSQL hands out ids from sequences that copied rows did not advance."""
    for table in metadata.sorted_tables:
        if "id" in table.c and table.c.id.autoincrement is True:
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                              f"COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"))


@contextlib.contextmanager
def _scratch_copy(path: pathlib.Path, schema: str) -> Iterator[Store]:
    """The backup copied to a private directory and opened as a store (migrated if it is older)."""
    _sweep_scratch()
    with tempfile.TemporaryDirectory(prefix=_SCRATCH) as tmp, _claimed(pathlib.Path(tmp)):
        copy = pathlib.Path(tmp) / "store.db"
        try:
            shutil.copyfile(path, copy)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}", field="file") from None
        engine = open_engine(f"sqlite:///{copy}")
        try:
            try:
                migrate(engine)
            except StoreError as exc:
                if exc.code != SCHEMA_UNKNOWN:
                    raise
                raise UsageError(f"{path} was taken at schema {schema}, which this release does not know "
                                 f"(it is at {HEAD_REVISION}): check or restore it with the release that "
                                 "made it, or a newer one", field="file") from None
            yield Store(engine)
        finally:
            engine.dispose()


@contextlib.contextmanager
def _claimed(directory: pathlib.Path) -> Iterator[None]:
    """Hold a lock in ``directory`` while it is in use; it appears already locked (renamed into place)."""
    fd = os.open(directory / ".lock.new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(directory / ".lock.new", directory / ".lock")
        yield
    finally:
        os.close(fd)


def _sweep_scratch() -> None:
    """Remove the scratch copies (each a whole store, unmasked) of drills and restores that were
    killed: directories whose lock no process holds any more."""
    for directory in pathlib.Path(tempfile.gettempdir()).glob(f"{_SCRATCH}*"):
        try:
            fd = os.open(directory / ".lock", os.O_RDONLY)
        except OSError:
            continue  # being set up, or not ours to open
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # in use
        else:
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(fd)


def _checked(store: Store, manifest: Manifest, trust: TrustStore) -> DrillReport:
    findings: list[Finding] = []
    with translated("counting the restored rows"), store.engine.connect() as conn:
        for name, expected in sorted(manifest.tables.items()):
            table = metadata.tables.get(name)
            found = int(conn.execute(select(func.count()).select_from(table)).scalar_one()) if table is not None else 0
            if found != expected:
                findings.append(Finding("table", name, "E_BACKUP_ROWS",
                                        f"{found} rows where the backup's manifest says {expected}"))
        findings += _heads_problems(conn)
        for log, expected in ((audit_log, manifest.audit_head), (query_log, manifest.query_head)):
            if (head := _head(conn, log)) != expected:
                findings.append(Finding(log.name, str(head), "E_BACKUP_HEAD",
                                        f"the log ends at seq {head}; the manifest says {expected}"))
    for der in store.certificates.all():  # signers the node had learned: their chains verify
        with contextlib.suppress(NodeError):
            trust.add_certificate(der)
    report = verify_store(store, Verifier(trust))
    return DrillReport(manifest, report.records, findings + report.findings)


def _heads_problems(conn: Connection) -> list[Finding]:
    """A snapshot taken while writers ran must still pair every head with its revision and every
    record with a head at its highest revision: a copy of tables at different moments would not."""
    h, r = record_heads.c, record_revisions.c
    latest = select(r.record_id, func.max(r.revision).label("revision")).group_by(r.record_id).subquery()
    paired = select(func.count()).select_from(record_heads.join(
        latest, (h.record_id == latest.c.record_id) & (h.revision == latest.c.revision)))
    heads = int(conn.execute(select(func.count()).select_from(record_heads)).scalar_one())
    records = int(conn.execute(select(func.count()).select_from(latest)).scalar_one())
    matched = int(conn.execute(paired).scalar_one())
    if heads == records == matched:
        return []
    return [Finding("table", "record_heads", "E_BACKUP_HEADS", f"{records} records, {heads} heads, of which "
                    f"{matched} point at their record's latest revision")]


def _flat(manifest: Manifest) -> Iterator[tuple[str, object]]:
    yield "format", FORMAT
    for key, value in asdict(manifest).items():
        if key == "tables":
            yield from ((f"rows.{name}", n) for name, n in value.items())
        else:
            yield key, value


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()

