import pathlib

import pytest

from node.config import load_config, parse_config, to_dict
from node.config_reader import expand_env
from node.errors import ConfigError

BASE = {"id": "dept:330102:scjgj", "level": "department", "unit": "11330102MB0000019G",
        "identity": {"dir": "identity"}}
DISTRICT = {"id": "district:330102", "level": "district", "identity": {"dir": "identity"}}  # has children


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


@pytest.mark.parametrize("line", ["bogus: 2026-13-01", "bogus: 2026-02-30"])
def test_an_impossible_date_anywhere_is_a_config_error(tmp_path: pathlib.Path, line: str):
    (tmp_path / "node.yaml").write_text(f"id: city:330100\nlevel: city\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bogus"):  # a date-looking value is text: the key is judged
        load_config(tmp_path / "node.yaml")
    (tmp_path / "node.yaml").write_text(f"id: city:330100\nlevel: city\nbogus: !!timestamp {line.split()[1]}\n")
    with pytest.raises(ConfigError, match="a value cannot be read"):  # asked for as a date, it cannot be one
        load_config(tmp_path / "node.yaml")


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


def test_show_config_hides_passwords_in_every_url():
    cfg = parse_config({**BASE, "store": {"url": "postgresql://credit:S3cretPW@db.example/credit"},
                        "adapters": [{"kind": "database", "item": "admin_penalty", "table": "t",
                                      "watermark": "updated_at", "url": "mysql+pymysql://u:p@ss@h/db"}]})
    shown = repr(to_dict(cfg))
    assert "S3cretPW" not in shown and "p@ss" not in shown
    assert "postgresql://credit:***@db.example/credit" in shown and "mysql+pymysql://u:***@h/db" in shown


@pytest.mark.parametrize("url", ["postgresql://u:a/b#c?d@db.example/credit",
                                 "postgresql:///credit?host=db.example&user=u&password=S3cretPW",
                                 "postgresql:///credit?host=db.example&PASSWORD=S3cretPW&sslmode=require"])
def test_show_config_hides_passwords_with_url_characters_or_in_the_query(url: str):
    shown = repr(to_dict(parse_config({**BASE, "store": {"url": url}})))
    assert "S3cretPW" not in shown and "a/b#c?d" not in shown and "***" in shown


@pytest.mark.parametrize(("key", "value"), [("batch", 2.7), ("batch", True), ("batch", "many"),
                                            ("min_backoff_s", float("nan")), ("min_backoff_s", "inf")])
def test_numbers_of_the_wrong_kind_are_refused_with_their_path(key, value):
    with pytest.raises(ConfigError, match=rf"forwarding\.{key}"):
        parse_config({**BASE, "forwarding": {key: value}})


@pytest.mark.parametrize(("section", "key", "value"), [("server", "grace_s", 1e300), ("server", "grace_s", "1e10"),
                                                       ("server", "max_workers", 10**30),
                                                       ("forwarding", "batch", "99999999999999999999")])
def test_a_number_larger_than_any_setting_takes_is_refused_with_its_path(section, key, value):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: .* is larger than any setting takes"):
        parse_config({**BASE, section: {key: value}})


def test_numbers_from_the_environment_are_read_as_numbers():
    cfg = parse_config({**BASE, "forwarding": {"batch": "${BATCH:250}", "min_backoff_s": "${B:0.5}"}})
    assert cfg.forwarding.batch == 250 and cfg.forwarding.min_backoff_s == 0.5


def test_a_config_file_that_is_not_text_is_a_config_error(tmp_path: pathlib.Path):
    p = tmp_path / "node.yaml"
    p.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(p)


def test_a_unit_that_is_no_valid_uscc_is_refused_unless_allow_listed():
    with pytest.raises(ConfigError, match="check character"):
        parse_config({**BASE, "unit": "11330102MB0000019X"})
    cfg = parse_config({**BASE, "unit": "11330102MB0000019X",
                        "validation": {"uscc_allowlist": ["11330102MB0000019X"]}})
    assert cfg.unit == "11330102MB0000019X"


