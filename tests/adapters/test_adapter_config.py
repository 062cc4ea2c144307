"""The ``adapters:`` section of node.yaml: a tagged list, strict like the rest of the config."""

import pytest

from node.config import DatabaseAdapterConfig, FileAdapterConfig, adapter_name, parse_config
from node.errors import ConfigError

BASE = {"id": "dept:330102:scjgj", "level": "department", "unit": "11330102MB0000019G",
        "identity": {"dir": "identity"}}
DB = {"kind": "database", "item": "admin_penalty", "url": "sqlite://", "table": "cf", "watermark": "updated_at"}


def test_adapters_are_built_by_kind():
    cfg = parse_config({**BASE, "adapters": [{"kind": "file", "dir": "drop"},
                                             {**DB, "columns": {"CF_WSH": "decision_no"}, "key": ["id"]}]})
    file, db = cfg.adapters
    assert isinstance(file, FileAdapterConfig) and file.interval_s == 5.0
    assert isinstance(db, DatabaseAdapterConfig) and db.columns == {"CF_WSH": "decision_no"}
    assert db.key == ("id",)
    assert [adapter_name(a) for a in cfg.adapters] == ["file:drop", "database:cf"]


@pytest.mark.parametrize(("entry", "message"), [
    ({"kind": "file", "dir": "d", "colour": 1}, r"unknown configuration key: adapters\[0\]\.colour"),
    ({"kind": "ftp", "dir": "d"}, r"adapters\[0\]\.kind: 'ftp' is not one of file, database"),
    ({"dir": "d"}, r"missing configuration key: adapters\[0\]\.kind"),
    ({**DB, "columns": {"CF_WSH": ["a"]}}, r"adapters\[0\]\.columns\.CF_WSH: expected a string"),
    ({k: v for k, v in DB.items() if k != "watermark"}, r"missing configuration key: adapters\[0\]\.watermark"),
    ({**DB, "batch_rows": "many"}, r"adapters\[0\]\.batch_rows: expected a number"),
])
def test_bad_adapter_entries_name_their_dotted_path(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "adapters": [entry]})


def test_two_adapters_with_one_name_are_refused():
    with pytest.raises(ConfigError, match=r"adapters\[1\]\.name"):
        parse_config({**BASE, "adapters": [DB, DB]})


def test_env_expansion_reaches_adapter_urls():
    cfg = parse_config({**BASE, "adapters": [{**DB, "url": "${SRC_URL:sqlite://}"}]},
                       environ={"SRC_URL": "postgresql://u@h/db"})
    assert cfg.adapters[0].url == "postgresql://u@h/db"  # type: ignore[union-attr]
