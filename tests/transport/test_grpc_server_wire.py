"""The server as clients of other gRPC stacks meet it (grpc-js, grpc-java): frequent keepalive pings,
compressed messages. The options are those such clients set; docs/protocol.md tells their authors."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import grpc

from node.records import pb, rpc
from node.tls import grpc_channel_credentials

from .conftest import DEADLINE_S, Running
from .nodes import unsigned_records

# Pings every 100 ms, on idle connections and between a stream's messages, as grpc-js sends them
# when told (min_time_between_pings_ms lets grpcio's client send them too): a default grpc server
# (2 strikes, one ping per 5 min without data) sends GOAWAY "too_many_pings" after the third, and
# the stream ends UNAVAILABLE (RESOURCE_EXHAUSTED in grpc-js).
EAGER_PINGS = [("grpc.keepalive_time_ms", 100), ("grpc.keepalive_timeout_ms", 10_000),
               ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
               ("grpc.http2.min_time_between_pings_ms", 10)]
# grpcio's client sends them at most once a second however it is told: on a default server the
# third strike comes after about 3 s of a silent stream.
IDLE_S = 5.0


def _channel(running: Running, who: str, options: list[tuple[str, int]]) -> grpc.Channel:
    return grpc.secure_channel(running.address, grpc_channel_credentials(running.pki.identity(who)),
                               options=options)


def _requests(outbox: queue.Queue[pb.SubmitRequest | None]) -> Iterator[pb.SubmitRequest]:
    while (request := outbox.get()) is not None:
        yield request


def test_a_submit_stream_left_idle_under_frequent_pings_is_not_sent_away(running: Running) -> None:
    outbox: queue.Queue[pb.SubmitRequest | None] = queue.Queue()
    with _channel(running, "source", EAGER_PINGS) as channel:
        responses = rpc.ExchangeStub(channel).Submit(_requests(outbox), timeout=DEADLINE_S + IDLE_S)
        outbox.put(pb.SubmitRequest(unsigned=unsigned_records(1)))
        first = next(responses)
        # Idle on purpose: what is tested is the server's tolerance of pings over this time.
        time.sleep(IDLE_S)
        outbox.put(pb.SubmitRequest(unsigned=unsigned_records(1, start_no=2)))
        second = next(responses)
        outbox.put(None)
        assert list(responses) == []
    assert [a.outcome for a in (*first.acks, *second.acks)] == [pb.Ack.ACCEPTED, pb.Ack.ACCEPTED]
    assert [a.seq for a in (*first.acks, *second.acks)] == [0, 1]


def test_gzip_compressed_requests_are_read_and_answered(running: Running) -> None:
    with _channel(running, "source", []) as channel:
        responses = list(rpc.ExchangeStub(channel).Submit(
            iter([pb.SubmitRequest(unsigned=unsigned_records(3))]), timeout=DEADLINE_S,
            compression=grpc.Compression.Gzip))
    assert [a.outcome for r in responses for a in r.acks] == [pb.Ack.ACCEPTED] * 3
    with _channel(running, "gov", [("grpc.default_compression_algorithm", grpc.Compression.Gzip.value)]) as channel:
        payload = b"credit " * 100_000
        assert rpc.AdminStub(channel).Echo(pb.EchoRequest(payload=payload), timeout=DEADLINE_S).payload == payload
