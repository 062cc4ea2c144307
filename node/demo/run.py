"""``credit-node demo`` / ``./scripts/demo``: a federation on this machine, every step checked.

A city, two districts (peer regions) and a department under each run as separate processes on
loopback, with mutual TLS from a development CA made in a temporary directory, SQLite stores, and
grpc (default) or amqp (a private TLS RabbitMQ) between them. The demo imports the bundled sample
data at each department, waits until everything has reached the city, verifies every signature
chain, explains one record's route, runs a cross-region lookup, sends a revision back down to its
source, prints what moved where and how long it took, and stops everything it started. Each step
checks its outcome; the exit status is 0 only if every check passed.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from node.demo.layout import Transport, demo_plan
from node.demo.local import LocalFederation
from node.demo.processes import wait_until
from node.demo.samples import load_samples

__all__ = ["Demo", "run_demo"]

CITY = "city:330100"
DEADLINE_S = 240.0


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Demo:
    base: pathlib.Path
    transport: Transport = "grpc"
    say: Callable[[str], None] = print
    steps: list[Step] = field(default_factory=list)
    imported: dict[str, dict[str, Any]] = field(default_factory=dict)
    started_import_ms: int = 0

    def __post_init__(self) -> None:
        self.fed = LocalFederation(self.base, demo_plan(), transport=self.transport,
                                   forwarding={"min_backoff_s": 0.2, "max_backoff_s": 5.0})

    # --- the run ----------------------------------------------------------------------------
    def run(self) -> bool:
        self.say(f"credit-node demo: a city, two districts and two departments over {self.transport} "
                 f"(mutual TLS), in {self.base}")
        plan: list[tuple[str, Callable[[], str]]] = [
            ("dev CA, certificates and node configurations" + (", TLS broker" if self.transport == "amqp" else ""),
             self._provision),
            ("five nodes serving (Admin.Status answers)", self._start),
            ("sample data imported at each department", self._import),
            ("everything has reached the city", self._arrived),
            ("every signature chain verifies, at every node", self._verify),
            ("route of a record, hop by hop, from its chain", self._route),
            ("cross-region lookup (district:330102 asks its peer region)", self._lookup),
            ("a revision made at the city travels down to its source", self._downward),
            ("objection round trip: filed at the city, corrected by the source, shown at the city",
             self._objection),
            ("refused rows counted at the city (reconcile department → district → city)", self._assessed),
            ("no dead letters, nothing pending", self._clean),
        ]
        try:
            for name, action in plan:
                if not self._step(name, action):
                    break
        finally:
            self._step("every process stopped", self._stop)
        if all(s.ok for s in self.steps) and len(self.steps) == len(plan) + 1:
            self._table()
            return True
        return False

    def _step(self, name: str, action: Callable[[], str]) -> bool:
        t0 = time.monotonic()
        try:
            detail, ok = action(), True
        except Exception as exc:  # the demo reports any failure as a failed check, then stops
            detail, ok = f"{type(exc).__name__}: {exc}", False
        step = Step(name, ok, detail, time.monotonic() - t0)
        self.steps.append(step)
        self.say(f"{'✓' if ok else '✗'} {name} ({step.seconds:.1f}s){': ' + detail if detail else ''}")
        return ok

    # --- the steps ----------------------------------------------------------------------------
    def _provision(self) -> str:
        provisioned = self.fed.provision()
        check(all(p.exists() for p in provisioned.configs.values()), "a node configuration is missing")
        if self.fed.broker is not None:
            check(self.fed.broker.running(), "the broker is not running")
            return f"broker on {self.fed.broker.url}"
        return ", ".join(f"{n}@{provisioned.target(n)}" for n in provisioned.configs)

    def _start(self) -> str:
        self.fed.start()
        for plan in self.fed.layout.nodes:
            status = self._status(plan.id)
            check(status["node_id"] == plan.id and status["level"] == plan.level,
                  f"{plan.id} answered as {status['node_id']} ({status['level']})")
        return f"catalogue {self._status(CITY)['catalog_version']}"

    def _import(self) -> str:
        self.started_import_ms = time.time_ns() // 1_000_000
        parts = []
        for sample in load_samples():
            result = self.fed.import_file(sample.department, sample.path, sample.item)
            check(result["accepted"] + result["rejected"] + result["duplicates"] == sample.rows,
                  f"{sample.path.name}: {result} does not account for {sample.rows} rows")
            check(all(r["code"] for r in result["rejections"]), "a refused row without a code")
            self.imported[sample.department] = result
            codes = sorted({r["code"] for r in result["rejections"]})
            parts.append(f"{sample.department}: {result['accepted']} accepted, {result['rejected']} refused"
                         + (f" ({', '.join(codes)})" if codes else ""))
        return "; ".join(parts)

    def _arrived(self) -> str:
        expected = sum(r["accepted"] for r in self.imported.values())
        wait_until(lambda: sum(self._status(CITY)["counts"].values()) >= expected, DEADLINE_S,
                   what=f"{expected} records at the city", poll_s=0.25)
        counts = self._status(CITY)["counts"]
        check(sum(counts.values()) == expected, f"the city holds {counts}, expected {expected}")
        return f"{expected} records at the city, {(time.time_ns() // 1_000_000 - self.started_import_ms) / 1000:.1f}s after the import began"

    def _verify(self) -> str:
        total = 0
        for node_id in self.fed.nodes:
            report = self.fed.cli_json(node_id, "verify")
            check(report["ok"], f"{node_id}: {report['failures'][:2]}")
            total += report["records"]
        return f"{total} record revisions re-verified from the stored bytes"

    def _route(self) -> str:
        dept = self.fed.layout.departments[1]
        record_id = sorted(self.fed.keys(dept.id))[0][0]
        route = self.fed.cli_json(CITY, "route", "explain", record_id)
        check(route["verified"], f"{record_id}: {route['problem']}")
        path = [h["signer"] for h in route["hops"]] + [CITY]
        check(path == [dept.id, dept.id, dept.parent, CITY], f"unexpected path {path}")
        return " → ".join(f"{h['to']} by {h['rule_id']}" for h in route["hops"] if h["kind"] == "hop")

    def _lookup(self) -> str:
        from node import identity

        gov = self.base / "gov"
        if not (gov / "cert.pem").exists():
            identity.issue(self.base / "ca", "gov:330100:fgw", "gov", gov)
        east_dept = self.fed.layout.departments[1]
        subject = next(row[0] for row in self.fed._query(
            east_dept.id, "SELECT subject_code FROM record_heads WHERE subject_code LIKE '91%' ORDER BY 1 LIMIT 1"))
        assert self.fed.provisioned is not None
        result = self.fed.cli("district:330102", "lookup", subject, "--target",
                              self.fed.provisioned.target("district:330102"), "--identity", str(gov),
                              "--server-name", "localhost", "--purpose", "行政许可审查（演示）", "--json")
        check(result.returncode == 0, f"lookup failed ({result.returncode}): {result.stderr.strip()}")
        answer = json.loads(result.stdout)
        regions = sorted({r["region"] for r in answer["records"]})
        check(bool(answer["records"]) and not answer["partial"], f"lookup answered {answer}")
        check("district:330106" in regions, f"no record from the peer region (regions: {regions})")
        return f"{subject}: {len(answer['records'])} record(s) from {', '.join(regions)}, complete"

    def _downward(self) -> str:
        dept = self.fed.layout.departments[0]
        record_id = sorted(k for k in self.fed.keys(dept.id) if k[1] == 1)[0][0]
        done = self.fed.cli_json(CITY, "downward", "revise", record_id, "--status", "revoked",
                                 "--reason", "处罚决定已撤销（演示）")
        wait_until(lambda: (record_id, done["revision"]) in self.fed.keys(dept.id), DEADLINE_S,
                   what=f"revision {done['revision']} of {record_id} at {dept.id}", poll_s=0.25)
        return f"{record_id} revision {done['revision']} (revoked) city → {dept.parent} → {dept.id}"

    def _objection(self) -> str:
        dept = self.fed.layout.departments[1]
        record_id, subject = next(iter(self.fed._query(
            dept.id, "SELECT record_id, subject_code FROM record_heads WHERE revision = 1 AND item = "
                     "'admin_penalty' ORDER BY record_id LIMIT 1")))
        case = self.fed.cli_json(CITY, "objection", "file", record_id, "--by", subject,
                                 "--reason", "处罚内容与决定书不符（演示）")
        case_id, marked = str(case["case_id"]), int(case["revision"])
        check(case["state"] != "closed", f"the platform closed the case itself: {case}")
        wait_until(lambda: (record_id, marked) in self.fed.keys(dept.id), DEADLINE_S,
                   what=f"the 异议 mark (revision {marked}) at {dept.id}", poll_s=0.25)
        corrected = "警告，责令改正（经核实更正）"
        answer = self.fed.cli_json(dept.id, "objection", "answer", case_id, "correct",
                                   "--field", f"CF_NR={corrected}", "--note", "核实后更正处罚内容")
        revision = int(answer["revision"])
        wait_until(lambda: (record_id, revision) in self.fed.keys(CITY), DEADLINE_S,
                   what=f"corrected revision {revision} at the city", poll_s=0.25)
        self.fed.cli_json(CITY, "objection", "tick")
        shown = self.fed.cli_json(CITY, "query", subject)
        [record] = [r for r in shown["records"] if r["record_id"] == record_id]
        check(record["revision"] == revision and record["fields"].get("CF_NR") == corrected,
              f"the city shows {record['revision']}: {record['fields'].get('CF_NR')}")
        closed = self.fed.cli_json(CITY, "objection", "show", case_id)
        return (f"{case_id}: marked at {dept.id} as revision {marked}, corrected there as revision {revision}, "
                f"shown at the city; case {closed['case']['state']}")

    def _assessed(self) -> str:
        # Refused rows stay at the department; reconciliation carries their counts up, so the
        # city's assessment (report sources) sees which source reports badly.
        since = time.strftime("%Y-%m-%d", time.gmtime(self.started_import_ms / 1000 - 86_400))
        counted: dict[str, int] = {}
        for dept in self.fed.layout.departments:
            own = self.fed.cli_json(dept.id, "report", "sources", "--since", since)["sources"]
            counted.update({f"{r['source_unit']}/{r['item']}": r["refused"] for r in own if r["refused"]})
            assert dept.parent is not None
            for node_id in (dept.id, dept.parent):
                done = self.fed.cli_json(node_id, "reconcile", "--with", "parent")
                check(done["in_sync"], f"{node_id} is not in sync with its parent: {done}")
        check(bool(counted), "no department refused a row: nothing to count")
        city = self.fed.cli_json(CITY, "report", "sources", "--since", since)["sources"]
        at_city = {f"{r['source_unit']}/{r['item']}": r["refused"] for r in city if r["refused"]}
        check(at_city == counted, f"the city counts {at_city}, the departments {counted}")
        return "; ".join(f"{key}: {n} refused" for key, n in sorted(at_city.items()))

    def _clean(self) -> str:
        self.fed.wait_drained(DEADLINE_S)
        for node_id in self.fed.nodes:
            check(self.fed.dead_letters(node_id) == 0, f"{node_id} has dead letters")
        return ""

    def _stop(self) -> str:
        codes = self.fed.stop()
        check(all(c in (0, None) for c in codes.values()), f"exit codes {codes}")
        if self.fed.broker is not None:
            check(not self.fed.broker.running(), "the broker is still running")
        return ""

    # --- reporting ------------------------------------------------------------------------------
    def _status(self, node_id: str) -> dict[str, Any]:
        from node.identity import load_identity
        from node.transport import grpc_client

        assert self.fed.provisioned is not None
        me = load_identity(self.fed.provisioned.dir(CITY) / "identity")
        with grpc_client.open_channel(self.fed.provisioned.target(node_id), me, server_name="localhost") as channel:
            resp = grpc_client.status(channel, timeout=10)
        return {"node_id": resp.node_id, "level": resp.level, "catalog_version": resp.catalog_version,
                "counts": {c.item: c.records for c in resp.counts}, "outbox": resp.outbox_depth}

    def _table(self) -> None:
        start = self.started_import_ms
        self.say("")
        self.say(f"{'node':<20} {'level':<11} {'held':>5}  what came from where, and when (s after the import began)")
        for plan in self.fed.layout.top_down()[::-1]:
            groups = self.fed._query(plan.id, "SELECT received_from, count(*), min(received_at_ms), "
                                              "max(received_at_ms) FROM record_revisions GROUP BY 1 ORDER BY 1")
            parts = []
            for sender, n, first, last in groups:
                if not sender:
                    parts.append(f"{n} {'imported' if plan.level == 'department' else 'made here'}")
                else:
                    parts.append(f"{n} from {sender} ({(first - start) / 1000:.2f}…{(last - start) / 1000:.2f})")
            held = sum(int(g[1]) for g in groups)
            self.say(f"{plan.id:<20} {plan.level:<11} {held:>5}  {'; '.join(parts)}")
        city_times = self.fed.times(CITY)
        latencies = sorted(city_times[key] - at for dept in self.fed.layout.departments
                           for key, at in self.fed.times(dept.id).items() if key in city_times and key[1] == 1)
        if latencies:
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            self.say(f"import → city: median {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms over "
                     f"{len(latencies)} records ({self.transport}; two hops, each verifying and storing them)")


def run_demo(transport: Transport = "grpc", keep: bool = False, directory: pathlib.Path | None = None,
             say: Callable[[str], None] = print) -> bool:
    base = directory or pathlib.Path(tempfile.mkdtemp(prefix="credit-demo-"))
    demo = Demo(base, transport, say)
    ok = False
    try:
        ok = demo.run()
    finally:
        if keep or not ok:
            say(f"kept {base} (node logs: */node.log)")
        else:
            shutil.rmtree(base, ignore_errors=True)
    say("demo " + ("passed: every step checked" if ok else "FAILED"))
    return ok
