"""credit-node init / import / query / verify / show-config, through CliRunner and as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

import openpyxl
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from node.catalog import load_catalog
from node.cli import cli
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, unit_uscc, write_csv

UNIT = unit_uscc("330102", "MB000001")


@pytest.fixture(scope="module")
def item():
    return load_catalog(bundled_catalog()).item("admin_penalty")


@pytest.fixture
def node_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "dept"), "--id", "dept:330102:scjgj",
                                      "--level", "department", "--unit", UNIT])
    assert result.exit_code == 0, result.output
    return tmp_path / "dept"


def run(node_dir: pathlib.Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(node_dir / "node.yaml"), *args])


def db(node_dir: pathlib.Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{node_dir / 'node.db'}")


def test_init_writes_config_and_private_keys_0600(node_dir: pathlib.Path):
    assert (node_dir / "node.yaml").exists()
    for key in ("key.pem", "signing-key.pem"):
        assert (node_dir / "identity" / key).stat().st_mode & 0o077 == 0
    assert (node_dir / "ca" / "ca-key.pem").stat().st_mode & 0o077 == 0


def test_init_refuses_id_of_another_level(tmp_path: pathlib.Path):
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "x"), "--id", "city:330100", "--level", "district"])
    assert result.exit_code == 2 and "city" in result.output


def test_import_json_summary_names_refused_rows(node_dir, item, tmp_path):
    csv_path = tmp_path / "p.csv"
    write_csv(csv_path, item, penalty_rows(60, source_unit=UNIT, bad_every=20))
    result = run(node_dir, "import", str(csv_path), "--item", "admin_penalty", "--json")
    assert result.exit_code == 1
    out = json.loads(result.output)
    assert set(out) == {"accepted", "duplicates", "rejected", "warnings", "rejections", "warned"}
    assert out["accepted"] == 57 and out["rejected"] == 3 and out["duplicates"] == 0
    assert sorted({r["row"] for r in out["rejections"]}) == [21, 41, 61]  # header is line 1
    assert all(r["code"].startswith("E_") and r["message"] for r in out["rejections"])


def test_rows_with_a_warning_are_named_with_row_field_and_code_and_not_called_accepted(node_dir, item, tmp_path):
    rows = list(penalty_rows(3, source_unit=UNIT))
    early = rows[1]["CF_XDR_SHXYM"][:17] + ("0" if rows[1]["CF_XDR_SHXYM"][17] != "0" else "1")
    rows[1]["CF_XDR_SHXYM"] = early  # an early code failing its check, allow-listed (DOMAIN §2)
    with (node_dir / "node.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"validation:\n  uscc_allowlist: [{early}]\n")
    csv_path = tmp_path / "p.csv"
    write_csv(csv_path, item, rows)
    out = json.loads(run(node_dir, "import", str(csv_path), "--item", "admin_penalty", "--json").output)
    assert out["accepted"] == 3 and out["warnings"] == 1
    assert [(w["row"], w["field"], w["code"]) for w in out["warned"]] == [(3, "CF_XDR_SHXYM", "W_USCC_ALLOWLISTED")]
    text = run(node_dir, "import", str(csv_path), "--item", "admin_penalty").output
    assert "row 3 CF_XDR_SHXYM: W_USCC_ALLOWLISTED" in text and text.count("(warning)") == 1


def test_reimport_stores_nothing_new(node_dir, item, tmp_path):
    csv_path = tmp_path / "p.csv"
    write_csv(csv_path, item, penalty_rows(30, source_unit=UNIT))
    assert run(node_dir, "import", str(csv_path), "--item", "admin_penalty").exit_code == 0
    again = json.loads(run(node_dir, "import", str(csv_path), "--item", "admin_penalty", "--json").output)
    assert (again["accepted"], again["duplicates"]) == (0, 30)
    with db(node_dir).connect() as conn:
        assert conn.execute(sa.text("select count(*) from record_revisions")).scalar() == 30


def test_changed_row_becomes_next_revision(node_dir, item, tmp_path):
    rows = list(penalty_rows(3, source_unit=UNIT))
    write_csv(tmp_path / "a.csv", item, iter(rows))
    run(node_dir, "import", str(tmp_path / "a.csv"), "--item", "admin_penalty")
    rows[0]["CF_NR"] = "更正后的处罚内容"
    write_csv(tmp_path / "b.csv", item, iter(rows))
    out = json.loads(run(node_dir, "import", str(tmp_path / "b.csv"), "--item", "admin_penalty", "--json").output)
    assert (out["accepted"], out["duplicates"]) == (1, 2)
    subject = rows[0].get("CF_XDR_SHXYM") or rows[0]["CF_XDR_ZJHM"]
    q = json.loads(run(node_dir, "query", subject, "--json").output)
    [rec] = [r for r in q["records"] if r["fields"]["CF_WSH"] == rows[0]["CF_WSH"]]
    assert rec["revision"] == 2 and rec["fields"]["CF_NR"] == "更正后的处罚内容"
    assert rec["signers"] == ["dept:330102:scjgj"]


def test_gbk_file_with_chinese_headers(node_dir, item, tmp_path):
    write_csv(tmp_path / "gbk.csv", item, penalty_rows(5, source_unit=UNIT), encoding="gbk")
    out = json.loads(run(node_dir, "import", str(tmp_path / "gbk.csv"), "--item", "admin_penalty", "--json").output)
    assert out["accepted"] == 5


def test_xlsx_import_with_code_headers_and_date_cells(node_dir, item, tmp_path):
    import datetime as dt

    rows = list(penalty_rows(4, source_unit=UNIT))
    wb = openpyxl.Workbook()
    ws = wb.active
    codes = [f.code for f in item.fields]
    ws.append(codes)
    for r in rows:
        values = [r.get(c, None) for c in codes]
        values[codes.index("CF_JDRQ")] = dt.datetime.fromisoformat(r["CF_JDRQ"])
        ws.append(values)
    wb.save(tmp_path / "p.xlsx")
    out = json.loads(run(node_dir, "import", str(tmp_path / "p.xlsx"), "--item", "admin_penalty", "--json").output)
    assert out["accepted"] == 4, out


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    ("行政相对人名称,颜色\nA,B\n".encode(), "颜色"),
    ("行政相对人名称\nA\n".encode(), "missing required column"),
])
def test_bad_file_is_a_usage_error_with_a_clear_message(node_dir, tmp_path, content, needle):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    result = run(node_dir, "import", str(p), "--item", "admin_penalty")
    assert result.exit_code == 2
    assert needle in result.output and "Traceback" not in result.output


def test_a_file_refused_as_a_whole_is_also_answered_in_json_with_json(node_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("行政相对人名称,颜色\nA,红\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "node", "--config", str(node_dir / "node.yaml"), "import",
                             str(bad), "--item", "admin_penalty", "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "E_INPUT_HEADER_UNKNOWN" and "颜色" in error["message"]
    assert "E_INPUT_HEADER_UNKNOWN" in result.stderr


def test_unknown_item_is_named(node_dir, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a\n1\n")
    result = run(node_dir, "import", str(p), "--item", "no_such_item")
    assert result.exit_code == 2 and "no_such_item" in result.output


def test_verify_catches_one_byte_change_to_body_and_signature(node_dir, item, tmp_path):
    write_csv(tmp_path / "p.csv", item, penalty_rows(10, source_unit=UNIT))
    run(node_dir, "import", str(tmp_path / "p.csv"), "--item", "admin_penalty")
    assert run(node_dir, "verify").exit_code == 0
    with db(node_dir).begin() as conn:
        rid, body, signed = conn.execute(sa.text(
            "select record_id, body, signed from record_revisions order by record_id limit 1")).one()
        pos = signed.index(body) + 20
        tampered = signed[:pos] + bytes([signed[pos] ^ 1]) + signed[pos + 1:]
        conn.execute(sa.text("update record_revisions set signed = :s where record_id = :r"),
                     {"s": tampered, "r": rid})
    result = run(node_dir, "verify", "--json")
    assert result.exit_code == 1
    failures = json.loads(result.output)["failures"]
    assert [f["ref"] for f in failures] == [f"{rid}@1"]


def test_verify_catches_edited_audit_log(node_dir, item, tmp_path):
    write_csv(tmp_path / "p.csv", item, penalty_rows(3, source_unit=UNIT))
    run(node_dir, "import", str(tmp_path / "p.csv"), "--item", "admin_penalty")
    with db(node_dir).begin() as conn:
        conn.execute(sa.text("update audit_log set actor = 'someone-else'"))
    result = run(node_dir, "verify", "--json")
    assert result.exit_code == 1
    assert any(f["kind"] == "audit_log" for f in json.loads(result.output)["failures"])


def test_show_config_json(node_dir):
    out = json.loads(run(node_dir, "show-config", "--json").output)
    assert out["id"] == "dept:330102:scjgj" and out["unit"] == UNIT


def test_catalog_validate_refuses_prohibited_field():
    example = pathlib.Path(__file__).resolve().parents[2] / "exchange_config" / "catalog-examples" / "prohibited.yaml"
    result = CliRunner().invoke(cli, ["catalog", "validate", str(example)])
    assert result.exit_code == 2 and "E_CATALOG_PROHIBITED_FIELD" in result.output


def test_catalog_template_xlsx_has_chinese_headers(tmp_path, item):
    out = tmp_path / "t.xlsx"
    result = CliRunner().invoke(cli, ["catalog", "template", "admin_penalty", "--format", "xlsx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    headers = [c.value for c in next(openpyxl.load_workbook(out).active.iter_rows(max_row=1))]
    assert headers[: len(item.fields)] == [f.name for f in item.fields]


def test_import_as_subprocess_exit_codes(node_dir, item, tmp_path):
    write_csv(tmp_path / "p.csv", item, penalty_rows(5, source_unit=UNIT))
    cmd = [sys.executable, "-m", "node", "--config", str(node_dir / "node.yaml"), "import", str(tmp_path / "p.csv"),
           "--item", "admin_penalty", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["accepted"] == 5


def test_a_file_error_after_batches_were_committed_says_how_many_rows_were_kept(node_dir, item, tmp_path):
    # A UTF-16 file ("Unicode text") cut short in the middle of its last character: the batches
    # read before it are committed, and the refusal of the file must not read as if nothing had
    # been imported. (A broken character inside the file refuses only its row.)
    text = tmp_path / "p.csv"
    write_csv(text, item, penalty_rows(8_300, source_unit=UNIT, seed=5), encoding="utf-8")
    data = text.read_text(encoding="utf-8").encode("utf-16")
    broken = tmp_path / "unicode.txt"
    broken.write_bytes(data[:-1])  # one byte of the last character lost
    result = run(node_dir, "import", str(broken), "--item", "admin_penalty", "--json")
    assert result.exit_code == 2
    error = json.loads(result.output.splitlines()[0])["error"]  # then the same error on stderr
    with db(node_dir).connect() as conn:
        kept = conn.execute(sa.text("select count(*) from record_revisions")).scalar()
    assert error["code"] == "E_INPUT_ENCODING" and kept
    assert f"{kept:,} rows before it were committed" in error["message"] and "again" in error["message"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_import_says_what_it_kept_and_a_second_run_finishes_it(node_dir, item, tmp_path, signum):
    # Big enough for the worker process (over 4 MiB) and for many batches after the first one.
    path = tmp_path / "big.csv"
    write_csv(path, item, penalty_rows(40_000, source_unit=UNIT, seed=3))
    cmd = [sys.executable, "-m", "node", "--config", str(node_dir / "node.yaml"), "import", str(path),
           "--item", "admin_penalty"]
    # Its own process group, as at a terminal, where Ctrl-C reaches the node and its worker alike.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    stored = 0
    with db(node_dir).connect() as conn:
        while stored == 0 and proc.poll() is None:  # until the first batch is committed
            conn.rollback()
            with contextlib.suppress(sa.exc.OperationalError):  # the node may still be creating its tables
                stored = conn.execute(sa.text("select count(*) from record_revisions")).scalar() or 0
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "E_INTERRUPTED" in err
    committed = int(err.split("stopped after ")[1].split(" rows")[0])
    with db(node_dir).connect() as conn:
        kept = conn.execute(sa.text("select count(*) from record_revisions")).scalar()
    assert 0 < kept == committed < 40_000
    again = json.loads(run(node_dir, "import", str(path), "--item", "admin_penalty", "--json").output)
    assert (again["duplicates"], again["accepted"] + again["duplicates"]) == (kept, 40_000)


def test_query_of_an_unknown_item_is_refused_naming_it(node_dir):
    r = run(node_dir, "query", "91330102MA2B3C4D5E", "--item", "admin_penalti", "--json")
    assert r.exit_code == 2
    error = json.loads(r.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_UNKNOWN_ITEM", "item") and "admin_penalti" in error["message"]


def test_query_of_a_mistyped_code_is_refused_not_answered_as_a_clean_record(node_dir):
    # Neither a USCC nor an ID number passes its check on this: found nowhere, it is a typo.
    r = run(node_dir, "query", "91330102MA2XXXXXXX", "--json")
    assert r.exit_code == 2
    error = json.loads(r.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_SUBJECT_CODE_CHECK", "code")
    clean = run(node_dir, "query", "91350100M000100Y43", "--json")  # valid, holds nothing here
    assert clean.exit_code == 0 and json.loads(clean.stdout)["records"] == []


def test_a_file_whose_name_is_not_utf8_is_imported_and_its_rows_listed_under_a_readable_name(node_dir, item, tmp_path):
    # A name made on a GBK system (处罚 in GBK): Python keeps its bytes as lone surrogates, which
    # the store could not take (a UnicodeEncodeError traceback, nothing imported).
    path = tmp_path / os.fsdecode("处罚".encode("gbk") + b".csv")
    write_csv(path, item, penalty_rows(20, source_unit=UNIT, bad_every=10))
    result = run(node_dir, "import", str(path), "--item", "admin_penalty", "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["accepted"] == 18
    listed = run(node_dir, "rejections", "list", "--json")
    assert listed.exit_code == 0
    assert {r["source"] for r in json.loads(listed.stdout)} == {"\ufffd" * 4 + ".csv"}


def test_an_interrupted_import_with_json_says_so_in_json_on_stdout(node_dir, item, tmp_path, monkeypatch):
    from node.commands import records

    path = tmp_path / "p.csv"
    write_csv(path, item, penalty_rows(12_000, source_unit=UNIT, seed=4))  # more than one batch
    on_batch = records._Progress.on_batch

    def ctrl_c_after_the_first_batch(self: records._Progress, rows: int) -> None:
        if not self.committed:
            os.kill(os.getpid(), signal.SIGINT)  # taken by the import's handler: it stops after this batch
        on_batch(self, rows)

    monkeypatch.setattr(records._Progress, "on_batch", ctrl_c_after_the_first_batch)
    result = run(node_dir, "import", str(path), "--item", "admin_penalty", "--json")
    assert result.exit_code == 130
    error = json.loads(result.stdout)["error"]
    with db(node_dir).connect() as conn:
        kept = conn.execute(sa.text("select count(*) from record_revisions")).scalar()
    assert error["code"] == "E_INTERRUPTED" and f"stopped after {kept} rows" in error["message"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_import_cut_off_from_its_server_store_says_to_import_again_not_to_fix_the_file(
        tmp_path, item, db_url, monkeypatch):
    # The server restarted, or an administrator ended the node's sessions, after the first batch:
    # the file is fine, and the operator is told the store failed and to import it again.
    from node.commands import records

    result = CliRunner().invoke(cli, ["init", str(tmp_path / "pg"), "--id", "dept:330102:scjgj", "--level",
                                      "department", "--unit", UNIT, "--store", db_url])
    assert result.exit_code == 0, result.output
    node_dir = tmp_path / "pg"
    path = tmp_path / "p.csv"
    write_csv(path, item, penalty_rows(12_000, source_unit=UNIT, seed=4))  # more than one batch
    on_batch = records._Progress.on_batch
    admin = sa.create_engine(db_url)

    def sessions_ended_after_the_first_batch(self: records._Progress, rows: int) -> None:
        on_batch(self, rows)
        if self.committed != rows:
            return
        # The next batch's transaction waits on a lock held here, and is ended while it waits.
        holder = admin.connect()
        holder.begin()
        holder.execute(sa.text("lock table record_revisions in access exclusive mode"))

        def end_the_waiting_session() -> None:
            with admin.connect() as conn:
                ended = False
                while not ended:
                    ended = bool(conn.execute(sa.text(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity where "
                        "datname = current_database() and wait_event_type = 'Lock'")).scalar())
                    conn.commit()
            holder.rollback()
            holder.close()

        threading.Thread(target=end_the_waiting_session, daemon=True).start()

    monkeypatch.setattr(records._Progress, "on_batch", sessions_ended_after_the_first_batch)
    try:
        cut = run(node_dir, "import", str(path), "--item", "admin_penalty", "--json")
        assert cut.exit_code == 4, cut.output
        error = json.loads(cut.stdout.splitlines()[0])["error"]
        with admin.connect() as conn:
            kept = conn.execute(sa.text("select count(*) from record_revisions")).scalar()
        assert error["code"] == "E_STORE" and kept
        assert f"{kept:,} rows before it were committed" in error["message"]
        assert "fix the file" not in error["message"] and "import it again" in error["message"]
        monkeypatch.setattr(records._Progress, "on_batch", on_batch)
        again = json.loads(run(node_dir, "import", str(path), "--item", "admin_penalty", "--json").stdout)
        assert (again["duplicates"], again["accepted"] + again["duplicates"] + again["rejected"]) == (kept, 12_000)
    finally:
        admin.dispose()


def test_a_file_holding_only_its_header_is_said_to_hold_no_records(node_dir, item, tmp_path):
    csv_path = tmp_path / "p.csv"
    write_csv(csv_path, item, penalty_rows(0, source_unit=UNIT))
    result = run(node_dir, "import", str(csv_path), "--item", "admin_penalty")
    assert result.exit_code == 0, result.output
    assert "p.csv holds no records: a header and nothing under it" in result.output
    full = tmp_path / "q.csv"
    write_csv(full, item, penalty_rows(2, source_unit=UNIT))
    assert "holds no records" not in run(node_dir, "import", str(full), "--item", "admin_penalty").output