@pytest.mark.parametrize("entry", ["91350100M000100Y4Z", "9135010", "91350100M000100Y43-"])
def test_an_allow_list_entry_no_uscc_could_be_is_refused_naming_its_place(entry: str):
    # The list excuses a failed check character; an entry with a Z or of the wrong length would
    # never match a row, and the rows it was meant for would still be refused.
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "validation": {"uscc_allowlist": ["11330102MB0000019X", entry]}})
    assert err.value.field == "validation.uscc_allowlist[1]"
    assert parse_config({**BASE, "validation": {"uscc_allowlist": [" 11330102mb0000019x "]}})


def test_an_allow_list_entry_may_be_of_a_category_gb32100s_table_lacks_but_not_of_a_lettered_division():
    from node.identifiers import make_uscc

    newer = make_uscc("9", "4", "330102", "MA2K3L4P")  # an authority/category a later amendment might add
    assert parse_config({**BASE, "validation": {"uscc_allowlist": [newer]}})
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "validation": {"uscc_allowlist": [make_uscc("9", "1", "33AB02", "MA2K3L4P")]}})
    assert err.value.field == "validation.uscc_allowlist[0]" and "positions 3-8" in err.value.message


def test_a_node_id_that_is_not_one_is_refused():
    with pytest.raises(ConfigError, match=r"id: node id 'garbage'"):
        parse_config({**BASE, "id": "garbage"})


def test_an_unset_environment_variable_is_named_with_the_key_that_uses_it():
    with pytest.raises(ConfigError, match=r"store\.url: environment variable STORE_URL is not set"):
        parse_config({**BASE, "store": {"url": "${STORE_URL}"}}, environ={})


def test_a_file_that_is_no_node_config_is_not_echoed_back(tmp_path: pathlib.Path):
    p = tmp_path / "node.yaml"
    p.write_text("root:$6$secretsecretsecretsecretsecretsecretsecret:19000:0:99999:7:::\n: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "secretsecretsecretsecret" not in str(err.value)


def test_a_level_that_is_not_the_one_the_node_id_names_is_refused():
    with pytest.raises(ConfigError, match=r"level: 'district', but the node id 'dept:330102:scjgj' names level"):
        parse_config({**BASE, "level": "district"})


@pytest.mark.parametrize(("extra", "field"), [
    ({"server": {"max_workers": 0}}, "server.max_workers"),
    ({"lifecycle": {"check_days": -5}}, "lifecycle.check_days"),
    ({"abuse": {"burst": -1}}, "abuse.burst"),
    ({"forwarding": {"batch": 0}}, "forwarding.batch"),
    ({"adapters": [{"kind": "database", "item": "admin_penalty", "table": "t", "watermark": "w",
                    "url": "sqlite:///x.db", "page_rows": -1}]}, "adapters[0].page_rows"),
])
def test_a_number_the_node_cannot_run_with_is_refused_at_start_naming_its_key(extra, field):
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **extra})
    assert caught.value.field == field and field in caught.value.message


def test_config_errors_name_their_key_as_the_field():
    with pytest.raises(ConfigError) as unknown:
        parse_config({**BASE, "server": {"listn": "x"}})
    assert unknown.value.field == "server.listn"
    with pytest.raises(ConfigError) as wrong:
        parse_config({**BASE, "lifecycle": {"check_days": "soon"}})
    assert wrong.value.field == "lifecycle.check_days"
    assert parse_config({**BASE, "forwarding": {"reconcile_every_s": 0}}).forwarding.reconcile_every_s == 0
    assert parse_config({**BASE, "lifecycle": {"schedule_every_s": 0}}).lifecycle.schedule_every_s == 0  # never


def test_duplicate_yaml_key_is_refused_with_its_path(tmp_path: pathlib.Path):
    (tmp_path / "node.yaml").write_text("id: city:330100\nlevel: city\nidentity: {dir: id}\n"
                                        "store:\n  url: 'sqlite:///a.db'\n  url: 'sqlite:///b.db'\n")
    with pytest.raises(ConfigError, match=r"store\.url: key given twice \(lines 5 and 6\)") as exc:
        load_config(tmp_path / "node.yaml")
    assert exc.value.field == "store.url"


