"""Big files are prepared in a worker process; the result must equal the in-process import."""

from __future__ import annotations

import pathlib

import pytest
import sqlalchemy as sa

from node import pipeline
from node.app import build_node
from node.catalog import load_catalog
from node.config import load_config
from node.errors import InputFileError
from node.provisioning import bundled_catalog, init_node
from node.records import decode_body
from node.sampledata import penalty_rows, unit_uscc, write_csv

UNIT = unit_uscc("330102", "MB000001")


@pytest.fixture
def node(tmp_path: pathlib.Path):
    cfg = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit=UNIT)
    with build_node(load_config(cfg)) as n:
        yield n


def test_worker_import_equals_in_process_import(node, tmp_path, monkeypatch):
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    path = tmp_path / "p.csv"
    write_csv(path, item, penalty_rows(5000, source_unit=UNIT, bad_every=100))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    seen: list[int] = []
    summary = node.import_file(path, "admin_penalty", on_bytes=seen.append)
    assert (summary.accepted, summary.rejected) == (4950, 50)
    assert sum(seen) == path.stat().st_size  # progress saw the whole file
    again = node.import_file(path, "admin_penalty")
    assert (again.accepted, again.duplicates, again.rejected) == (0, 4950, 50)
    with node.store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from record_revisions")).scalar() == 4950


def test_worker_reports_header_errors_as_input_errors(node, tmp_path, monkeypatch):
    path = tmp_path / "bad.csv"
    path.write_text("行政相对人名称,颜色\nA,B\n", encoding="utf-8")
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    with pytest.raises(InputFileError, match="颜色"):
        node.import_file(path, "admin_penalty")


def test_runaway_quote_is_a_row_problem_not_a_crash(node, tmp_path):
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    path = tmp_path / "q.csv"
    write_csv(path, item, penalty_rows(3, source_unit=UNIT))
    with path.open("a", encoding="utf-8") as fh:
        fh.write('"' + "x" * (2 << 20) + "\n")  # an opening quote never closed, larger than any cell
    summary = node.import_file(path, "admin_penalty")
    assert summary.accepted == 3 and summary.rejected >= 1


def test_ahead_yields_every_result_in_order():
    assert list(pipeline.ahead(range(100), lambda i: i * i)) == [i * i for i in range(100)]


def test_ahead_raises_a_failure_at_its_place_in_the_order():
    def work(i: int) -> int:
        if i == 3:
            raise ValueError("row 3 is bad")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="row 3 is bad"):
        for value in pipeline.ahead(range(10), work):
            got.append(value)
    assert got == [0, 1, 2]


def test_ahead_works_at_most_depth_items_beyond_what_was_taken():
    started: list[int] = []
    results = pipeline.ahead(range(1000), lambda i: started.append(i) or i, depth=2)
    assert next(results) == 0
    results.close()  # joins the thread, so ``started`` is final
    # Taken: 0; waiting in the queue: at most 2; one more may have been made while the queue was full.
    assert 1 <= len(started) <= 4 and started == list(range(len(started)))


def test_ahead_closed_early_stops_reading_its_source():
    consumed: list[int] = []

    def source():
        for i in range(10_000):
            consumed.append(i)
            yield i

    results = pipeline.ahead(source(), lambda i: i, depth=1)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()
    assert len(consumed) < 10


def test_worker_validates_against_the_applied_catalogue_release(tmp_path, monkeypatch):
    import shutil

    cfg_path = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit=UNIT)
    release = tmp_path / "n" / "catalog-releases" / "2099.1"
    shutil.copytree(bundled_catalog(), release)
    meta = release / "catalog.yaml"
    meta.write_text(meta.read_text(encoding="utf-8").replace('version: "2026.12.13"', 'version: "2099.1"'),
                    encoding="utf-8")
    # As an applied release keeps it: its signed copy beside the files (which the node checks).
    from node.releases import RELEASE_FILE, read_catalog_dir
    from node.transport.wire import fpb

    kept = fpb.CatalogRelease(version="2099.1", files=[fpb.CatalogFile(name=n, content=c)
                                                         for n, c in read_catalog_dir(release)])
    (release / RELEASE_FILE).write_bytes(kept.SerializeToString())
    (release.parent / "CURRENT").write_text("2099.1\n", encoding="utf-8")
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    path = tmp_path / "p.csv"
    write_csv(path, item, penalty_rows(300, source_unit=UNIT))
    monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 0)
    with build_node(load_config(cfg_path)) as node:
        assert node.catalog.version == "2099.1"
        assert node.import_file(path, "admin_penalty").accepted == 300
        # The bodies were made (and signed) by the worker: they name the catalogue it validated with.
        versions = {decode_body(r.body).catalog_version for r in node.store.records.iter_revisions()}
    assert versions == {"2099.1"}


