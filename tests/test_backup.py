"""node/backup.py: a backup is one consistent file, the drill proves it whole, a restore brings it back."""

from __future__ import annotations

import hashlib
import pathlib
import sqlite3
from collections.abc import Iterator

import pytest
import yaml

from node import backup
from node.app import Node, build_node
from node.config import load_config
from node.errors import StoreError, UsageError
from node.provisioning import init_node
from node.sampledata import penalty_rows, write_csv

UNIT = "11330102MB0000019G"
NODE_ID = "dept:330102:scjgj"


@pytest.fixture
def node_yaml(tmp_path: pathlib.Path) -> pathlib.Path:
    return pathlib.Path(init_node(tmp_path / "n", node_id=NODE_ID, level="department", unit=UNIT))


@pytest.fixture
def node(node_yaml: pathlib.Path) -> Iterator[Node]:
    n = build_node(load_config(node_yaml))
    try:
        yield n
    finally:
        n.close()


def _import(node: Node, path: pathlib.Path, rows: int, *, start: int = 1, bad_every: int = 0) -> None:
    item = node.catalog.item("admin_penalty")
    write_csv(path, item, penalty_rows(rows, source_unit=UNIT, seed=3, start_no=start, bad_every=bad_every))
    node.import_file(path, "admin_penalty")


def _node_on(node_yaml: pathlib.Path, url: str) -> pathlib.Path:
    """The same node (id, keys) configured on another store."""
    data = yaml.safe_load(node_yaml.read_text(encoding="utf-8"))
    data["store"]["url"] = url
    other = node_yaml.with_name("restore.yaml")
    other.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return other


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_backup_restores_into_an_empty_store_of_either_kind_and_the_node_goes_on_there(
        node: Node, node_yaml: pathlib.Path, tmp_path: pathlib.Path, db_url: str) -> None:
    _import(node, tmp_path / "a.csv", 60, bad_every=20)  # refused rows: ids from a sequence on PostgreSQL
    out = tmp_path / "b.db"
    manifest, digest = backup.create_backup(node.store.engine, NODE_ID, out)
    assert digest == _sha256(out)
    assert manifest.tables["record_revisions"] == 57 and manifest.tables["rejections"] == 3

    restored = build_node(load_config(_node_on(node_yaml, db_url)))
    try:
        report = backup.restore(out, restored.store, NODE_ID, restored.trust)
        assert report.ok, report.findings
        assert report.records == 57
        subject = next(r for r in penalty_rows(1, source_unit=UNIT, seed=3))["CF_XDR_SHXYM"]
        assert restored.store.records.current_for_subject(subject) == node.store.records.current_for_subject(subject)
        # The restored node keeps working: new refused rows get new ids (sequences advanced).
        _import(restored, tmp_path / "more.csv", 40, start=61, bad_every=20)
        assert len(restored.store.rejections.list_rejections(source_unit=UNIT)) == 5
    finally:
        restored.close()


def test_a_backup_is_one_private_file_and_the_drill_leaves_it_unchanged(node: Node, tmp_path: pathlib.Path) -> None:
    _import(node, tmp_path / "a.csv", 30)
    out = tmp_path / "b.db"
    _, digest = backup.create_backup(node.store.engine, NODE_ID, out)
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("b.db") or ".partial" in p.name) == ["b.db"]
    report = backup.drill(out, node.trust)
    assert report.ok and report.records == 30
    assert _sha256(out) == digest


@pytest.fixture
def node_on_db(node_yaml: pathlib.Path, db_url: str) -> Iterator[Node]:
    """The node on a store of each kind."""
    n = build_node(load_config(_node_on(node_yaml, db_url)))
    try:
        yield n
    finally:
        n.close()


