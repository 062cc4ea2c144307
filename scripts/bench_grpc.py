#!/usr/bin/env python3
"""gRPC benchmarks and their building blocks (used by ``scripts/bench``; one JSON line each).

    scripts/bench submit --records 100000 [--batch 1000]    Exchange.Submit into a SQLite store

Reusable pieces for other gRPC benchmarks (``scripts/bench lookup``):

- :func:`start_node` / :func:`stop_node`: ``credit-node start`` as a separate process on port 0,
  found through ``--port-file`` (no sleeping), stopped with SIGTERM;
- :func:`closed_loop`: an asyncio closed loop keeping N calls in flight for a while, giving qps and
  latency percentiles;
- :func:`echo_qps`: the QPS of the trivial ``Admin.Echo`` over the same mTLS setup, measured from a
  separate client process (this file run as ``python scripts/bench_grpc.py echo-client …``).

Clients always run in their own process, so client and server do not share one GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
START_DEADLINE_S = 60.0
SUBMIT_METHOD = "/credit.v1.Exchange/Submit"
ECHO_METHOD = "/credit.v1.Admin/Echo"
PARENT_ID, CHILD_ID = "district:330102", "dept:330102:scjgj"


# --- a node as a separate process ------------------------------------------------------------------
def start_node(config: pathlib.Path, *, log: pathlib.Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``credit-node --config CONFIG start`` on port 0; returns the process and its address."""
    port_file = config.with_name(f".{config.stem}.port")
    port_file.unlink(missing_ok=True)
    err = open(log or os.devnull, "wb")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen([PY, "-m", "node", "--config", str(config), "start", "--listen", "127.0.0.1:0",
                             "--port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    err.close()
    deadline = time.monotonic() + START_DEADLINE_S
    while not port_file.exists():
        if proc.poll() is not None:
            raise SystemExit(f"node exited with {proc.returncode} (see {log})")
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"node did not start within {START_DEADLINE_S:g}s (see {log})")
        time.sleep(0.02)  # polling for the file the node writes once it serves
    return proc, port_file.read_text(encoding="utf-8").strip()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_node(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM, wait for the drain; returns the exit code (0 expected)."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def _client(*args: str) -> dict[str, Any]:
    run = subprocess.run([PY, __file__, *args], capture_output=True, text=True, check=False, cwd=ROOT)
    if run.returncode:
        raise SystemExit(f"client {args[0]} failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


# --- closed loop ----------------------------------------------------------------------------------
async def closed_loop(call: Callable[[], Awaitable[object]], *, in_flight: int = 50, seconds: float = 5.0,
                      warmup_s: float = 1.0) -> dict[str, float]:
    """Keep ``in_flight`` calls going for ``warmup_s + seconds``; measure only after the warm-up."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, end = start + warmup_s, start + warmup_s + seconds

    async def worker() -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < end:
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if t0 >= measure_from:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - measure_from
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3) if latencies else 0.0

    return {"qps": round(len(latencies) / elapsed, 1), "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "calls": len(latencies), "errors": errors, "in_flight": in_flight}


def aio_channel(target: str, identity_dir: str) -> Any:
    """An asyncio mTLS channel with the same credentials and options as ``grpc_client.open_channel``."""
    import grpc

    from node.identity import load_identity
    from node.tls import grpc_channel_credentials

    return grpc.aio.secure_channel(target, grpc_channel_credentials(load_identity(pathlib.Path(identity_dir))))


def echo_qps(target: str, identity_dir: str | pathlib.Path, *, seconds: float = 5.0, in_flight: int = 50,
             payload_bytes: int = 16) -> dict[str, Any]:
    """QPS and latency of ``Admin.Echo`` against ``target``, from a separate client process."""
    return _client("echo-client", "--target", target, "--identity", str(identity_dir), "--seconds", str(seconds),
                   "--in-flight", str(in_flight), "--payload", str(payload_bytes))


async def _echo_client(target: str, identity_dir: str, seconds: float, in_flight: int, payload: int) -> dict[str, Any]:
    from node.records import pb

    async with aio_channel(target, identity_dir) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        echo = channel.unary_unary(ECHO_METHOD, request_serializer=pb.EchoRequest.SerializeToString,
                                   response_deserializer=pb.EchoResponse.FromString)
        request = pb.EchoRequest(payload=b"x" * payload)
        return await closed_loop(lambda: echo(request, timeout=10), in_flight=in_flight, seconds=seconds)


def bench_echo(seconds: float, in_flight: int) -> dict[str, Any]:
    """``scripts/bench echo``: a fresh node, Admin.Echo from a separate process."""
    import shutil

    from node.identity import init_ca, issue

    work = pathlib.Path(tempfile.mkdtemp(prefix="credit-bench-echo-"))
    try:
        ca = init_ca(work / "ca")
        issue(ca, PARENT_ID, "node", work / "parent")
        issue(ca, "gov:330100:bench", "gov", work / "caller")
        config = _parent_config(work, children=[])
        proc, address = start_node(config, log=work / "parent.log")
        try:
            measured = echo_qps(address, work / "caller", seconds=seconds, in_flight=in_flight)
        finally:
            code = stop_node(proc)
        return {"bench": "echo", **measured, "seconds": seconds, "transport": "grpc mTLS", "server_exit": code}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _parent_config(work: pathlib.Path, children: list[dict[str, Any]]) -> pathlib.Path:
    import yaml

    from node.provisioning import bundled_catalog

    config = work / "parent.yaml"
    config.write_text(yaml.safe_dump({
        "id": PARENT_ID, "level": "district", "identity": {"dir": "parent"},
        "store": {"url": "sqlite:///parent.db"}, "catalog": {"path": str(bundled_catalog())},
        "children": children,
    }), encoding="utf-8")
    return config


# --- submit ---------------------------------------------------------------------------------------
def _write_requests(path: pathlib.Path, requests: Iterator[bytes]) -> int:
    n = 0
    with path.open("wb") as out:
        for data in requests:
            out.write(struct.pack(">I", len(data)))
            out.write(data)
            n += 1
    return n


def _read_requests(path: pathlib.Path) -> list[bytes]:
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append(data[at + 4:at + 4 + size])
        at += 4 + size
    return out


def _signed_batches(work: pathlib.Path, ca: pathlib.Path, unit: str, records: int, batch: int) -> Iterator[bytes]:
    """The child's records as serialised SubmitRequests, each batch signed once (one Merkle root)."""
    from node.app import build_node
    from node.config import parse_config
    from node.identity import issue
    from node.provisioning import bundled_catalog
    from node.records import pb
    from node.sampledata import penalty_rows
    from node.tabular import SourceRow

    issue(ca, CHILD_ID, "node", work / "child")
    config = parse_config({"id": CHILD_ID, "level": "department", "unit": unit,
                           "identity": {"dir": str(work / "child")}, "store": {"url": "sqlite:///child.db"},
                           "catalog": {"path": str(bundled_catalog())}}, base_dir=str(work))
    with build_node(config) as child:
        item = child.catalog.item("admin_penalty")
        for start in range(0, records, batch):
            n = min(batch, records - start)
            rows = [SourceRow(row=start + i + 1, values=v)
                    for i, v in enumerate(penalty_rows(n, source_unit=unit, seed=7, start_no=start + 1))]
            prepared = child.ingest.preparer.prepare(item, rows, source="bench", batch_id=f"b{start}")
            bodies = [p.body for p in prepared.prepared]
            sigs = child.signer.sign_origin(bodies, now_ms=time.time_ns() // 1_000_000)
            request = pb.SubmitRequest(records=[pb.SignedRecord(body=b, chain=[s]) for b, s in zip(bodies, sigs,
                                                                                                  strict=True)])
            if start == 0:
                request.certificates.append(child.identity.signing_cert_der)
            yield request.SerializeToString()


def bench_submit(records: int, batch: int, keep: bool) -> dict[str, Any]:
    import shutil

    from node.identity import init_ca, issue
    from node.sampledata import unit_uscc

    work = pathlib.Path(tempfile.mkdtemp(prefix="credit-bench-submit-"))
    unit = unit_uscc("330102", "MB000001")
    ca = init_ca(work / "ca")
    issue(ca, PARENT_ID, "node", work / "parent")
    t0 = time.perf_counter()
    requests_file = work / "requests.bin"
    n_requests = _write_requests(requests_file, _signed_batches(work, ca, unit, records, batch))
    prepare_s = time.perf_counter() - t0
    config = _parent_config(work, children=[{"id": CHILD_ID, "units": [unit]}])
    proc, address = start_node(config, log=work / "parent.log")
    try:
        cpu0 = process_cpu_s(proc.pid)
        client = _client("submit-client", "--target", address, "--identity", str(work / "child"),
                         "--requests", str(requests_file))
        server_cpu = process_cpu_s(proc.pid) - cpu0
    finally:
        code = stop_node(proc)
    result = {
        "bench": "submit", "records": records, "batch": batch, "requests": n_requests,
        "seconds": client["seconds"], "records_per_s": round(records / client["seconds"], 1),
        "accepted": client["accepted"], "duplicates": client["duplicates"], "rejected": client["rejected"],
        "server_cpu_s": round(server_cpu, 2),
        # What one core would do: the wall-clock rate depends on what else the machine runs.
        "records_per_server_cpu_s": round(records / server_cpu, 1) if server_cpu else None, "store": "sqlite", "transport": "grpc mTLS",
        "prepare_s": round(prepare_s, 2), "server_exit": code, "mb_sent": round(requests_file.stat().st_size / 2**20, 1),
    }
    if keep:
        result["dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _submit_client(target: str, identity_dir: str, requests_file: str) -> dict[str, Any]:
    from node.identity import load_identity
    from node.records import pb
    from node.transport.grpc_client import open_channel, wait_ready

    requests = _read_requests(pathlib.Path(requests_file))  # all in memory before the clock starts
    counts = {pb.Ack.ACCEPTED: 0, pb.Ack.DUPLICATE: 0, pb.Ack.REJECTED: 0}
    first_rejection = ""
    with open_channel(target, load_identity(pathlib.Path(identity_dir))) as channel:
        wait_ready(channel, 30)
        call = channel.stream_stream(SUBMIT_METHOD, request_serializer=lambda b: b,
                                     response_deserializer=pb.SubmitResponse.FromString)
        t0 = time.perf_counter()
        for response in call(iter(requests), timeout=3600):
            for ack in response.acks:
                counts[ack.outcome] += 1
                if ack.outcome == pb.Ack.REJECTED and not first_rejection:
                    first_rejection = f"{ack.rejections[0].code}: {ack.rejections[0].message}"
        seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "accepted": counts[pb.Ack.ACCEPTED],
            "duplicates": counts[pb.Ack.DUPLICATE], "rejected": counts[pb.Ack.REJECTED],
            "first_rejection": first_rejection}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(prog="bench_grpc.py", description="gRPC benchmark clients (run by scripts/bench)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sc = sub.add_parser("submit-client")
    sc.add_argument("--target", required=True)
    sc.add_argument("--identity", required=True)
    sc.add_argument("--requests", required=True)
    ec = sub.add_parser("echo-client")
    ec.add_argument("--target", required=True)
    ec.add_argument("--identity", required=True)
    ec.add_argument("--seconds", type=float, default=5.0)
    ec.add_argument("--in-flight", type=int, default=50)
    ec.add_argument("--payload", type=int, default=16)
    args = ap.parse_args()
    if args.cmd == "submit-client":
        out = _submit_client(args.target, args.identity, args.requests)
    else:
        out = asyncio.run(_echo_client(args.target, args.identity, args.seconds, args.in_flight, args.payload))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
