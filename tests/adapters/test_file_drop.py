"""The drop folder end to end: real files (UTF-8, GBK, XLSX), a real department node and its store."""

from __future__ import annotations

import csv
import os
import pathlib
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence

import openpyxl
import pytest
from conftest_values import UNIT

from adapters.file_drop import FileDrop, item_from_filename
from node.app import Node
from node.config import FileAdapterConfig
from node.errors import StoreError
from node.sampledata import penalty_rows, write_csv


def drop_for(node: Node, folder: pathlib.Path, **kw: object) -> FileDrop:
    folder.mkdir(exist_ok=True)
    cfg = FileAdapterConfig(kind="file", dir=str(folder), **kw)  # type: ignore[arg-type]
    return FileDrop(cfg, directory=folder, catalog=node.catalog, sink=node.ingest, name="file:test",
                    batch_rows=50)


def write_penalties(path: pathlib.Path, node: Node, n: int, *, encoding: str = "utf-8-sig",
                    bad_every: int = 0, start_no: int = 1, seed: int = 1) -> None:
    item = node.catalog.item("admin_penalty")
    write_csv(path, item, penalty_rows(n, source_unit=UNIT, bad_every=bad_every, start_no=start_no, seed=seed),
              encoding=encoding)


def read_result(path: pathlib.Path) -> list[dict[str, str]]:
    if path.suffix == ".xlsx":
        wb = openpyxl.load_workbook(path, read_only=True)
        rows = [[("" if c is None else str(c)) for c in r] for r in wb.worksheets[0].iter_rows(values_only=True)]
        wb.close()
        return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "CSV results carry a BOM so Excel shows Chinese text"
    return list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))


def two_polls(drop: FileDrop) -> None:
    drop.poll()
    drop.poll()


def counts(node: Node) -> int:
    return sum(node.store.records.counts().values())


