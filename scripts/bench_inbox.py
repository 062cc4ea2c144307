#!/usr/bin/env python3
"""``scripts/bench inbox``: a receiving node's CPU per record, in-process (no gRPC, no broker).

Pre-built signed batches of one child (as ``scripts/bench submit`` sends them) go straight to
``Inbox.receive`` of a parent with a SQLite store in a temporary directory, so what is measured
is the inbox alone: chain verification, authorisation, re-validation, the store, the conflicts
index. CPU is ``time.process_time`` over the whole run; on a shared machine compare versions by
it, in interleaved runs, not by wall time.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time
from typing import Any


def bench_inbox(records: int, batch: int, keep: bool) -> dict[str, Any]:
    from bench_grpc import CHILD_ID, PARENT_ID, _parent_config, _signed_batches

    from node.app import build_node
    from node.config import load_config
    from node.identity import init_ca, issue
    from node.records import pb
    from node.sampledata import unit_uscc

    work = pathlib.Path(tempfile.mkdtemp(prefix="credit-bench-inbox-"))
    unit = unit_uscc("330102", "MB000001")
    ca = init_ca(work / "ca")
    issue(ca, PARENT_ID, "node", work / "parent")
    t0 = time.perf_counter()
    requests = [pb.SubmitRequest.FromString(r) for r in _signed_batches(work, ca, unit, records, batch)]
    prepare_s = time.perf_counter() - t0
    config = _parent_config(work, children=[{"id": CHILD_ID, "units": [unit]}])
    outcomes: dict[str, int] = {}
    with build_node(load_config(config)) as parent:
        parent.inbox.learn_certificates(list(requests[0].certificates))
        batches = [list(r.records) for r in requests]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for recs in batches:
            for receipt in parent.inbox.receive(recs, sender=CHILD_ID):
                outcomes[receipt.outcome] = outcomes.get(receipt.outcome, 0) + 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    result: dict[str, Any] = {
        "bench": "inbox", "records": records, "batch": batch, **outcomes,
        "cpu_s": round(cpu, 3), "cpu_us_per_record": round(cpu / records * 1e6, 1),
        "seconds": round(wall, 3), "store": "sqlite", "prepare_s": round(prepare_s, 2),
    }
    if keep:
        result["dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result
