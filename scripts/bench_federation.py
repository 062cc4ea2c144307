#!/usr/bin/env python3
"""``scripts/bench federation --transport amqp|grpc --records N``: department → district → city on this machine.

Three ``credit-node start`` processes (SQLite stores, mutual TLS, the real TLS RabbitMQ for amqp).
One JSON line:

- ``records_per_s``: end to end. N records are imported at the department first (its node not
  running), then the department starts and its forwarder drains the backlog: from the first hop
  signature (the forwarder's first batch) to the last record stored at the city. Every record is
  verified (signature chain), re-validated and stored at the district and again at the city.
- ``p50_ms`` / ``p99_ms``: import → arrival at the city, per record, measured in a second, live
  phase (``live_records`` more records imported while all three nodes run): the city's
  ``received_at_ms`` minus the department's (the commit of the import batch).
- ``raw_publish_per_s`` (amqp): publishing the same number of same-sized messages as the
  department published, with a confirm per message, to a quorum queue on the same broker, from one
  ``BlockingConnection`` — the ceiling for a single confirming publisher. ``raw_publish_records_per_s``
  is that rate times the records per message.
- ``idle_p50_ms``: the same for one batch imported into an idle federation (no queue in front).
- ``cpu_ms_per_record``: CPU (user + system) each process spent per record during the drain,
  including its start; with ``cpus`` and ``load_average`` (other work on the machine) this tells
  what the rate would be on an idle machine: about ``cpus * 1000 / sum(cpu_ms_per_record)``.
- ``verified``: ``credit-node verify`` at the city afterwards (every chain, from the stored bytes).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sqlite3
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPT, DISTRICT, CITY = "dept:330102:scjgj", "district:330102", "city:330100"


def _first_hop_ms(db: pathlib.Path) -> int:
    """When the department's forwarder signed its first batch (the start of the drain)."""
    from node.records import decode_signed

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (signed,) = conn.execute("SELECT signed FROM record_revisions ORDER BY received_at_ms LIMIT 1").fetchone()
    finally:
        conn.close()
    return int(decode_signed(signed).chain[1].signed_at_ms)


