"""The bundled sample data is what its generator writes, and only its deliberate mistakes are refused."""

from __future__ import annotations

import pathlib

from node.catalog import load_catalog
from node.demo.samples import load_samples, samples_dir, write_samples
from node.pipeline import headers_for
from node.provisioning import bundled_catalog
from node.tabular import read_table
from node.validation import Validator


def test_bundled_samples_are_what_the_generator_writes_today(tmp_path: pathlib.Path) -> None:
    # A catalogue rule added without regenerating the files turns rows the demo calls good into refusals.
    fresh = write_samples(tmp_path)
    bundled = load_samples()
    assert [s.path.name for s in fresh] == [s.path.name for s in bundled]
    stale = [s.path.name for s in bundled if s.path.read_bytes() != (tmp_path / s.path.name).read_bytes()]
    assert not stale, f"regenerate with python -m node.demo.samples: {stale}"


def test_samples_are_refused_only_for_their_deliberate_mistakes() -> None:
    catalog = load_catalog(bundled_catalog())
    refused: dict[str, int] = {}
    for sample in load_samples(samples_dir()):
        item = catalog.item(sample.item)
        validator = Validator(catalog)
        rows = list(read_table(sample.path, headers_for(item)))
        assert len(rows) == sample.rows
        refused[sample.path.name] = sum(1 for r in rows if not validator.check(item, r.values, r.row).ok)
    # One mistake every 60 rows in the first department's file; none in the second's.
    assert refused == {"dept-330102-scjgj-admin_penalty.csv": 5, "dept-330106-scjgj-admin_penalty.csv": 0}
