"""A refused setting is named, and what the refusal quotes of it never holds a URL's password."""

import pytest

from node.config import parse_config
from node.errors import ConfigError

BASE = {"id": "city:330100", "level": "city", "identity": {"dir": "identity"}}
SECRET = "S3cretPW"


@pytest.mark.parametrize(("section", "value"), [
    ({"store": {"url": [f"postgresql://credit:{SECRET}@db.example/credit"]}}, "store.url"),
    ({"store": {"url": {f"postgresql://credit:{SECRET}@db.example/credit": "1"}}}, "store.url"),
    ({"broker": {"url": [f"amqps://node:{SECRET}@mq.example:5671"]}}, "broker.url"),
    ({"broker": {"prefetch": f"amqps://node:{SECRET}@mq.example:5671"}}, "broker.prefetch"),
    ({"store": {"url": [f"postgresql:///credit?host=db.example&password={SECRET}"]}}, "store.url"),
])
def test_a_wrongly_typed_setting_is_refused_without_quoting_a_password(section, value):
    with pytest.raises(ConfigError) as refused:
        parse_config({**BASE, **section})
    assert refused.value.field == value
    assert SECRET not in refused.value.message and SECRET not in str(refused.value)
    assert "***" in refused.value.message


def test_an_unknown_key_holding_a_url_is_named_without_its_password():
    with pytest.raises(ConfigError) as refused:
        parse_config({**BASE, "store": {f"postgresql://credit:{SECRET}@db.example/credit": "x"}})
    assert SECRET not in str(refused.value) and SECRET not in refused.value.field
    assert refused.value.field.startswith("store.postgresql://credit:***@db.example")