def _message_sizes(db: pathlib.Path, batch: int) -> tuple[int, int]:
    """(messages, average bytes) the department published: its records in batches of ``batch``."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        count, total = conn.execute("SELECT count(*), sum(length(signed)) FROM record_revisions").fetchone()
    finally:
        conn.close()
    messages = -(-int(count) // batch)
    hop_and_framing = 330  # a hop signature (~320 bytes with a 2000-leaf path) and field framing
    return messages, int((int(total) + hop_and_framing * int(count)) / messages)


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_publish(fed: Any, messages: int, size: int) -> float:
    """Messages per second: one BlockingConnection publishing with a confirm each, to a quorum queue."""
    from node import identity
    from node.transport.amqp import connect, publish
    from node.transport.amqp_topology import QUEUE_ARGUMENTS, parse_amqp_url

    broker = fed.broker
    who = "admin:bench"
    tls = fed.base / "bench-identity"
    if not (tls / "cert.pem").exists():
        identity.issue(fed.base / "ca", who, "admin", tls)
    definitions = {"users": [{"name": who, "password_hash": "", "tags": []}],
                   "permissions": [{"user": who, "vhost": "/", "configure": "^bench$",
                                    "write": "^(bench|amq\\.default)$", "read": "^bench$"}],
                   "queues": [{"name": "bench", "vhost": "/", "durable": True, "auto_delete": False,
                               "arguments": QUEUE_ARGUMENTS}]}
    path = fed.base / "bench-definitions.json"
    path.write_text(json.dumps(definitions), encoding="utf-8")
    broker._run("ctl", "--dir", str(broker.dir), "--", "import_definitions", str(path))
    broker._await_users({who})
    me = identity.load_identity(tls)
    connection = connect(parse_amqp_url(broker.url, "localhost"), me, name="raw publish")
    channel = connection.channel()
    channel.confirm_delivery()
    body = b"\x5a" * size
    t0 = time.perf_counter()
    for _ in range(messages):
        publish(channel, exchange="", routing_key="bench", body=body, user_id=who, kind="bench")
    elapsed = time.perf_counter() - t0
    channel.queue_purge("bench")
    connection.close()
    return messages / elapsed


def bench_federation(transport: str, records: int, live: int, batch: int, keep: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from node.demo.layout import chain_plan
    from node.demo.local import LocalFederation

    base = pathlib.Path(tempfile.mkdtemp(prefix="credit-bench-federation-"))
    fed = LocalFederation(base, chain_plan(), transport=transport,  # type: ignore[arg-type]
                          forwarding={"batch": batch, "lease_s": 120.0}, log_level="WARNING")
    result: dict[str, Any] = {"bench": "federation", "transport": transport, "records": records, "batch": batch}
    try:
        fed.provision()
        t0 = time.perf_counter()
        csv = fed.sample_csv(DEPT, records, seed=7)
        result["generate_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        imported = fed.import_file(DEPT, csv)
        result["import_s"] = round(time.perf_counter() - t0, 2)
        accepted = int(imported["accepted"])
        result["accepted"] = accepted
        fed.nodes[CITY].start()
        fed.nodes[DISTRICT].start()
        fed.nodes[DEPT].start()
        fed.wait_for(CITY, accepted, deadline_s=3600)
        # CPU per record and node: what the pipeline costs, whatever else the machine is doing.
        result["cpu_ms_per_record"] = {n: round(_cpu_s(p.pid) * 1000 / accepted, 3) for n, p in fed.nodes.items()}
        if fed.broker is not None:
            broker_pid = int((fed.broker.dir / "rabbit.pid").read_text().strip())
            result["cpu_ms_per_record"]["broker"] = round(_cpu_s(broker_pid) * 1000 / accepted, 3)
        result["load_average"] = round(os.getloadavg()[0], 2)
        dept_db, district_db = (fed.config(n).parent / "node.db" for n in (DEPT, DISTRICT))
        city_times = fed.times(CITY)
        started, finished = _first_hop_ms(district_db), max(city_times.values())
        result["drain_s"] = round((finished - started) / 1000, 3)
        result["records_per_s"] = round(accepted / ((finished - started) / 1000), 1)
        messages, size = _message_sizes(dept_db, batch)
        result["messages_per_hop"], result["message_bytes"] = messages, size
        # Live phase: records imported while every node runs, timed from import to the city.
        before = dict(city_times)
        live_csv = fed.sample_csv(DEPT, live, seed=8, start_no=records + 1)
        fed.import_file(DEPT, live_csv)
        fed.wait_for(CITY, accepted + live, deadline_s=600)
        dept_times, city_times = fed.times(DEPT), fed.times(CITY)
        latencies = sorted(city_times[k] - dept_times[k] for k in city_times if k not in before and k in dept_times)
        result["live_records"] = len(latencies)
        result["p50_ms"] = latencies[len(latencies) // 2]
        result["p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        # And one batch into an idle federation: the latency without a queue in front of it.
        before = dict(city_times)
        fed.import_file(DEPT, fed.sample_csv(DEPT, min(batch, 1000), seed=9, start_no=records + live + 1))
        fed.wait_for(CITY, accepted + live + min(batch, 1000), deadline_s=600)
        dept_times, city_times = fed.times(DEPT), fed.times(CITY)
        idle = sorted(city_times[k] - dept_times[k] for k in city_times if k not in before and k in dept_times)
        result["idle_p50_ms"] = idle[len(idle) // 2]
        live += len(idle)
        codes = {n: proc.stop() for n, proc in fed.nodes.items()}  # the broker stays up for the raw rate
        result["clean_exit"] = all(c == 0 for c in codes.values())
        if fed.broker is not None:
            rate = raw_publish(fed, messages, size)
            result["raw_publish_per_s"] = round(rate, 1)
            result["raw_publish_records_per_s"] = round(rate * accepted / messages, 1)
        t0 = time.perf_counter()
        verify = fed.cli_json(CITY, "verify")
        result["verified"] = bool(verify["ok"]) and verify["records"] == accepted + live
        result["verify_s"] = round(time.perf_counter() - t0, 1)
        result["dead_letters"] = sum(fed.dead_letters(n) for n in fed.nodes)
        result["store"] = "sqlite (WAL, synchronous=FULL)"
        result["cpus"] = len(os.sched_getaffinity(0))
    finally:
        for proc in fed.nodes.values():
            proc.stop()
        if fed.broker is not None:
            fed.broker.stop()
        if keep:
            result["dir"] = str(base)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return result


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", choices=("amqp", "grpc"), default="amqp")
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--live", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    print(json.dumps(bench_federation(args.transport, args.records, args.live, args.batch, args.keep)))
