"""``node/yamlfile.py``: YAML that refuses a key given twice, naming where."""

from __future__ import annotations

import pytest
import yaml

from node.yamlfile import DuplicateKeyError, load_strict, yaml_problem


@pytest.mark.parametrize(("text", "path"), [
    ("a: 1\na: 2\n", "a"),
    ("a:\n  b: 1\n  c: 2\n  b: 3\n", "a.b"),
    ("l:\n  - {x: 1}\n  - {x: 1, x: 2}\n", "l[1].x"),
])
def test_a_key_given_twice_is_refused_with_its_dotted_path(text: str, path: str) -> None:
    with pytest.raises(DuplicateKeyError) as exc:
        load_strict(text)
    assert exc.value.path == path


def test_a_merge_key_may_still_be_overridden() -> None:
    assert load_strict("base: &b {x: 1, y: 1}\nd:\n  <<: *b\n  x: 2\n")["d"] == {"x": 2, "y": 1}


def test_distinct_keys_load_as_before() -> None:
    assert load_strict("a: 1\nb: {c: [1, 2]}\n") == {"a": 1, "b": {"c": [1, 2]}}


@pytest.mark.parametrize("written", ["010", "01", "0x1F", "0b101", "1_000", "1:30", "+010"])
def test_a_number_yaml_1_1_would_read_in_another_base_stays_as_written(written: str) -> None:
    # An enum code 010 must not become "8", nor 1:30 the number 90 (YAML 1.1 octal, sexagesimal).
    assert load_strict(f"v: {written}\n") == {"v": written}


@pytest.mark.parametrize(("written", "value"), [("42", 42), ("-7", -7), ("0", 0), ("+3", 3)])
def test_a_plain_decimal_integer_is_still_an_integer(written: str, value: int) -> None:
    assert load_strict(f"v: {written}\n") == {"v": value}


@pytest.mark.parametrize("text", ["id: x\nidentity:\n\tdir: a\n", "id: x\nidentity:\n  dir:\ta\n  \tother: b\n"])
def test_a_tab_where_yaml_fails_is_named_with_the_remedy(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as failed:
        load_strict(text)
    message = yaml_problem(failed.value, text)
    assert message.startswith("not valid YAML: ") and "(line " in message
    assert message.endswith("a tab, which YAML does not take for indentation; indent with spaces")


def test_a_yaml_error_without_a_tab_gets_no_tab_hint() -> None:
    with pytest.raises(yaml.YAMLError) as failed:
        load_strict("id: [unclosed\n")
    assert "tab" not in yaml_problem(failed.value, "id: [unclosed\n")