def test_the_snapshot_does_not_see_what_is_written_while_it_is_copied(
        node_on_db: Node, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = node_on_db
    _import(node, tmp_path / "a.csv", 20)
    real_copy, wrote = backup._copy, []

    def copy_then_write(src, dst, table):  # type: ignore[no-untyped-def]
        n = real_copy(src, dst, table)
        if not wrote:  # after the first table, before the others: another writer commits
            wrote.append(True)
            _import(node, tmp_path / "during.csv", 10, start=21)
        return n

    monkeypatch.setattr(backup, "_copy", copy_then_write)
    out = tmp_path / "b.db"
    manifest, _ = backup.create_backup(node.store.engine, NODE_ID, out)
    assert wrote and node.store.records.counts()["admin_penalty"] == 30
    assert manifest.tables["record_revisions"] == 20 and manifest.tables["record_heads"] == 20
    assert backup.drill(out, node.trust).ok


@pytest.mark.parametrize(("damage", "code"), [
    ("UPDATE record_revisions SET body = CAST(replace(CAST(body AS TEXT), '罚', '奖') AS BLOB) "
     "WHERE rowid = 3", "E_BODY_MISMATCH"),
    ("DELETE FROM record_revisions WHERE rowid = 3", "E_BACKUP_ROWS"),
    ("DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)", "E_BACKUP_HEAD"),
    ("UPDATE record_heads SET revision = 7 WHERE rowid = 2", "E_BACKUP_HEADS"),
])
def test_a_damaged_backup_fails_the_drill_naming_what_is_wrong(node: Node, tmp_path: pathlib.Path,
                                                               damage: str, code: str) -> None:
    _import(node, tmp_path / "a.csv", 10)
    out = tmp_path / "b.db"
    backup.create_backup(node.store.engine, NODE_ID, out)
    with sqlite3.connect(out) as db:
        assert db.execute(damage).rowcount == 1
    report = backup.drill(out, node.trust)
    assert not report.ok
    assert code in {f.code for f in report.findings}, report.findings


def test_restore_refuses_a_store_that_holds_anything_and_changes_nothing(node: Node, tmp_path: pathlib.Path) -> None:
    _import(node, tmp_path / "a.csv", 10)
    out = tmp_path / "b.db"
    backup.create_backup(node.store.engine, NODE_ID, out)
    _import(node, tmp_path / "b.csv", 5, start=11)
    with pytest.raises(UsageError, match=r"not empty \(.*record_revisions: 15"):
        backup.restore(out, node.store, NODE_ID, node.trust)
    assert node.store.records.counts()["admin_penalty"] == 15


def test_restore_refuses_a_backup_of_another_node(node: Node, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "b.db"
    backup.create_backup(node.store.engine, NODE_ID, out)
    with pytest.raises(UsageError, match="backup of node dept:330102:scjgj, not of dept:330102:other"):
        backup.restore(out, node.store, "dept:330102:other", node.trust)


def test_a_backup_is_never_written_over_a_file(node: Node, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "b.db"
    out.write_bytes(b"precious")
    with pytest.raises(UsageError, match="exists"):
        backup.create_backup(node.store.engine, NODE_ID, out)
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 100, "sqlite"])
def test_a_file_that_is_no_backup_is_refused_clearly(tmp_path: pathlib.Path, content: bytes | str) -> None:
    path = tmp_path / "x.db"
    if content == "sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (a)")
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with pytest.raises(UsageError, match="not a node backup"):
        backup.read_manifest(path)


def test_a_backup_passes_the_drill_on_another_node_of_the_federation(tmp_path: pathlib.Path) -> None:
    city = build_node(load_config(init_node(tmp_path / "city", node_id="city:330100", level="city")))
    dept = build_node(load_config(init_node(tmp_path / "dept", node_id=NODE_ID, level="department", unit=UNIT,
                                            ca_dir=tmp_path / "city" / "ca")))
    try:
        _import(dept, tmp_path / "a.csv", 10)
        out = tmp_path / "b.db"
        backup.create_backup(dept.store.engine, NODE_ID, out, signer=dept.identity.signing_cert_der)
        report = backup.drill(out, city.trust)  # the city knows the CA, not the department's signing key
        assert report.ok, report.findings[:2]
        assert report.records == 10
    finally:
        city.close()
        dept.close()