def test_duplicate_yaml_key_check_keeps_env_substitution(tmp_path: pathlib.Path):
    (tmp_path / "node.yaml").write_text("id: city:330100\nlevel: city\nidentity: {dir: id}\n"
                                        "store: {url: '${DB_URL:sqlite:///d.db}'}\n")
    cfg = load_config(tmp_path / "node.yaml", environ={"DB_URL": "postgresql://h/db"})
    assert cfg.store.url == "postgresql://h/db"


def test_a_child_unit_written_as_a_star_is_refused_with_the_empty_list_as_the_way_to_say_any():
    with pytest.raises(ConfigError) as err:
        parse_config({**DISTRICT, "children": [{"id": "dept:330102:a", "units": ["*"]}]})
    assert err.value.field == "children[0].units[0]" and "units: []" in err.value.message
    assert parse_config({**DISTRICT, "children": [{"id": "dept:330102:a", "units": []}]}).children[0].units == ()


@pytest.mark.parametrize("section", ["children", "sources"])
def test_a_unit_that_is_no_valid_uscc_is_refused_naming_its_place(section: str):
    first = {"id": "dept:330102:a" if section == "children" else "source:330102:a", "units": ["11330102MB0000019G"]}
    second = {**first, "units": ["11330102MB0000019G", "11330102MB0000019X"]}  # check character wrong
    with pytest.raises(ConfigError, match="check character") as err:
        parse_config({**DISTRICT, section: [first, second]})
    assert err.value.field == f"{section}[1].units[1]"
    allowed = parse_config({**DISTRICT, section: [first, second],
                            "validation": {"uscc_allowlist": ["11330102MB0000019X"]}})
    assert getattr(allowed, section)[1].units == ("11330102MB0000019G", "11330102MB0000019X")


def _config_file(tmp_path: pathlib.Path, extra: str) -> pathlib.Path:
    p = tmp_path / "node.yaml"
    p.write_text("id: dept:330102:scjgj\nlevel: department\nunit: 11330102MB0000019G\nidentity: {dir: id}\n"
                 + extra, encoding="utf-8")
    return p


@pytest.mark.parametrize("written", ["no", "yes", "on", "off", "true", "0755", "12:30", "1.10", "2026-01-01"])
def test_a_text_setting_is_read_as_written_not_as_a_yaml_1_1_boolean_or_number(tmp_path: pathlib.Path,
                                                                              written: str):
    # server_name: no was the text 'False', 0755 was '493', 12:30 was '750' (base 60).
    cfg = load_config(_config_file(tmp_path, f"parent:\n  id: district:330102\n  target: h:1\n"
                                             f"  server_name: {written}\n"))
    assert cfg.parent is not None and cfg.parent.server_name == written


@pytest.mark.parametrize(("written", "value"), [("yes", True), ("on", True), ("true", True), ("True", True),
                                                ("no", False), ("off", False), ("false", False)])
def test_a_boolean_setting_takes_the_words_yaml_1_1_took(tmp_path: pathlib.Path, written: str, value: bool):
    cfg = load_config(_config_file(tmp_path, f"validation: {{allow_other_units: {written}}}\n"))
    assert cfg.validation.allow_other_units is value


def test_numbers_in_a_config_file_are_still_numbers(tmp_path: pathlib.Path):
    cfg = load_config(_config_file(tmp_path, "server: {max_workers: 8, grace_s: 2.5}\n"))
    assert cfg.server.max_workers == 8 and cfg.server.grace_s == 2.5


@pytest.mark.parametrize(("environ", "expanded"), [({}, "sqlite:///x.db"), ({"B": "pg://b"}, "pg://b"),
                                                   ({"A": "pg://a"}, "pg://a")])
def test_a_default_may_itself_name_a_variable(environ: dict[str, str], expanded: str):
    # ${A:${B:x}} was cut at the first }: A unset gave the text '${B:sqlite:///x.db}' as the value.
    assert expand_env("${A:${B:sqlite:///x.db}}", environ) == expanded


def test_an_inner_variable_is_needed_only_when_its_default_is_used():
    assert expand_env("${A:${B}}", {"A": "a"}) == "a"
    with pytest.raises(ConfigError, match="B is not set"):
        expand_env("${A:${B}}", {})


