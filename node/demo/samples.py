"""The demo's bundled sample data (``exchange_config/samples``): what each department reports.

``manifest.yaml`` names, per file, the department that imports it, the catalogue item and the
number of rows. The files are synthetic 双公示 行政处罚 records made by ``node.sampledata`` (valid
check characters, a few of the mistakes departments make); regenerate them with
``python -m node.demo.samples`` (deterministic: same seeds, same files).

The decisions are dated in 2026 and marked 严重 (serious: disclosed for up to three years), so the
demo's lookup still finds them disclosed for years; older or minor penalties would already be out
of their disclosure period and invisible to a lookup, as the law requires.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

from node.catalog import load_catalog
from node.demo.layout import demo_plan
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, write_csv
from node.yamlfile import load_strict

__all__ = ["Sample", "load_samples", "samples_dir", "write_samples"]

# department → (source unit's name, rows, seed, a mistake every N rows)
_PLAN = {
    "dept:330102:scjgj": ("杭州市上城区市场监督管理局", 300, 101, 60),
    "dept:330106:scjgj": ("杭州市西湖区市场监督管理局", 200, 102, 0),
}


@dataclass(frozen=True)
class Sample:
    path: pathlib.Path
    department: str
    item: str
    rows: int


def samples_dir() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2] / "exchange_config" / "samples"


def load_samples(directory: pathlib.Path | None = None) -> list[Sample]:
    base = directory or samples_dir()
    manifest = load_strict((base / "manifest.yaml").read_text(encoding="utf-8"))
    return [Sample(base / s["file"], s["department"], s["item"], int(s["rows"])) for s in manifest["samples"]]


def _recent_and_serious(rows: Iterator[dict[str, str]], seed: int) -> Iterator[dict[str, str]]:
    rng = random.Random(seed)
    for row in rows:
        decided = dt.date(2026, 1, 5) + dt.timedelta(days=rng.randrange(0, 260))
        if row.get("CF_JDRQ", "").count("-") == 2 and row["CF_JDRQ"] != "2024-02-30":  # keep the spoiled dates
            row["CF_JDRQ"] = decided.isoformat()
            row["CF_YXQ"] = (decided + dt.timedelta(days=365)).isoformat()
        if row.get("CF_WSH"):
            row["CF_WSH"] = row["CF_WSH"].replace("〔2024〕", "〔2026〕").replace("〔2025〕", "〔2026〕")
        row["CF_SXCD"] = "严重"
        yield row


def write_samples(directory: pathlib.Path | None = None) -> list[Sample]:
    base = directory or samples_dir()
    base.mkdir(parents=True, exist_ok=True)
    layout = demo_plan()
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    entries = []
    for department, (name, rows, seed, bad_every) in _PLAN.items():
        plan = layout.node(department)
        division = department.split(":")[1]
        file = f"{plan.dirname}-admin_penalty.csv"
        generated = penalty_rows(rows, source_unit=plan.unit, source_name=name, division=division, seed=seed,
                                 bad_every=bad_every)
        write_csv(base / file, item, _recent_and_serious(generated, seed))
        entries.append({"file": file, "department": department, "item": "admin_penalty", "rows": rows})
    header = ("# The demo's sample data (node/demo/samples.py): synthetic 行政处罚 per department.\n"
              "# Regenerate: python -m node.demo.samples\n")
    (base / "manifest.yaml").write_text(header + yaml.safe_dump({"samples": entries}, allow_unicode=True,
                                                                sort_keys=False), encoding="utf-8")
    return load_samples(base)


if __name__ == "__main__":
    for sample in write_samples():
        print(f"{sample.path}: {sample.rows} rows for {sample.department}")
