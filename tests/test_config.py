import pathlib

import pytest

from node.config import expand_env, load_config, parse_config, to_dict
from node.errors import ConfigError

BASE = {"id": "dept:330102:scjgj", "level": "department", "unit": "11330102MB0000001X",
        "identity": {"dir": "identity"}}


def test_minimal_department_config_gets_defaults():
    cfg = parse_config(BASE)
    assert cfg.store.url == "sqlite:///node.db"
    assert cfg.parent is None and cfg.children == ()


def test_unknown_key_fails_with_dotted_path():
    with pytest.raises(ConfigError, match=r"identity\.colour"):
        parse_config({**BASE, "identity": {"dir": "x", "colour": "red"}})


def test_unknown_key_in_list_entry_names_its_index():
    with pytest.raises(ConfigError, match=r"children\[1\]\.unitz"):
        parse_config({**BASE, "children": [{"id": "a"}, {"id": "b", "unitz": []}]})


def test_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="missing configuration key: identity"):
        parse_config({"id": "city:330100", "level": "city"})


def test_wrong_level_is_refused():
    with pytest.raises(ConfigError, match="level"):
        parse_config({**BASE, "level": "village"})


def test_department_without_unit_is_refused():
    with pytest.raises(ConfigError, match="unit"):
        parse_config({k: v for k, v in BASE.items() if k != "unit"})


def test_env_expansion_with_default_and_override():
    assert expand_env("${DB_URL:sqlite:///x.db}", {}) == "sqlite:///x.db"
    assert expand_env("${DB_URL:sqlite:///x.db}", {"DB_URL": "postgresql://h/db"}) == "postgresql://h/db"
    with pytest.raises(ConfigError, match="NOPE"):
        expand_env("${NOPE}", {})


def test_relative_sqlite_path_resolves_against_config_dir(tmp_path: pathlib.Path):
    (tmp_path / "node.yaml").write_text("id: city:330100\nlevel: city\nidentity: {dir: id}\n"
                                        "store: {url: 'sqlite:///data/n.db'}\n")
    cfg = load_config(tmp_path / "node.yaml")
    assert cfg.store_url == f"sqlite:///{tmp_path}/data/n.db"
    assert cfg.path("id") == tmp_path / "id"


def test_invalid_yaml_is_a_config_error(tmp_path: pathlib.Path):
    (tmp_path / "node.yaml").write_text("id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "node.yaml")


def test_lifecycle_schedule_interval_has_a_default_and_a_checked_key():
    assert parse_config(BASE).lifecycle.schedule_every_s == 3600.0
    assert to_dict(parse_config(BASE))["lifecycle"]["schedule_every_s"] == 3600.0  # show-config
    assert parse_config({**BASE, "lifecycle": {"schedule_every_s": "600"}}).lifecycle.schedule_every_s == 600.0
    with pytest.raises(ConfigError, match=r"lifecycle\.schedule_seconds"):
        parse_config({**BASE, "lifecycle": {"schedule_seconds": 600}})
