"""node/demo/layout.py: the federation the demo and the process tests provision."""

from __future__ import annotations

import pathlib
import socket

from node.demo.layout import free_port


def test_a_port_chosen_up_front_lies_below_the_ephemeral_range_and_is_free() -> None:
    # Chosen now and bound later by a node: an outgoing connection anywhere on the machine takes
    # its local port from the ephemeral range, and once took a district's between the two.
    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    first = free_port()
    ports = [first, *(free_port(taken={first}) for _ in range(20))]
    assert all(1024 <= p < low for p in ports)
    assert first not in ports[1:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # free indeed