def test_text_around_and_between_references_is_kept():
    assert expand_env("u:${P:pw}@h/${D:db}}x ${ and $", {}) == "u:pw@h/db}x ${ and $"


@pytest.mark.parametrize(("value", "expanded"), [
    ("pa$${word}", "pa${word}"),  # what would be a reference (and refused: word is not set)
    ("$${A}-${A}", "${A}-a"),
    ("${NOPE:x$${y}z}", "x${y}z"),  # in a default, as it is used
    ("$${A:b}", "${A:b}"),
    ("cost $5, $$ and $${", "cost $5, $$ and ${"),
])
def test_a_doubled_dollar_is_a_literal_reference_start(value: str, expanded: str) -> None:
    assert expand_env(value, {"A": "a"}) == expanded


def test_a_password_holding_a_literal_reference_start_reaches_the_setting(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "node.yaml"
    p.write_text("id: city:330100\nlevel: city\nidentity: {dir: id}\n"
                 "store: {url: 'postgresql://node:pa$${w}@db/credit'}\n", encoding="utf-8")
    assert load_config(p, environ={}).store.url == "postgresql://node:pa${w}@db/credit"


@pytest.mark.parametrize("content", ["", "# the city's node\n\n   \n", "---\n", "{}\n"])
def test_an_empty_config_file_is_said_to_be_empty_naming_the_keys_it_needs(tmp_path: pathlib.Path,
                                                                            content: str) -> None:
    p = tmp_path / "node.yaml"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"node\.yaml: the file is empty \(no settings\); a node's configuration "
                                          r"gives at least id, level, identity\.dir \(and unit, for a department\)"):
        load_config(p)


def test_an_empty_config_file_is_refused_in_one_line_by_a_command(tmp_path: pathlib.Path) -> None:
    from click.testing import CliRunner

    from node.cli import cli

    (tmp_path / "node.yaml").write_bytes(b"")
    r = CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), "blocks", "list"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith("error: E_CONFIG: ") and "the file is empty" in r.stderr and "id, level" in r.stderr


@pytest.mark.parametrize(("section", "field"), [
    ({"parent": {"id": "province", "target": "h:1"}}, "parent.id"),
    ({"children": [{"id": "dept:330102:a"}, {"id": "dept-330102-b"}]}, "children[1].id"),
    ({"peers": [{"id": "gov:330100:fgw", "target": "h:1"}]}, "peers[0].id"),
    ({"catalog": {"authority": "city 330100"}}, "catalog.authority"),
])
def test_a_node_id_in_the_tree_that_no_node_can_have_is_refused_at_start(section, field):
    # Taken, it matched no certificate: the child's batches, the parent's acks or the authority's
    # releases were refused one by one while the node ran as if configured.
    city = {**BASE, "id": "city:330100", "level": "city", "unit": ""}
    with pytest.raises(ConfigError) as refused:
        parse_config({**city, **section})
    assert refused.value.field == field


@pytest.mark.parametrize(("data", "field"), [
    ({**BASE, "parent": {"id": "dept:330102:hbj", "target": "127.0.0.1:7443"}}, "parent.id"),
    ({"id": "city:330100", "level": "city", "identity": {"dir": "identity"},
      "parent": {"id": "district:330102", "target": "127.0.0.1:7443"}}, "parent.id"),
    ({"id": "district:330102", "level": "district", "identity": {"dir": "identity"},
      "children": [{"id": "dept:330102:scjgj"}, {"id": "city:330100"}]}, "children[1].id"),
])
def test_a_parent_not_above_or_a_child_not_below_this_level_is_refused(data, field):
    # Routing compares the parent's level with each item's up_to: a parent at the same level or
    # below would be sent records the catalogue keeps at this level (class C at a city).
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.field == field


def test_a_parent_may_be_more_than_one_level_above():
    cfg = parse_config({**BASE, "parent": {"id": "city:330100", "target": "127.0.0.1:7443"}})
    assert cfg.parent is not None and cfg.parent.id == "city:330100"
