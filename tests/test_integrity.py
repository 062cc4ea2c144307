"""``credit-node verify`` against a store edited behind the node's back: every edit fails, naming its row."""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import sqlite3
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from node.cli import cli
from node.provisioning import init_node

UNIT = "11330106MB00000275"
SAMPLE = pathlib.Path(__file__).parent.parent / "exchange_config" / "samples" / "dept-330106-scjgj-admin_penalty.csv"

Edit = Callable[[sqlite3.Connection, list[str]], None]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, list[str]]:
    """A department store with four records, one of them at revision 2 (an objection filed)."""
    root = tmp_path_factory.mktemp("node")
    cfg = str(init_node(root / "n", node_id="dept:330106:scjgj", level="department", unit=UNIT))
    small = root / "small.csv"
    small.write_text("".join(SAMPLE.read_text(encoding="utf-8-sig").splitlines(keepends=True)[:5]), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", cfg, "import", "--item", "admin_penalty", str(small)]).exit_code == 0
    db = root / "n" / "node.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT record_id, subject_code FROM record_heads ORDER BY record_id").fetchall()
    filed = runner.invoke(cli, ["--config", cfg, "objection", "file", rows[0][0], "--by", rows[0][1],
                                "--reason", "金额有误"])
    assert filed.exit_code == 0, filed.output
    return root / "n", [r[0] for r in rows]


def _verify_after(pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path, edit: Edit) -> tuple[int, str]:
    src, ids = pristine
    node_dir = tmp_path / "n"
    shutil.copytree(src, node_dir)
    text = (node_dir / "node.yaml").read_text()
    (node_dir / "node.yaml").write_text(text.replace(str(src), str(node_dir)))
    with sqlite3.connect(node_dir / "node.db") as conn:
        edit(conn, ids)
    r = CliRunner().invoke(cli, ["--config", str(node_dir / "node.yaml"), "verify"])
    return r.exit_code, r.output


def test_the_untouched_store_verifies(pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path) -> None:
    code, out = _verify_after(pristine, tmp_path, lambda conn, ids: None)
    assert code == 0, out


def _swap_bodies(conn: sqlite3.Connection, ids: list[str]) -> None:
    a, b = (conn.execute("SELECT body, body_digest, signed FROM record_revisions WHERE record_id = ? AND revision = 1",
                         (rid,)).fetchone() for rid in ids[1:3])
    for rid, (body, digest, signed) in ((ids[1], b), (ids[2], a)):
        conn.execute("UPDATE record_revisions SET body = ?, body_digest = ?, signed = ? WHERE record_id = ? "
                     "AND revision = 1", (body, digest, signed, rid))


@pytest.mark.parametrize("column", ["status", "item", "subject_code", "source_unit", "decision_date"])
def test_a_revision_column_edited_without_its_signed_body_fails_naming_the_revision(
        pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path, column: str) -> None:
    code, out = _verify_after(pristine, tmp_path, lambda conn, ids: conn.execute(
        f"UPDATE record_revisions SET {column} = 'x' WHERE record_id = ? AND revision = 1", (ids[1],)))
    assert code == 1
    assert f"FAIL record {pristine[1][1]}@1: E_ROW_MISMATCH" in out and column in out


def test_two_records_swapping_their_signed_bodies_fail_both(pristine: tuple[pathlib.Path, list[str]],
                                                            tmp_path: pathlib.Path) -> None:
    code, out = _verify_after(pristine, tmp_path, _swap_bodies)
    ids = pristine[1]
    assert code == 1
    assert f"FAIL record {ids[1]}@1: E_ROW_MISMATCH" in out and f"FAIL record {ids[2]}@1: E_ROW_MISMATCH" in out


def test_a_revision_renumbered_fails(pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path) -> None:
    code, out = _verify_after(pristine, tmp_path, lambda conn, ids: conn.execute(
        "UPDATE record_revisions SET revision = 9 WHERE record_id = ? AND revision = 2", (ids[0],)))
    assert code == 1 and f"FAIL record {pristine[1][0]}@9: E_ROW_MISMATCH" in out and "revision" in out


@pytest.mark.parametrize("sql", [
    "UPDATE record_heads SET status = 'revoked' WHERE record_id = ?",
    "UPDATE record_heads SET subject_code = '91330106XXXXXXXXXX' WHERE record_id = ?",
    "UPDATE record_heads SET item = 'x' WHERE record_id = ?",
    "UPDATE record_heads SET revision = 1 WHERE record_id = ?",  # rolled back to an older revision
    "DELETE FROM record_revisions WHERE revision = 2 AND record_id = ?",  # the latest revision lost
    "DELETE FROM record_heads WHERE record_id = ?",
])
def test_a_head_that_is_not_its_records_latest_revision_fails_naming_the_record(
        pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path, sql: str) -> None:
    code, out = _verify_after(pristine, tmp_path, lambda conn, ids: conn.execute(sql, (ids[0],)))
    assert code == 1 and f"FAIL head {pristine[1][0]}: E_HEAD_MISMATCH" in out


def test_a_head_without_any_revision_fails(pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path) -> None:
    code, out = _verify_after(pristine, tmp_path, lambda conn, ids: conn.execute(
        "INSERT INTO record_heads SELECT 'admin_penalty-nothing', revision, item, subject_code, status, source_unit, "
        "decision_date, body_digest, content_digest, received_at_ms FROM record_heads WHERE record_id = ?", (ids[1],)))
    assert code == 1 and "FAIL head admin_penalty-nothing: E_HEAD_MISMATCH" in out


def test_a_signed_record_rewritten_around_a_body_that_is_not_a_record_fails_naming_the_revision(
        pristine: tuple[pathlib.Path, list[str]], tmp_path: pathlib.Path) -> None:
    from node.records import decode_signed

    def rewrite(conn: sqlite3.Connection, ids: list[str]) -> None:
        (raw,) = conn.execute("SELECT signed FROM record_revisions WHERE record_id = ? AND revision = 1",
                              (ids[3],)).fetchone()
        signed = decode_signed(raw)
        signed.body = b"\xff\xff\xff"
        conn.execute("UPDATE record_revisions SET body = ?, body_digest = ?, signed = ? WHERE record_id = ? "
                     "AND revision = 1", (signed.body, hashlib.sha256(signed.body).digest(),
                                          signed.SerializeToString(), ids[3]))

    code, out = _verify_after(pristine, tmp_path, rewrite)
    assert code == 1 and f"FAIL record {pristine[1][3]}@1: E_BODY_MALFORMED" in out
