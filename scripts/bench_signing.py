#!/usr/bin/env python3
"""Measure batch signing and verification (node.signing); prints one JSON object per batch size.

    .venv/bin/python scripts/bench_signing.py                          # 200,000 records, batches 1000 and 5000
    .venv/bin/python scripts/bench_signing.py --records 50000 --batch 2000

Bodies are realistic RecordBody messages (~680 bytes, 12 fields). Each batch is signed, sent
(serialised), parsed as a receiving node would (parse time reported apart: the transport's
cost), verified, forwarded with a hop signature and verified again with its two links. Both
wall and CPU seconds are given because shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from node.identity import TrustStore, init_ca, issue, load_identity
from node.records import pb
from node.signing import Signer, Verifier

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def make_bodies(n: int, origin: str) -> list[bytes]:
    return [pb.RecordBody(
        record_id=f"admin_penalty-{i:024x}", revision=1, item="admin_penalty", catalog_version="2024.1",
        subject_code=f"91330106MA{i:08d}", subject_kind="legal_person", subject_name="杭州某某科技有限公司",
        source_unit="11330106002500000X", origin_node=origin, reported_at_ms=1_700_000_000_000,
        fields=[pb.Field(name=f"CF_{k}", value="值" * 10) for k in range(12)], status="active",
        decision_date="2024-01-01").SerializeToString() for i in range(n)]


def chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def run(records: int, batch: int, dept: Signer, district: Signer, trust: TrustStore) -> dict[str, object]:
    """Batch by batch, as a node works: only bytes are kept between steps, never 200k messages
    (holding that many live protobuf objects makes the cyclic GC, not signing, the cost)."""
    bodies = make_bodies(records, dept.node_id)
    now = int(time.time() * 1000)
    t = {"sign": [0.0, 0.0], "parse": [0.0, 0.0], "verify": [0.0, 0.0], "hop": [0.0, 0.0], "verify2": [0.0, 0.0]}

    def add(name: str, wall: float, cpu: float) -> None:
        t[name][0] += wall
        t[name][1] += cpu

    verifier = Verifier(trust)
    bad = 0
    for part in chunks(bodies, batch):
        sigs, wall, cpu = timed(lambda part=part: dept.sign_origin(part, now_ms=now))
        add("sign", wall, cpu)
        wire = [pb.SignedRecord(body=b, chain=[s]).SerializeToString() for b, s in zip(part, sigs, strict=True)]
        received, wall, cpu = timed(lambda wire=wire: [pb.SignedRecord.FromString(w) for w in wire])
        add("parse", wall, cpu)
        results, wall, cpu = timed(lambda received=received: verifier.verify(received))
        add("verify", wall, cpu)
        hops, wall, cpu = timed(lambda received=received: district.sign_hops(
            received, ["up"] * len(received), now_ms=now))
        add("hop", wall, cpu)
        for rec, h in zip(received, hops, strict=True):
            rec.chain.append(h)
        results2, wall, cpu = timed(lambda received=received: verifier.verify(received))
        add("verify2", wall, cpu)
        bad += sum(e is not None for e in results + results2)
    if bad:
        raise SystemExit(f"{bad} records failed to verify")
    out: dict[str, object] = {"bench": "signing", "records": records, "batch": batch, "body_bytes": len(bodies[0])}
    for name, label in (("sign", "sign_origin"), ("verify", "verify"), ("hop", "sign_hops"),
                        ("verify2", "verify_2_links"), ("parse", "parse")):
        out[f"{label}_s"] = round(t[name][0], 3)
        out[f"{label}_cpu_s"] = round(t[name][1], 3)
        out[f"{label}_per_s"] = round(records / t[name][0])
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 1000 and 5000)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="credit-bench-signing-"))
    init_ca(tmp / "ca")
    dept = load_identity(issue(tmp / "ca", "dept:330106:scjgj", "node", tmp / "dept"))
    district = load_identity(issue(tmp / "ca", "district:330106", "node", tmp / "district"))
    trust = TrustStore(dept.ca_pem)
    for ident in (dept, district):
        trust.add_certificate(ident.signing_cert_der)
    signers = [Signer(i.node_id, i.signing_key, i.signing_cert_der) for i in (dept, district)]
    for batch in args.batch or [1000, 5000]:
        print(json.dumps(run(args.records, batch, signers[0], signers[1], trust)), flush=True)


if __name__ == "__main__":
    main()