def test_one_worker_runs_job_after_job_and_outlives_a_failed_one(node, tmp_path):
    item = node.catalog.item("admin_penalty")
    good = tmp_path / "good.csv"
    write_csv(good, item, penalty_rows(50, source_unit=UNIT))
    bad = tmp_path / "bad.csv"
    bad.write_text("行政相对人名称,颜色\nA,B\n", encoding="utf-8")

    def job(path: pathlib.Path) -> pipeline.FileReader:
        return pipeline.FileReader(item="admin_penalty", source=path.name, batch_id=pipeline.new_batch_id(),
                                   path=str(path), encoding=None, headers=pipeline.headers_for(item), batch_rows=20)

    worker = node.prepare_worker()
    try:
        first = list(worker.run(job(good)))
        assert [b.size for b, _read in first] == [20, 20, 10]
        assert first[-1][1] == good.stat().st_size  # each batch carries the bytes read so far
        pid = worker._proc.pid
        with pytest.raises(InputFileError, match="颜色"):  # the same error class as in-process
            list(worker.run(job(bad)))
        again = list(worker.run(job(good)))
        assert worker._proc.pid == pid  # a failed job does not cost a new interpreter
        assert [p.record_id for b, _ in again for p in b.prepared] == [p.record_id for b, _ in first for p in b.prepared]
        # A job abandoned half-way leaves stale batches in the pipe: the worker is replaced.
        batches = worker.run(job(good))
        next(batches)
        batches.close()
        assert worker._proc is None
        assert sum(b.size for b, _ in worker.run(job(good))) == 50
    finally:
        worker.close()


def test_the_worker_loads_neither_the_store_nor_grpc():
    # Each would cost the worker tens of MB and a slower start; only what preparing needs is loaded.
    import subprocess
    import sys

    probe = ("import sys, node.pipeline; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'grpc', 'cryptography', 'alembic'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_worker_whose_node_went_away_exits_without_a_traceback(node, tmp_path):
    import subprocess
    import sys

    item = node.catalog.item("admin_penalty")
    path = tmp_path / "big.csv"
    write_csv(path, item, penalty_rows(3000, source_unit=UNIT))
    reader = pipeline.FileReader(item="admin_penalty", source=path.name, batch_id=pipeline.new_batch_id(),
                                 path=str(path), encoding=None, headers=pipeline.headers_for(item), batch_rows=100)
    proc = subprocess.Popen([sys.executable, "-m", "node.pipeline"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    jobs = pipeline._Pipe(proc.stdin)
    jobs.put(node.preparer_setup)
    jobs.put(reader)
    assert pipeline._Pipe(proc.stdout).frame() is not None  # the first batch came
    proc.stdout.close()  # the node is gone (killed, stopped) while batches are on their way
    assert proc.wait(timeout=60) == 1
    assert proc.stderr.read() == b""
    proc.stdin.close()
    proc.stderr.close()


def test_a_worker_leaves_sigterm_to_its_node(node, tmp_path):
    """A service manager signals the whole group: the node stops between batches, and must not
    find its worker dead first (it would report a failed worker instead of a clean stop)."""
    import signal
    import subprocess
    import sys

    item = node.catalog.item("admin_penalty")
    path = tmp_path / "big.csv"
    write_csv(path, item, penalty_rows(3000, source_unit=UNIT))
    reader = pipeline.FileReader(item="admin_penalty", source=path.name, batch_id=pipeline.new_batch_id(),
                                 path=str(path), encoding=None, headers=pipeline.headers_for(item), batch_rows=100)
    proc = subprocess.Popen([sys.executable, "-m", "node.pipeline"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    jobs, results = pipeline._Pipe(proc.stdin), pipeline._Pipe(proc.stdout)
    jobs.put(node.preparer_setup)
    jobs.put(reader)
    assert results.frame() is not None  # working: past its start, signals set
    proc.send_signal(signal.SIGTERM)
    kinds = []
    while (got := results.frame()) is not None:
        kinds.append(pipeline._message(got[1])[0])
        if kinds[-1] != "batch":
            break
    assert kinds[-1] == "end" and len(kinds) == 30  # the other 29 batches of 100 rows, then the end
    jobs.put(None)
    assert proc.wait(timeout=60) == 0
    proc.stdin.close()
    proc.stdout.close()


def test_a_frame_written_in_short_pieces_arrives_whole(monkeypatch):
    """A write to a pipe may take only part of the bytes (a signal, a tracer); the rest must follow."""
    import os
    import threading

    real_write = os.write
    pieces: list[int] = []

    def short_write(fd: int, data: bytes) -> int:
        n = real_write(fd, bytes(data[:777]))
        pieces.append(n)
        return n

    monkeypatch.setattr(pipeline.os, "write", short_write)
    message = {"rows": [("row", i, os.urandom(40).hex()) for i in range(5000)]}
    r, w = os.pipe()
    with open(r, "rb") as reader, open(w, "wb") as writer:
        got: list[object] = []
        t = threading.Thread(target=lambda: got.append(pipeline._Pipe(reader).get()))
        t.start()
        pipeline._Pipe(writer).put(message)
        t.join(timeout=60)
    assert got == [message]
    assert len(pieces) > 100  # it really was written in pieces


def test_a_batch_that_does_not_unpickle_is_the_workers_failure_not_a_traceback():
    import pickle

    good = pickle.dumps(("batch", None, 0))
    with pytest.raises(pipeline.NodeError) as caught:
        pipeline._message(good[:20] + b"\xa5" + good[21:])
    assert caught.value.code == "E_IMPORT_WORKER"
    assert "does not decode" in caught.value.message
    assert pipeline._message(good) == ("batch", None, 0)
