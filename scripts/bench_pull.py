"""``scripts/bench pull``: a department node pulling a published table from the real PostgreSQL.

One JSON line: ``rows_per_s`` of the whole pull (``credit-node adapters run --until-idle`` in a
child process: read from PostgreSQL, validate, sign, store in SQLite with the position in each
batch's transaction) and that process's ``peak_rss_mb``; then where the time goes:
``read_rows_per_s`` is the pull's own part alone (keyset pages through a server-side cursor and
the rows made into ``SourceRow``\\ s, with a sink that stores nothing), the rest is the node's ingest.
"""

from __future__ import annotations

import json
import pathlib
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class _Memory:
    """The pull's position kept in memory (the read-only measurement stores nothing)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def put(self, key: str, value: str) -> None:
        self.values[key] = value


class _Discard:
    """A sink that accepts every row and stores nothing but the position: the pull's own cost."""

    def __init__(self, state: _Memory) -> None:
        self._state = state

    def prepare(self, item: Any, rows: Sequence[Any], *, source: str, batch_id: str) -> Any:
        return rows

    def commit(self, item: Any, batch: Any, *, source: str, batch_id: str,
               meta: Mapping[str, str] | None = None) -> list[Any]:
        from node.preparing import RowOutcome

        for key, value in (meta or {}).items():
            self._state.put(key, value)
        return [RowOutcome(r.row, "accepted") for r in batch]


def _read_only(url: str, catalog: Any, batch_rows: int, page_rows: int) -> float:
    from adapters.database import DatabasePull
    from node.config import DatabaseAdapterConfig

    cfg = DatabaseAdapterConfig(kind="database", item="admin_penalty", url=url, table="cf_penalties",
                                watermark="updated_at", batch_rows=batch_rows, page_rows=page_rows)
    state = _Memory()
    pull = DatabasePull(cfg, catalog=catalog, sink=_Discard(state), state=state, name="bench")
    t0 = time.perf_counter()
    while pull.poll():
        pass
    elapsed = time.perf_counter() - t0
    pull.close()
    return elapsed


def bench_pull(rows: int, keep: bool, batch_rows: int = 8192, page_rows: int = 20000) -> dict[str, object]:
    sys.path.insert(0, str(ROOT / "tests" / "adapters"))
    from source_tables import fill_postgres_fast, penalty_table
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from node.catalog import load_catalog
    from node.provisioning import bundled_catalog, init_node
    from node.sampledata import unit_uscc

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="credit-bench-pull-"))
    unit = unit_uscc("330102", "MB000001")
    catalog = load_catalog(bundled_catalog())
    item = catalog.item("admin_penalty")
    name = f"credit_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        src = create_engine(url)
        t0 = time.perf_counter()
        fill_postgres_fast(src, penalty_table(item), item, rows, unit=unit)
        fill_s = time.perf_counter() - t0
        src.dispose()
        read_s = _read_only(url, catalog, batch_rows, page_rows)
        cfg = init_node(tmp / "node", node_id="dept:330102:scjgj", level="department", unit=unit)
        with cfg.open("a", encoding="utf-8") as fh:
            fh.write(f"adapters:\n- kind: database\n  item: admin_penalty\n  url: '{url}'\n  table: cf_penalties\n"
                     f"  watermark: updated_at\n  batch_rows: {batch_rows}\n  page_rows: {page_rows}\n")
        py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
        from bench_memory import run_sampled

        t0 = time.perf_counter()
        run, peak_mb = run_sampled([py, "-m", "node", "--config", str(cfg), "adapters", "run", "--until-idle",
                                    "--json", "--log-level", "WARNING"])
        elapsed = time.perf_counter() - t0
        if run.returncode:
            raise SystemExit(f"pull failed ({run.returncode}): {run.stderr[-2000:]}")
        summary = json.loads(run.stdout)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    result: dict[str, object] = {
        "bench": "pull", "rows": rows, "accepted": summary["accepted"], "rejected": summary["rejected"],
        "seconds": round(elapsed, 3), "rows_per_s": round(rows / elapsed, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "read_seconds": round(read_s, 3), "read_rows_per_s": round(rows / read_s, 1),
        "ingest_share": round(max(elapsed - read_s, 0) / elapsed, 3),
        "batch_rows": batch_rows, "page_rows": page_rows, "fill_s": round(fill_s, 2),
        "source": "postgresql", "store": "sqlite",
    }
    if keep:
        result["dir"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
