#!/usr/bin/env python3
"""``scripts/bench lookup``: Query.Lookup against a node holding 1,000,000 records, over mTLS.

1. A city node directory (dev CA, certificates) and a store of ``--records`` signed 行政处罚
   records about ``--records / 4`` organisations, written straight through the store API in
   batches of 20,000, each batch one Merkle batch signature by the node (``--dir`` keeps and
   reuses it: generating a million records takes a minute or two).
2. ``credit-node start`` serves it (the real runtime: Exchange, Admin, Query on one server).
3. Separate client processes (asyncio, ``bench_grpc.closed_loop``) keep ``--inflight`` calls in
   flight over one mTLS channel, in four interleaved phases — ``Admin.Echo`` (the baseline: a
   call that does only what every call does), ``Query.Lookup``, Echo, Lookup — so load from
   anything else on the machine hits both alike. Lookups ask for random existing subjects, by
   default as a ``gov`` caller with a purpose, so every lookup also writes the hash-chained query
   log (``--role public``: class A, not logged).

Prints one JSON line: qps, p50_ms, p99_ms, echo_qps, ratio (lookup/echo), the server's CPU time
per call for both (independent of what else runs), and the setup.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
CITY = "city:330100"
CALLERS = {"gov": "gov:330100:bench", "public": "public:bench"}
UNIT = "11330100002482975K"
BATCH = 20_000
_ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _subjects(n: int, rng: random.Random) -> list[str]:
    from node.identifiers import make_uscc

    out: set[str] = set()
    while len(out) < n:
        out.add(make_uscc("9", "1", "330100", "".join(rng.choice(_ORG_ALPHABET) for _ in range(8))))
    return sorted(out)


def generate(node_dir: pathlib.Path, records: int, seed: int = 7) -> list[str]:
    """Fill the node's store; returns the subject codes."""
    from node.app import build_node
    from node.config import load_config
    from node.records import body_digest, content_digest, make_record_id, pb
    from node.store import RecordRow

    rng = random.Random(seed)
    subjects = _subjects(max(1, records // 4), rng)
    today = dt.date.today()
    with build_node(load_config(node_dir / "node.yaml")) as node:
        item = node.catalog.item("admin_penalty")
        version = node.catalog.version
        done = 0
        while done < records:
            n = min(BATCH, records - done)
            now = time.time_ns() // 1_000_000
            prepared = []
            for i in range(done, done + n):
                subject = subjects[i % len(subjects)]
                decided = (today - dt.timedelta(days=rng.randrange(1, 300))).isoformat()
                wsh = f"杭上市监罚〔2026〕{i}号"
                fields = [("CF_XDR_MC", f"杭州测试{i % len(subjects)}有限公司"), ("CF_XDR_LB", "法人及非法人组织"),
                          ("CF_XDR_SHXYM", subject), ("CF_FRDB", "王伟"), ("CF_WSH", wsh),
                          ("CF_WFXW", "未按规定公示年度报告"), ("CF_SY", f"经查，当事人未按规定公示年度报告。案号{i}。"),
                          ("CF_YJ", "《企业信息公示暂行条例》第八条"), ("CF_CFLB", "警告"), ("CF_NR", "警告，责令改正。"),
                          ("CF_JDRQ", decided), ("CF_YXQ", "2099-12-31"), ("CF_CFJG", "杭州市上城区市场监督管理局"),
                          ("CF_CFJGDM", UNIT), ("CF_SJLY", "杭州市上城区市场监督管理局"), ("CF_SJLYDM", UNIT)]
                rid = make_record_id(item.code, UNIT, f"{wsh}\x1f{subject}")
                body = pb.RecordBody(record_id=rid, revision=1, item=item.code, catalog_version=version,
                                     subject_code=subject, subject_kind="legal_person",
                                     subject_name=fields[0][1], source_unit=UNIT, origin_node=CITY,
                                     fields=[pb.Field(name=k, value=v) for k, v in fields], reported_at_ms=now,
                                     status="active", decision_date=decided).SerializeToString()
                prepared.append((rid, subject, decided, body, content_digest(item.code, UNIT, fields)))
            sigs = node.signer.sign_origin([p[3] for p in prepared], now_ms=now)
            rows = [RecordRow(record_id=rid, revision=1, item=item.code, subject_code=subject,
                              subject_kind="legal_person", source_unit=UNIT, origin_node=CITY, status="active",
                              decision_date=decided, body=body, body_digest=body_digest(body), content_digest=cd,
                              signed=pb.SignedRecord(body=body, chain=[sig]).SerializeToString(),
                              received_at_ms=now, received_from="", catalog_version=version)
                    for (rid, subject, decided, body, cd), sig in zip(prepared, sigs, strict=True)]
            node.store.records.append(rows)
            done += n
            print(f"  {done}/{records} records", file=sys.stderr, flush=True)
    return subjects


def setup(base: pathlib.Path, records: int, role: str = "gov") -> tuple[pathlib.Path, pathlib.Path]:
    """The node directory (generated unless it holds ``records`` already) and the caller identity."""
    from node.identity import init_ca, issue
    from node.provisioning import init_node

    node_dir, caller_dir, marker = base / "node", base / f"caller-{role}", base / "subjects.txt"
    if marker.exists() and json.loads((base / "meta.json").read_text())["records"] == records:
        if not caller_dir.exists():
            issue(base / "ca", CALLERS[role], role, caller_dir)
        return node_dir, caller_dir
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    ca = init_ca(base / "ca")
    cfg = init_node(node_dir, node_id=CITY, level="city", ca_dir=ca)
    with cfg.open("a", encoding="utf-8") as f:
        # One client at thousands of calls a second is the benchmark, not an attack.
        f.write("abuse: {rate_per_s: 1000000000, burst: 1000000000}\n")
    issue(ca, CALLERS[role], role, caller_dir)
    started = time.perf_counter()
    subjects = generate(node_dir, records)
    sample = random.Random(1).sample(subjects, min(20_000, len(subjects)))
    marker.write_text("\n".join(sample) + "\n", encoding="utf-8")
    (base / "meta.json").write_text(json.dumps({"records": records, "generate_s": time.perf_counter() - started}))
    return node_dir, caller_dir


def _phase(kind: str, target: str, caller_dir: pathlib.Path, subjects: pathlib.Path, inflight: int,
           seconds: float, server_pid: int) -> dict[str, Any]:
    """One measured phase in its own client process; adds the server's CPU per call."""
    from bench_grpc import process_cpu_s

    cpu0 = process_cpu_s(server_pid)
    run = subprocess.run([PY, str(pathlib.Path(__file__).resolve()), "client", kind, target, str(caller_dir),
                          str(subjects), str(inflight), str(seconds)],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    cpu = process_cpu_s(server_pid) - cpu0
    if run.returncode:
        raise SystemExit(f"{kind} client failed: {run.stderr.strip()[-2000:]}")
    out: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    total_calls = out["qps"] * (seconds + WARMUP_S)  # the server also served the warm-up
    out["server_cpu_us_per_call"] = round(cpu / total_calls * 1e6, 1) if total_calls else None
    return out


def bench_lookup(records: int, inflight: int, seconds: float, workdir: str | None,
                 role: str = "gov") -> dict[str, Any]:
    from bench_grpc import start_node, stop_node

    base = pathlib.Path(workdir) if workdir else pathlib.Path(tempfile.mkdtemp(prefix="credit-bench-lookup-"))
    node_dir, caller_dir = setup(base, records, role)
    proc, target = start_node(node_dir / "node.yaml", log=base / "node.log")
    phases: dict[str, list[dict[str, Any]]] = {"echo": [], "lookup": []}
    try:
        # Interleaved (echo, lookup, echo, lookup): drift in what else the machine runs hits both.
        for _round in range(2):
            for kind in ("echo", "lookup"):
                phases[kind].append(_phase(kind, target, caller_dir, base / "subjects.txt", inflight, seconds / 2,
                                           proc.pid))
    finally:
        code = stop_node(proc)
        if not workdir:
            shutil.rmtree(base, ignore_errors=True)

    def merged(kind: str, key: str) -> float:
        values = [p[key] for p in phases[kind]]
        return round(sum(values) / len(values), 2) if key != "p99_ms" else max(values)

    meta = json.loads((base / "meta.json").read_text()) if workdir else {}
    qps, echo = merged("lookup", "qps"), merged("echo", "qps")
    return {"bench": "lookup", "records": records, "inflight": inflight, "role": role,
            "qps": qps, "p50_ms": merged("lookup", "p50_ms"), "p99_ms": merged("lookup", "p99_ms"),
            "echo_qps": echo, "echo_p50_ms": merged("echo", "p50_ms"), "echo_p99_ms": merged("echo", "p99_ms"),
            "ratio": round(qps / echo, 3) if echo else None,
            "server_cpu_us_per_lookup": merged("lookup", "server_cpu_us_per_call"),
            "server_cpu_us_per_echo": merged("echo", "server_cpu_us_per_call"),
            "records_per_lookup": phases["lookup"][0]["records_per_lookup"], "seconds": seconds,
            "store": "sqlite", "transport": "grpc mTLS", "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2), "server_exit": code,
            **({"generate_s": round(meta["generate_s"], 1)} if meta else {})}


# --- the client process --------------------------------------------------------------------------------
WARMUP_S = 1.0


async def _client(kind: str, target: str, caller_dir: str, subjects_file: str, inflight: int,
                  seconds: float) -> dict[str, Any]:
    from bench_grpc import ECHO_METHOD, aio_channel, closed_loop

    from node.records import pb

    subjects = pathlib.Path(subjects_file).read_text(encoding="utf-8").split()
    rng = random.Random(3)
    ctx = pb.CallerContext(purpose="行政许可审查 (benchmark)")
    async with aio_channel(target, caller_dir) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        lookup = channel.unary_unary("/credit.v1.Query/Lookup", request_serializer=pb.LookupRequest.SerializeToString,
                                     response_deserializer=pb.LookupResponse.FromString)
        if kind == "echo":
            echo = channel.unary_unary(ECHO_METHOD, request_serializer=pb.EchoRequest.SerializeToString,
                                       response_deserializer=pb.EchoResponse.FromString)
            request = pb.EchoRequest(payload=b"x" * 64)
            return await closed_loop(lambda: echo(request, timeout=30), in_flight=inflight, seconds=seconds,
                                     warmup_s=WARMUP_S)
        result = await closed_loop(
            lambda: lookup(pb.LookupRequest(subject_code=rng.choice(subjects), context=ctx), timeout=30),
            in_flight=inflight, seconds=seconds, warmup_s=WARMUP_S)
        sizes = [len((await lookup(pb.LookupRequest(subject_code=s, context=ctx), timeout=30)).records)
                 for s in subjects[:50]]
        return {**result, "records_per_lookup": round(sum(sizes) / len(sizes), 2)}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "client":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "scripts"))
    print(json.dumps(asyncio.run(_client(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]),
                                         float(sys.argv[7])))))