def test_utf8_csv_with_bad_rows_is_imported_answered_and_moved(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    write_penalties(folder / "admin_penalty_2026-11.csv", dept, 120, bad_every=10)
    assert drop.poll() == 0, "a file seen once may still be growing"
    two_polls(drop)
    assert not (folder / "admin_penalty_2026-11.csv").exists()
    assert (folder / "done" / "admin_penalty_2026-11.csv").exists()
    result = read_result(folder / "admin_penalty_2026-11.csv.result.csv")
    refused_rows = {r["row"] for r in result}
    assert len(refused_rows) == 12
    assert all(r["code"].startswith("E_") and r["reason"] for r in result)
    assert counts(dept) == 108
    open_rejections = dept.store.rejections.list_rejections(UNIT)
    assert {str(r.row) for r in open_rejections} == refused_rows


def test_gbk_csv_is_read(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    write_penalties(folder / "行政处罚-11月.csv", dept, 30, encoding="gbk")
    two_polls(drop)
    assert (folder / "done" / "行政处罚-11月.csv").exists()
    assert read_result(folder / "行政处罚-11月.csv.result.csv") == []
    assert counts(dept) == 30


def penalty_workbook(node: Node, n: int, *, bad_every: int = 0) -> openpyxl.Workbook:
    """The 行政处罚 template's headers and ``n`` sample rows, every ``bad_every``-th one bad."""
    item = node.catalog.item("admin_penalty")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([f.name for f in item.fields])
    for row in penalty_rows(n, source_unit=UNIT, bad_every=bad_every):
        ws.append([row.get(f.code, "") for f in item.fields])
    return wb


def test_xlsx_gets_an_xlsx_result(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder, item="admin_penalty")
    penalty_workbook(dept, 20, bad_every=5).save(folder / "penalties.xlsx")
    two_polls(drop)
    result = read_result(folder / "penalties.xlsx.result.xlsx")
    assert len({r["row"] for r in result}) == 4
    assert counts(dept) == 16
    assert (folder / "done" / "penalties.xlsx").exists()


def test_a_hidden_row_of_a_workbook_is_imported_and_named_in_the_result(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder, item="admin_penalty")
    wb = penalty_workbook(dept, 5)
    wb.active.row_dimensions[4].hidden = True
    wb.save(folder / "penalties.xlsx")
    two_polls(drop)
    assert counts(dept) == 5  # the file holds the row: it is read
    result = read_result(folder / "penalties.xlsx.result.xlsx")
    assert [(r["row"], r["code"]) for r in result] == [("4", "W_ROW_HIDDEN")]


def test_half_written_file_is_never_read(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    full = tmp_path / "full.csv"
    write_penalties(full, dept, 200)
    data = full.read_bytes()
    target = folder / "admin_penalty_growing.csv"
    with target.open("wb") as fh:
        for part in range(1, 5):
            fh.write(data[(part - 1) * len(data) // 4: part * len(data) // 4])
            fh.flush()
            drop.poll()  # the file changed since the previous poll: not read
            assert target.exists() and counts(dept) == 0
    # Files with in-progress names are never read at all, however long they sit still.
    (folder / "admin_penalty_x.csv.part").write_bytes(data[:100])
    (folder / ".admin_penalty_y.csv").write_bytes(data[:100])
    (folder / "admin_penalty_z.csv.tmp").write_bytes(data[:100])
    two_polls(drop)
    assert counts(dept) == 200
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        ".admin_penalty_y.csv", "admin_penalty_growing.csv.result.csv", "admin_penalty_x.csv.part",
        "admin_penalty_z.csv.tmp"]


def test_ready_marker_mode_waits_for_the_marker(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder, ready_marker=True)
    write_penalties(folder / "admin_penalty_a.csv", dept, 10)
    for _ in range(3):
        drop.poll()
    assert counts(dept) == 0
    (folder / "admin_penalty_a.csv.ready").touch()
    drop.poll()
    assert counts(dept) == 10
    assert not (folder / "admin_penalty_a.csv.ready").exists()


def test_a_temporary_result_left_by_a_killed_node_is_swept_when_its_file_is_done(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    write_penalties(folder / "admin_penalty_a.csv", dept, 10)
    stale = folder / ".admin_penalty_a.csv.result.csv.0badc0de.tmp"
    stale.write_text("row,field\n")
    two_polls(drop)
    assert counts(dept) == 10 and not stale.exists()
    assert not list(folder.glob(".*.tmp"))


def test_a_marker_older_than_its_file_is_left_from_before_and_does_not_count(dept: Node, tmp_path: pathlib.Path):
    # A node killed after moving a file to done/ and before deleting its marker leaves the marker:
    # the next file of that name must not be read while it is still being written.
    import os

    folder = tmp_path / "drop"
    drop = drop_for(dept, folder, ready_marker=True)
    marker = folder / "admin_penalty_a.csv.ready"
    marker.touch()
    os.utime(marker, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))  # 2001
    write_penalties(folder / "admin_penalty_a.csv", dept, 10)  # being written now
    for _ in range(3):
        drop.poll()
    assert counts(dept) == 0
    marker.touch()  # the writer's own marker, after the file
    drop.poll()
    assert counts(dept) == 10 and not marker.exists()


def test_excels_unicode_text_export_dropped_as_txt_is_imported(dept: Node, tmp_path: pathlib.Path):
    # Excel's 另存为 "Unicode 文本 (*.txt)": UTF-16 with a BOM, cells separated by tabs.
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    item = dept.catalog.item("admin_penalty")
    lines = ["\t".join(f.name for f in item.fields)]
    lines += ["\t".join(row.get(f.code, "") for f in item.fields) for row in penalty_rows(6, source_unit=UNIT)]
    (folder / "admin_penalty_11月.txt").write_bytes("\r\n".join(lines).encode("utf-16"))
    two_polls(drop)
    assert counts(dept) == 6
    assert (folder / "done" / "admin_penalty_11月.txt").exists()
    assert read_result(folder / "admin_penalty_11月.txt.result.csv") == []


@pytest.mark.parametrize(("name", "content", "code"), [
    ("admin_penalty_bad_header.csv", "行政相对人名称,颜色\n某公司,红\n", "E_INPUT_HEADER_UNKNOWN"),
    ("admin_penalty_missing.csv", "行政相对人名称\n某公司\n", "E_INPUT_HEADER_MISSING"),
    ("admin_penalty_not_a_table.xlsx", "this is not a zip file", "E_INPUT_FORMAT"),
    ("admin_penalty_old.xls", "old binary excel", "E_INPUT_FORMAT"),
    ("unknown_item.csv", "a,b\n1,2\n", "E_INPUT_ITEM"),
])
def test_unreadable_files_go_to_failed_with_the_reason(dept: Node, tmp_path: pathlib.Path, name: str,
                                                       content: str, code: str):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    (folder / name).write_text(content, encoding="utf-8")
    two_polls(drop)
    assert (folder / "failed" / name).exists()
    suffix = ".result.xlsx" if name.endswith(".xlsx") else ".result.csv"
    result = read_result(folder / (name + suffix))
    assert [r["code"] for r in result] == [code]
    assert result[0]["row"] == "0" and result[0]["reason"]


def test_reprocessing_a_file_stores_nothing_twice_and_keeps_one_open_rejection(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    src = tmp_path / "admin_penalty_same.csv"
    write_penalties(src, dept, 60, bad_every=6)
    for _ in range(2):  # the same file dropped twice (or processed again after a crash)
        (folder / src.name).write_bytes(src.read_bytes())
        two_polls(drop)
    assert counts(dept) == 50
    assert len({r.row for r in dept.store.rejections.list_rejections(UNIT)}) == 10
    assert len(dept.store.rejections.list_rejections(UNIT)) == len(read_result(folder / (src.name + ".result.csv")))
    assert len(list((folder / "done").iterdir())) == 2


def test_corrected_file_closes_the_rejections(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    item = dept.catalog.item("admin_penalty")
    good = list(penalty_rows(40, source_unit=UNIT))
    bad = [dict(r) for r in good]
    bad[3]["CF_JDRQ"] = "2024-02-30"  # keyed: the fact is known, its date is not
    bad[9]["CF_WSH"] = ""  # keyless: only its place in the file identifies it
    shxym = next(i for i, r in enumerate(bad) if r.get("CF_XDR_SHXYM") and i > 10)
    code = bad[shxym]["CF_XDR_SHXYM"]
    bad[shxym]["CF_XDR_SHXYM"] = code[:-1] + ("1" if code[-1] == "0" else "0")  # a key field itself is wrong
    write_csv(folder / "admin_penalty_v1.csv", item, iter(bad))
    two_polls(drop)
    assert len({r.row for r in dept.store.rejections.list_rejections(UNIT)}) == 3
    assert counts(dept) == 37
    write_csv(folder / "admin_penalty_v1.csv", item, iter(good))  # the department fixed every row
    two_polls(drop)
    assert dept.store.rejections.list_rejections(UNIT) == []
    closed = dept.store.rejections.list_rejections(UNIT, open_only=False)
    assert closed and all(r.closed_by_record_id for r in closed)
    assert counts(dept) == 40
    assert read_result(folder / "admin_penalty_v1.csv.result.csv") == []


class _FailingSink:
    """Stores the first ``ok`` batches through the real node, then fails like a full disk would."""

    def __init__(self, node: Node, ok: int) -> None:
        self.node, self.ok = node, ok

    def prepare(self, item, rows: Sequence[object], **kw):  # type: ignore[no-untyped-def]
        return self.node.ingest.prepare(item, rows, **kw)  # type: ignore[arg-type]

    def commit(self, item, batch, **kw):  # type: ignore[no-untyped-def]
        if self.ok == 0:
            raise StoreError("disk full (simulated)")
        self.ok -= 1
        return self.node.ingest.commit(item, batch, **kw)


def test_a_crash_mid_file_leaves_it_in_place_and_the_retry_imports_the_rest(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    folder.mkdir()
    cfg = FileAdapterConfig(kind="file", dir=str(folder))
    failing = FileDrop(cfg, directory=folder, catalog=dept.catalog, sink=_FailingSink(dept, 2), name="f",
                       batch_rows=50)
    write_penalties(folder / "admin_penalty_big.csv", dept, 230, bad_every=23)
    failing.poll()
    with pytest.raises(StoreError):
        failing.poll()
    assert (folder / "admin_penalty_big.csv").exists()
    assert not any(p.name.endswith(".result.csv") or p.name.endswith(".tmp") for p in folder.iterdir())
    stored_before = counts(dept)
    assert 0 < stored_before < 220
    drop = drop_for(dept, folder)
    two_polls(drop)
    assert counts(dept) == 220
    assert len({r.row for r in dept.store.rejections.list_rejections(UNIT)}) == 10
    assert len(read_result(folder / "admin_penalty_big.csv.result.csv")) == 10


def test_item_is_taken_from_the_longest_matching_prefix(dept: Node):
    cat = dept.catalog
    assert item_from_filename("admin_penalty_2026.csv", cat) == "admin_penalty"
    assert item_from_filename("ADMIN_LICENSE.xlsx", cat) == "admin_license"
    assert item_from_filename("行政许可（11月）.xlsx", cat) == "admin_license"
    assert item_from_filename("admin_penaltyX.csv", cat) is None
    assert item_from_filename("report.csv", cat) is None


def test_credit_node_start_runs_the_configured_drop_folder(make_node, tmp_path: pathlib.Path):
    cfg, node = make_node(extra_yaml="adapters:\n- kind: file\n  dir: drop\n  interval_s: 0.2\n")
    folder = cfg.parent / "drop"
    node.close()
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "start", "--port-file",
                             str(port_file), "--log-level", "WARNING"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)  # waiting for another process to start: bounded by the deadline
        assert port_file.exists(), proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        write_penalties(tmp_path / "x.csv", node, 25, bad_every=5)
        os.replace(tmp_path / "x.csv", folder / "admin_penalty_x.csv")
        while not (folder / "done" / "admin_penalty_x.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (folder / "done" / "admin_penalty_x.csv").exists()
        assert len({r["row"] for r in read_result(folder / "admin_penalty_x.csv.result.csv")}) == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_a_row_accepted_with_a_warning_is_listed_in_the_result(make_node, tmp_path: pathlib.Path):
    rows = list(penalty_rows(3, source_unit=UNIT))
    code = rows[0]["CF_XDR_SHXYM"]
    early = code[:17] + ("0" if code[17] != "0" else "1")  # fails its check: an allow-listed early code
    rows[0]["CF_XDR_SHXYM"] = early
    _cfg, node = make_node("warned", extra_yaml=f"validation:\n  uscc_allowlist: [{early}]\n")
    folder = tmp_path / "drop-warned"
    drop = drop_for(node, folder)
    write_csv(folder / "admin_penalty_w.csv", node.catalog.item("admin_penalty"), rows)
    two_polls(drop)
    drop.poll()
    assert counts(node) == 3
    result = read_result(folder / "admin_penalty_w.csv.result.csv")
    assert [(r["row"], r["field"], r["code"]) for r in result] == [("2", "CF_XDR_SHXYM", "W_USCC_ALLOWLISTED")]


def test_a_file_the_reader_cannot_cope_with_goes_to_failed_and_the_next_file_is_read(
        dept: Node, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
    from adapters import file_drop

    real = file_drop.read_table

    def reader(path: pathlib.Path, *args: object, **kw: object):
        if "odd" in path.name:
            raise RuntimeError("a case nobody foresaw")
        return real(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(file_drop, "read_table", reader)
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    write_penalties(folder / "admin_penalty_odd.csv", dept, 3)
    write_penalties(folder / "admin_penalty_next.csv", dept, 4, start_no=10)
    two_polls(drop)
    assert (folder / "failed" / "admin_penalty_odd.csv").exists()
    assert [r["code"] for r in read_result(folder / "admin_penalty_odd.csv.result.csv")] == ["E_INPUT_UNREADABLE"]
    assert (folder / "done" / "admin_penalty_next.csv").exists() and counts(dept) == 4


def test_a_file_whose_name_is_not_utf8_is_imported_and_its_rejections_kept_under_a_readable_name(
        dept: Node, tmp_path: pathlib.Path):
    # Saved on a GBK system: Python keeps the name's bytes as lone surrogates, which the store refused
    # (UnicodeEncodeError) at the first batch.
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    name = "admin_penalty_" + os.fsdecode("处罚".encode("gbk")) + ".csv"
    write_penalties(folder / name, dept, 20, bad_every=10)
    drop.poll()
    two_polls(drop)
    assert (folder / "done" / name).exists() and counts(dept) == 18
    assert {r.source for r in dept.store.rejections.list_rejections(UNIT)} == {"admin_penalty_" + "\ufffd" * 4 + ".csv"}



def test_a_workbook_whose_refused_header_holds_a_control_character_is_answered_and_set_aside(
        dept: Node, tmp_path: pathlib.Path):
    # Excel keeps a control character as _x000B_ (a vertical tab pasted from a Word table); the
    # refusal quotes the header, and an .xlsx result cannot hold the character itself.
    folder, drop = tmp_path / "drop", drop_for(dept, tmp_path / "drop", item="admin_penalty")
    wb = penalty_workbook(dept, 3)
    wb.active.cell(row=1, column=32).value = "颜色"
    wb.save(folder / "penalties.xlsx")
    with zipfile.ZipFile(folder / "penalties.xlsx") as z:
        parts = {n: z.read(n).replace("<t>颜色</t>".encode(), "<t>颜_x000B_色</t>".encode()) for n in z.namelist()}
    with zipfile.ZipFile(folder / "penalties.xlsx", "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    two_polls(drop)
    [answer] = read_result(folder / "penalties.xlsx.result.xlsx")
    assert answer["code"] == "E_INPUT_HEADER_UNKNOWN" and "颜\\x0b色" in answer["reason"]
    assert (folder / "failed" / "penalties.xlsx").exists()


def test_an_empty_file_left_empty_is_answered_and_one_just_created_is_waited_for(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    left = folder / "admin_penalty_left_empty.csv"
    left.write_bytes(b"")
    long_ago = time.time() - 3600
    os.utime(left, (long_ago, long_ago))
    just_created = folder / "admin_penalty_being_copied.csv"
    just_created.write_bytes(b"")
    two_polls(drop)
    assert (folder / "failed" / left.name).exists()
    assert [r["code"] for r in read_result(folder / (left.name + ".result.csv"))] == ["E_INPUT_EMPTY"]
    assert just_created.exists(), "a file created a moment ago may be a copy that has not written yet"
    write_penalties(just_created, dept, 3)
    two_polls(drop)
    assert (folder / "done" / just_created.name).exists() and counts(dept) == 3


def test_a_file_with_a_header_and_no_rows_is_answered_so(dept: Node, tmp_path: pathlib.Path):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    item = dept.catalog.item("admin_penalty")
    (folder / "admin_penalty_11.csv").write_text(",".join(f.name for f in item.fields) + "\n", encoding="utf-8-sig")
    two_polls(drop)
    assert (folder / "done" / "admin_penalty_11.csv").exists()
    result = read_result(folder / "admin_penalty_11.csv.result.csv")
    assert [(r["row"], r["code"]) for r in result] == [("0", "W_INPUT_NO_RECORDS")]
    assert "no records" in result[0]["reason"]


@pytest.mark.parametrize(("content", "says"), [
    (b"<html><body><table><tr><td>x</td></tr></table></body></html>", "web page"),  # a web system's "Excel"
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "97-2003"),
])
def test_a_dropped_xls_is_refused_saying_what_it_holds(dept: Node, tmp_path: pathlib.Path, content: bytes,
                                                       says: str):
    folder = tmp_path / "drop"
    drop = drop_for(dept, folder)
    (folder / "admin_penalty_11.xls").write_bytes(content)
    two_polls(drop)
    assert (folder / "failed" / "admin_penalty_11.xls").exists()
    [line] = read_result(folder / "admin_penalty_11.xls.result.csv")
    assert line["code"] == "E_INPUT_FORMAT" and says in line["reason"]
