"""Abuse protection on a real store: token buckets, automatic blocks, lifting, the sharing switch."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from node.abuse import (
    Guard,
    RateLimitedError,
    SharingSuspendedError,
    SharingSwitch,
    address_of,
    blocked_address,
)
from node.config import AbuseConfig
from node.errors import BlockedError, NotFoundError, UsageError
from node.store import Store


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@pytest.mark.parametrize(("peer", "address"), [
    ("ipv4:127.0.0.1:51234", "ipv4:127.0.0.1"),
    ("ipv6:[::1]:51234", "ipv6:[::1]"),
    ("ipv6:[2001:db8::7]:443", "ipv6:[2001:db8::7]"),
    ("unix:/tmp/sock", "unix:/tmp/sock"),
])
def test_address_of_drops_the_port(peer: str, address: str) -> None:
    assert address_of(peer) == address


@pytest.mark.parametrize(("given", "address"), [
    ("ipv4:10.0.0.7", "ipv4:10.0.0.7"), ("10.0.0.7", "ipv4:10.0.0.7"), ("ipv6:[::1]", "ipv6:[::1]"),
    ("::1", "ipv6:[::1]"), ("[2001:db8::7]", "ipv6:[2001:db8::7]"), ("unix:/run/node.sock", "unix:/run/node.sock"),
])
def test_an_address_to_lift_is_taken_as_blocks_list_shows_it_or_bare(given: str, address: str) -> None:
    assert blocked_address(given) == address


@pytest.mark.parametrize("given", ["notanip", "ipv4:10.0.0.300", "ipv4:::1", "ipv6:::1", "ipv6:[10.0.0.7]",
                                   "10.0.0.0/24", "unix:", ""])
def test_an_address_to_lift_that_is_no_ip_address_is_a_usage_error(given: str) -> None:
    with pytest.raises(UsageError, match="is not an IP address") as caught:
        blocked_address(given)
    assert caught.value.field == "ADDRESS" and caught.value.exit_code == 2


def test_token_bucket_allows_burst_then_rate(store: Store) -> None:
    clock = Clock()
    guard = Guard(store, AbuseConfig(rate_per_s=10, burst=5, block_after=100), clock=clock)
    for _ in range(5):
        guard.admit("ipv4:10.0.0.1", "gov:a")
    with pytest.raises(RateLimitedError) as info:
        guard.admit("ipv4:10.0.0.1", "gov:a")
    assert info.value.code == "E_RATE_LIMITED" and info.value.exit_code == 3
    guard.admit("ipv4:10.0.0.1", "gov:b")  # buckets are per caller
    clock.t += 0.1  # one token back at 10/s
    guard.admit("ipv4:10.0.0.1", "gov:a")
    with pytest.raises(RateLimitedError):
        guard.admit("ipv4:10.0.0.1", "gov:a")
    clock.t += 10  # refills up to the burst, not beyond
    for _ in range(5):
        guard.admit("ipv4:10.0.0.1", "gov:a")
    with pytest.raises(RateLimitedError):
        guard.admit("ipv4:10.0.0.1", "gov:a")


def test_abnormal_burst_blocks_the_address_until_lifted(store: Store) -> None:
    clock = Clock()
    cfg = AbuseConfig(rate_per_s=1, burst=2, block_after=3, block_window_s=60, cache_s=1)
    guard = Guard(store, cfg, clock=clock)
    guard.admit("ipv4:10.0.0.9", "agency:x")
    guard.admit("ipv4:10.0.0.9", "agency:x")
    for _ in range(2):
        with pytest.raises(RateLimitedError):
            guard.admit("ipv4:10.0.0.9", "agency:x")
    with pytest.raises(BlockedError) as info:
        guard.admit("ipv4:10.0.0.9", "agency:x")
    assert info.value.code == "E_BLOCKED"
    clock.t += 100  # tokens are back, the block stays
    with pytest.raises(BlockedError):
        guard.admit("ipv4:10.0.0.9", "gov:someone-else")
    guard.admit("ipv4:10.0.0.10", "gov:someone-else")  # other addresses are not affected
    [block] = guard.list()
    assert (block.address, block.caller, block.lifted_at_ms) == ("ipv4:10.0.0.9", "agency:x", None)

    # Another process (the CLI) lifts it; this guard sees it after its cache period.
    other = Guard(store, cfg)
    assert other.lift("ipv4:10.0.0.9") == 1
    with pytest.raises(BlockedError):
        guard.admit("ipv4:10.0.0.9", "agency:x")  # still cached
    clock.t += 1.0
    guard.admit("ipv4:10.0.0.9", "agency:x")
    assert guard.list() == [] and len(guard.list(include_lifted=True)) == 1
    with pytest.raises(NotFoundError):
        other.lift("ipv4:10.0.0.9")
    assert [e.action for e in store.audit.iter()] == ["block", "unblock"]


def test_refusals_outside_the_window_do_not_block(store: Store) -> None:
    clock = Clock()
    guard = Guard(store, AbuseConfig(rate_per_s=0.001, burst=1, block_after=3, block_window_s=10), clock=clock)
    guard.admit("ipv4:10.0.0.2", "public:p")
    for _ in range(10):
        with pytest.raises(RateLimitedError):
            guard.admit("ipv4:10.0.0.2", "public:p")
        clock.t += 6  # never 3 refusals within 10 s
    assert guard.list() == []


def test_a_block_made_elsewhere_is_seen_within_the_cache_period(store: Store) -> None:
    clock = Clock()
    guard = Guard(store, AbuseConfig(cache_s=1), clock=clock)
    guard.admit("ipv4:10.0.0.3", "gov:a")
    Guard(store, AbuseConfig()).block("ipv4:10.0.0.3", "gov:a", "manual", actor="cli:ops")
    guard.admit("ipv4:10.0.0.3", "gov:a")  # cached
    clock.t += 1.0
    with pytest.raises(BlockedError):
        guard.admit("ipv4:10.0.0.3", "gov:a")


def test_sharing_switch_is_seen_by_a_running_reader_within_a_second(store: Store) -> None:
    clock = Clock()
    reader = SharingSwitch(store, cache_s=1.0, clock=clock)
    reader.check()
    SharingSwitch(store).set(True, actor="cli:ops", reason="attack")
    reader.check()  # cached
    clock.t += 1.0
    with pytest.raises(SharingSuspendedError) as info:
        reader.check()
    assert info.value.code == "E_SHARING_SUSPENDED" and info.value.exit_code == 3
    SharingSwitch(store).set(False)
    clock.t += 1.0
    reader.check()
    assert [(e.action, e.detail) for e in store.audit.iter()] == [
        ("sharing.suspend", {"reason": "attack"}), ("sharing.resume", {"reason": ""})]


def test_a_call_may_cost_several_tokens_but_never_more_than_the_bucket(store: Store) -> None:
    now = [0.0]
    guard = Guard(store, AbuseConfig(rate_per_s=1, burst=10, block_after=100), clock=lambda: now[0])
    guard.admit("ipv4:10.0.0.1", "gov:x", cost=6)
    with pytest.raises(RateLimitedError):
        guard.admit("ipv4:10.0.0.1", "gov:x", cost=6)  # 4 left
    now[0] += 10.0
    guard.admit("ipv4:10.0.0.1", "gov:x", cost=1_000)  # capped at the bucket: a full bucket pays it
