import pytest

from node.errors import ConfigError
from node.routing import Destination, Router, level_of


def test_level_of_node_ids():
    assert level_of("dept:330106:scjgj") == "department"
    assert level_of("district:330106") == "district"
    with pytest.raises(ConfigError):
        level_of("village:1")


def test_record_travels_while_parent_is_within_reach():
    r = Router("district:330106", "city:330100")
    assert r.upward("province", "up-province") == [Destination("city:330100", "up-province")]
    assert r.upward("city", "up-city") == [Destination("city:330100", "up-city")]


def test_record_stops_below_parent_level():
    assert Router("city:330100", "province:330000").upward("city", "stop-city") == []
    assert Router("dept:330106:x", "district:330106").upward("department", "local") == []


def test_node_without_parent_keeps_everything():
    assert Router("province:330000", None).upward("national", "r") == []


def test_unknown_reach_is_a_config_error():
    with pytest.raises(ConfigError, match="r9"):
        Router("district:1", "city:1").upward("galaxy", "r9")


def test_a_record_reaches_only_the_levels_its_rule_names():
    assert Router("city:330100", "province:330000").reaches_here("city", "stop-city")
    assert not Router("province:330000", None).reaches_here("city", "stop-city")
    assert Router("province:330000", None).reaches_here("national", "r")
