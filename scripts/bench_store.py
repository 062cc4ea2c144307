#!/usr/bin/env python3
"""Measure RecordStore.append throughput; prints one JSON object (DESIGN §5: no timed tests).

    .venv/bin/python scripts/bench_store.py                       # SQLite file in a temp dir
    .venv/bin/python scripts/bench_store.py --url postgresql://postgres@127.0.0.1/credit_bench

Rows carry ~1.2 KB bodies and ~1.5 KB signed records; every row gets one outbox entry and every
batch one audit event, as on the ingest path. The target database must be empty.

Besides wall-clock rows/s it reports rows per second of this process's CPU time and the load
average, because on a shared machine the wall clock measures the neighbours too, and the time
of one sha256 over 1.2 KB as a yardstick of the machine's speed (DESIGN §2.3 quotes ~0.6 µs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import sys
import tempfile
import time
import timeit

from node.records import make_record_id
from node.store import AuditEvent, OutboxEntry, RecordRow, RecordStore, migrate, open_engine


def make_rows(n: int, run: str) -> list[RecordRow]:
    rows = []
    for i in range(n):
        rid = make_record_id("admin_penalty", "11330100002482975K", f"{run}-{i}")  # random order, as in life
        body = (rid.encode() + os.urandom(600).hex().encode())[:1200]
        signed = body + os.urandom(150).hex().encode()
        rows.append(RecordRow(
            record_id=rid, revision=1, item="admin_penalty", subject_code=f"91330100MA{i % 50_000:08d}",
            subject_kind="legal_person", source_unit="11330100002482975K", origin_node="dept:330100:scjgj",
            status="active", decision_date="2024-01-02", body=body, body_digest=hashlib.sha256(body).digest(),
            content_digest=hashlib.sha256(body[:600]).digest(), signed=signed, received_at_ms=1_700_000_000_000,
            received_from="", catalog_version="2024.1"))
    return rows


def _sha256_us() -> float:
    body = b"x" * 1200
    return min(timeit.repeat(lambda: hashlib.sha256(body).digest(), number=20_000, repeat=5)) / 20_000 * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a new SQLite file in a temp dir)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{pathlib.Path(tmp) / 'bench.db'}"
        engine = open_engine(url)
        migrate(engine)
        store = RecordStore(engine)
        rows = make_rows(args.rows, os.urandom(4).hex())
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(rows), args.batch):
            batch = rows[start : start + args.batch]
            store.append(batch, outbox=[OutboxEntry(r.record_id, 1, "city:330100", "up") for r in batch],
                         audit=[AuditEvent("dept:330100:scjgj", "import", f"batch-{start}", {"n": len(batch)})])
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        # The same batches again: all duplicates (the re-delivery path).
        started = time.perf_counter()
        for start in range(0, len(rows), args.batch):
            store.append(rows[start : start + args.batch])
        dup_elapsed = time.perf_counter() - started
        engine.dispose()
    json.dump({"benchmark": "store.append", "backend": engine.dialect.name, "rows": len(rows),
               "batch": args.batch, "seconds": round(elapsed, 3), "rows_per_s": round(len(rows) / elapsed),
               "rows_per_cpu_s": round(len(rows) / cpu), "duplicate_rows_per_s": round(len(rows) / dup_elapsed),
               "load_avg_1m": os.getloadavg()[0], "sha256_1200b_us": round(_sha256_us(), 2)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