def test_the_copy_a_killed_drill_left_behind_is_removed_by_the_next_one(
        node: Node, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import os
    import tempfile

    out = tmp_path / "b.db"
    backup.create_backup(node.store.engine, NODE_ID, out)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    killed, running = scratch / "credit-node-restore-killed", scratch / "credit-node-restore-running"
    for d in (killed, running):
        d.mkdir()
        (d / "store.db").write_bytes(out.read_bytes())  # a whole store, unmasked
        (d / ".lock").touch()
    held = os.open(running / ".lock", os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert backup.drill(out, node.trust).ok
        assert not killed.exists()
        assert (running / "store.db").exists()  # another drill still at work is left alone
    finally:
        os.close(held)
    assert sorted(p.name for p in scratch.iterdir()) == ["credit-node-restore-running"]


def test_a_backup_with_text_postgresql_refuses_fails_its_restore_naming_the_table_and_leaves_the_store_empty(
        node: Node, node_yaml: pathlib.Path, tmp_path: pathlib.Path, db_url: str) -> None:
    _import(node, tmp_path / "a.csv", 5)
    out = tmp_path / "b.db"
    backup.create_backup(node.store.engine, NODE_ID, out)
    clean = tmp_path / "clean.db"
    clean.write_bytes(out.read_bytes())
    with sqlite3.connect(out) as db:  # SQLite keeps a NUL in text; PostgreSQL refuses it
        db.execute("INSERT INTO meta VALUES ('odd', 'a' || char(0) || 'b')")
        db.execute("UPDATE backup_manifest SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rows.meta'")
    restored = build_node(load_config(_node_on(node_yaml, db_url)))
    try:
        if not db_url.startswith("postgresql"):
            assert backup.restore(out, restored.store, NODE_ID, restored.trust).ok
            return
        with pytest.raises(StoreError, match=r"copying table meta: .*NUL"):
            backup.restore(out, restored.store, NODE_ID, restored.trust)
        assert restored.store.records.counts() == {}
        assert backup.restore(clean, restored.store, NODE_ID, restored.trust).ok  # empty: a second restore works
    finally:
        restored.close()


def test_a_backup_from_a_newer_release_is_refused_naming_its_schema(node: Node, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "b.db"
    backup.create_backup(node.store.engine, NODE_ID, out)
    with sqlite3.connect(out) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
        db.execute("UPDATE backup_manifest SET value = '9999' WHERE key = 'schema'")
    with pytest.raises(UsageError, match="taken at schema 9999, which this release does not know"):
        backup.drill(out, node.trust)
    with pytest.raises(UsageError, match="taken at schema 9999"):
        backup.restore(out, node.store, NODE_ID, node.trust)


# A backup run killed at the statement named, in a process of its own: SIGKILL leaves what a run
# leaves behind as no in-process failure does.
_KILLED_BACKUP = """
import os, pathlib, sys
from sqlalchemy import event
from node import backup
from node.store.engine import open_engine

opened = backup.open_engine

def killed_at(url):
    engine = opened(url)

    @event.listens_for(engine, "before_cursor_execute")
    def kill(conn, cursor, statement, *args):
        if sys.argv[4] in statement:
            os._exit(9)

    return engine

backup.open_engine = killed_at
backup.create_backup(open_engine(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3]))
"""


@pytest.mark.parametrize("killed_at", ["CREATE TABLE backup_manifest", "PRAGMA journal_mode=DELETE"])
def test_what_a_killed_backup_left_is_removed_by_the_next_backup_whatever_its_name(
        node: Node, tmp_path: pathlib.Path, killed_at: str) -> None:
    # Backups are named by date: a killed run's .NAME.partial (at its end a whole copy of the
    # store, unmasked, that no audit entry mentions) was removed only by a later backup of the
    # same name, so in practice never.
    import fcntl
    import os
    import subprocess
    import sys

    _import(node, tmp_path / "a.csv", 30)
    backups = tmp_path / "backups"
    backups.mkdir()
    killed = subprocess.run([sys.executable, "-c", _KILLED_BACKUP, str(node.store.engine.url), NODE_ID,
                             str(backups / "monday.db"), killed_at], capture_output=True, text=True, check=False)
    assert killed.returncode == 9, killed.stderr
    assert any(p.name.startswith(".monday.db.partial") for p in backups.iterdir())
    running = backups / ".tuesday.db.partial"  # another backup still being written is left alone
    running.write_bytes(b"")
    held = os.open(running, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        backup.create_backup(node.store.engine, NODE_ID, backups / "wednesday.db")
    finally:
        os.close(held)
    assert sorted(p.name for p in backups.iterdir()) == [".tuesday.db.partial", "wednesday.db"]
    assert backup.drill(backups / "wednesday.db", node.trust).ok
