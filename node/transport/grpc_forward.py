"""The ``grpc`` :class:`~node.transport.base.Transport`: a client stream to the parent's ``Exchange.Submit``.

Each batch goes as one ``SubmitRequest`` on a stream and comes back as one ``SubmitResponse`` with
an ack per record, sent by the parent after its commit: ``ACCEPTED``/``DUPLICATE`` (done) or
``REJECTED`` with the parent's stable code. The request is sent as the bytes ``wire`` built (the
stored records plus the hop, concatenated), so a forwarder never parses and re-serialises the
records it relays; the method is the same ``/credit.v1.Exchange/Submit`` the generated stub calls.

Channels come from ``grpc_client.open_channel`` (mutual TLS); grpc errors are translated by
``grpc_client.error_from_rpc`` (UNAVAILABLE → PeerUnavailableError, retryable); any other failure
of the whole call is a retryable ``TransportError`` too (bounded by the forwarder's attempts).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from node.errors import PeerUnavailableError, TransportError
from node.identity import LoadedIdentity
from node.records import pb
from node.transport.base import ACCEPTED, DUPLICATE, REJECTED, Delivery, DeliveryState
from node.transport.grpc_client import error_from_rpc, open_channel
from node.transport.wire import MAX_SUBMIT_RECORDS, submit_request

__all__ = ["SUBMIT_METHOD", "GrpcForward"]

SUBMIT_METHOD = "/credit.v1.Exchange/Submit"
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"  # an empty request: the server as a whole
CONNECT_TIMEOUT_S = 10.0
_STATES: dict[int, DeliveryState] = {pb.Ack.ACCEPTED: ACCEPTED, pb.Ack.DUPLICATE: DUPLICATE}


def _raw(data: bytes) -> bytes:
    return data


class GrpcForward:
    def __init__(self, *, peer: str, target: str, identity: LoadedIdentity, server_name: str = "",
                 timeout_s: float = 120.0) -> None:
        self._peer = peer
        self._target = target
        self._identity = identity
        self._server_name = server_name or None
        self._timeout_s = timeout_s
        self._channel: grpc.Channel | None = None
        self._ready: grpc.Future | None = None
        self._interrupted = False

    @property
    def peer(self) -> str:
        return self._peer

    def _open(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = open_channel(self._target, self._identity, server_name=self._server_name,
                                         node_id=self._peer)
        return self._channel

    def connect(self) -> None:
        # Readiness is a health check that waits for the connection (wait_for_ready), not
        # grpc.channel_ready_future: that one's polling thread raised 'Channel closed!' when a
        # stopping node closed the channel under it, a traceback in a thread nobody owns.
        check = self._open().unary_unary(HEALTH_CHECK_METHOD, request_serializer=_raw, response_deserializer=_raw)
        ready = check.future(b"", timeout=CONNECT_TIMEOUT_S, wait_for_ready=True)
        self._ready = ready
        try:
            if self._interrupted:
                ready.cancel()
            ready.result()
        except grpc.FutureCancelledError:
            self.close()
            raise PeerUnavailableError(f"{self._peer}: connecting was interrupted (the node is stopping)") from None
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND,
                        grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                return  # an answer, if not a health one: the connection (and its handshake) is up
            self.close()
            if code == grpc.StatusCode.CANCELLED or self._interrupted:
                raise PeerUnavailableError(f"{self._peer}: connecting was interrupted (the node is stopping)") from None
            whose = f"the name {self._server_name}" if self._server_name else f"node {self._peer}'s"
            raise PeerUnavailableError(f"{self._peer} at {self._target}: no connection within "
                                       f"{CONNECT_TIMEOUT_S:g}s (peer down, or TLS handshake refused: its "
                                       f"certificate must be {whose}, from the federation CA)") from None
        finally:
            self._ready = None

    def send(self, records: Sequence[bytes], certificates: Sequence[bytes]) -> list[Delivery]:
        if not records:
            return []
        call = self._open().stream_stream(SUBMIT_METHOD, request_serializer=_raw,
                                          response_deserializer=pb.SubmitResponse.FromString)
        try:
            # A batch over what a parent takes in one request goes as several on the one stream.
            requests = [submit_request(records[i:i + MAX_SUBMIT_RECORDS], certificates)
                        for i in range(0, len(records), MAX_SUBMIT_RECORDS)]
            responses = list(call(iter(requests), timeout=self._timeout_s))
        except grpc.RpcError as exc:
            error = error_from_rpc(exc)
            if error.retryable:
                raise error from None
            # The whole call failed, not one record: our certificate not (yet) accepted, a bug at the
            # parent (INTERNAL). A delivery failure, retried with backoff up to max_attempts — never
            # every record of the batch dead-lettered at the first try. Records the parent refuses
            # come back as REJECTED acks, one by one.
            raise TransportError(f"{self._peer} refused the call: {error.message}", field=error.field,
                                 code=error.code) from None
        acks = {ack.seq: ack for response in responses for ack in response.acks}
        missing = [i for i in range(len(records)) if i not in acks]
        if missing:
            raise TransportError(f"{self._peer} acknowledged {len(records) - len(missing)} of {len(records)} "
                                 "records", code="E_ACKS_MISSING")
        out = []
        for i in range(len(records)):
            ack = acks[i]
            state = _STATES.get(ack.outcome)
            if state is not None:
                out.append(Delivery(state))
            else:
                first = ack.rejections[0] if ack.rejections else pb.Rejection(code="E_REJECTED")
                out.append(Delivery(REJECTED, first.code or "E_REJECTED", first.message))
        return out

    def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def interrupt(self) -> None:
        """From another thread, when the node stops: end a wait for the peer or an in-flight call
        now (a call cut short is sent again after the restart: the parent acknowledges it as a
        duplicate), instead of after CONNECT_TIMEOUT_S or the call's timeout."""
        self._interrupted = True
        ready, channel = self._ready, self._channel
        if ready is not None:
            ready.cancel()
        if channel is not None:
            channel.close()
