"""``Exchange.Submit``: records come in on a bidirectional stream and leave as per-record acks.

For each ``SubmitRequest`` on the stream, in order:

1. ``certificates``: signer certificates the sender ships with its chains, learned by the inbox
   (only from callers with role ``node``; anyone else has no business adding signers);
2. ``records`` (signed): only from a caller with role ``node``; the inbox verifies the chains,
   checks that the caller is a registered child allowed to report them, re-validates and stores
   them idempotently (``node.inbox``);
3. ``unsigned``: only from a caller with role ``source`` registered under ``sources:``; the node
   validates and signs them as their origin (``node.transport.sources``).

Each request is answered with one ``SubmitResponse`` holding an ``Ack`` per record, signed records
first, then unsigned ones, ``seq`` counting records over the whole stream (0-based); an unsigned
record's ack also carries the validator's warnings (``W_…``), as a file import lists them. Acks
leave only after the batch is committed (DESIGN §2.5).

The handler is a coroutine on the server's event loop: it reads the stream there and hands each
batch to a thread (the loop's default executor), so no thread ever touches the call. With a plain
handler, grpc.aio read the stream from a pool thread through the loop, and a client that
cancelled streams still waiting for a thread crashed the process in grpc's C core
(docs/decisions/grpc-asyncio-server.md). A batch whose call is cancelled while it commits still
commits; its acks go nowhere and the sender's retry is a duplicate. A refusal of a batch (a ``NodeError``) becomes
``REJECTED`` acks carrying its code and the stream goes on; an infrastructure failure
(``StoreError``) ends the call with ``UNAVAILABLE`` so the sender retries the batch later; a bug
ends it with ``INTERNAL`` rather than making the sender dead-letter good records.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TypeAlias

import grpc

from node.errors import NodeError, StoreError, UsageError
from node.inbox import Inbox
from node.nodeid import Identity
from node.records import pb, rpc
from node.transport.contacts import PeerContacts
from node.transport.grpc_server import MAX_MESSAGE_BYTES
from node.transport.peers import CallerCache, abort_with_async, check_role, vetted_caller
from node.transport.registration import register
from node.transport.sources import SourceIntake, rejected_ack
from node.transport.wire import MAX_SUBMIT_RECORDS
from node.truststore import TrustStore

__all__ = ["SERVICE_NAME", "ExchangeService"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Exchange"].full_name
NODE, SOURCE = "node", "source"
_SUBMITTERS = frozenset({NODE, SOURCE})
# Requests already read and waiting, and records committed in one transaction: a sender that
# streams small batches without waiting for their acks has them stored together, and each commit
# (a sync to disk, and index pages rewritten all over) costs the same whatever it holds.
READ_AHEAD = 8
# ... and the bytes they may hold before the stream is read further: a request may be as large as
# a message may be (64 MB), and eight such waiting would hold half a gigabyte for one sender
# (one stream of 60 MB requests took the node from 85 MB to 1 GB). Not reading on lets grpc's flow
# control hold the sender back.
READ_AHEAD_BYTES = 32 * 1024 * 1024
GROUP_RECORDS = 8_192
_LOGGED_REJECTIONS = 20  # per batch: enough to diagnose, never a flood from a misbehaving sender
_SHORT_MESSAGE = 200  # characters of a rejection's message kept when a response would not fit
_SHORT_REJECTIONS = 5  # rejections per ack kept then
_Context: TypeAlias = grpc.aio.ServicerContext[pb.SubmitRequest, pb.SubmitResponse]


class ExchangeService(rpc.ExchangeServicer):  # type: ignore[misc]
    def __init__(self, *, trust: TrustStore, inbox: Inbox, intake: SourceIntake, contacts: PeerContacts,
                 callers: CallerCache | None = None) -> None:
        self._trust = trust
        self._inbox = inbox
        self._intake = intake
        self._contacts = contacts
        self._callers = callers or CallerCache()

    def register(self, server: grpc.aio.Server) -> None:
        register(rpc.add_ExchangeServicer_to_server, self, SERVICE_NAME, server)

    async def Submit(self, request_iterator: AsyncIterable[pb.SubmitRequest],
                     context: _Context) -> AsyncIterator[pb.SubmitResponse]:
        try:
            who = vetted_caller(context, self._trust, cache=self._callers)
            check_role(who, _SUBMITTERS, "submit records")
        except NodeError as exc:
            await abort_with_async(context, exc)
        loop = asyncio.get_running_loop()
        ahead = _Ahead(READ_AHEAD, READ_AHEAD_BYTES)
        reader = asyncio.create_task(_read_ahead(request_iterator, ahead))
        held: list[_Item] = []
        seq = 0
        try:
            while (first := held.pop() if held else await ahead.get()) is not None:
                if isinstance(first, Exception):
                    raise first
                try:  # a stream lives as long as its sender: a CRL loaded meanwhile, or expiry, ends it
                    vetted_caller(context, self._trust, cache=self._callers)
                except NodeError as exc:
                    await abort_with_async(context, exc)
                self._contacts.seen(who.node_id)
                count = len(first.records) + len(first.unsigned)
                if count > MAX_SUBMIT_RECORDS:
                    await abort_with_async(context, UsageError(
                        f"{count} records in one SubmitRequest; at most {MAX_SUBMIT_RECORDS}: send them as several "
                        "requests on the stream (nothing of this one was stored)",
                        field="records" if first.records else "unsigned", code="E_BATCH_TOO_LARGE"))
                group = [first]
                _gather(group, ahead, held)  # never takes a request over the limit (GROUP_RECORDS is less)
                try:
                    acks = await loop.run_in_executor(None, self._group, who, group, seq)
                except StoreError as exc:
                    log.warning("submit.unavailable", extra={"peer": who.node_id, "code": exc.code,
                                                             "reason": exc.message})
                    await abort_with_async(context, exc)
                except Exception:
                    log.exception("submit.failed", extra={"peer": who.node_id})
                    await abort_with_async(context, NodeError("the node failed to process the batch",
                                                              code="E_INTERNAL"), grpc.StatusCode.INTERNAL)
                seq += len(acks)
                start = 0
                for request in group:  # one response per request, as the sender sent them
                    end = start + len(request.records) + len(request.unsigned)
                    yield _fitting(pb.SubmitResponse(acks=acks[start:end]))
                    start = end
        finally:
            reader.cancel()

    def _group(self, who: Identity, group: Sequence[pb.SubmitRequest], seq: int) -> list[pb.Ack]:
        """One transaction for the requests of a group; a refusal of it is retried request by request,
        so that it refuses only the request it concerns, as if the requests had come one by one. A
        source's fact repeated in a later request starts a batch of its own there (``SourceIntake``):
        changed, it is the record's next revision, not a fact given twice in one batch."""
        if len(group) == 1:
            return self._batch(who, group[0], seq)
        merged = pb.SubmitRequest(certificates=group[0].certificates)
        starts = []
        for request in group:
            starts.append(len(merged.records) + len(merged.unsigned))
            merged.records.extend(request.records)
            merged.unsigned.extend(request.unsigned)
        try:
            return self._batch(who, merged, seq, strict=True, starts=starts)
        except StoreError:
            raise
        except NodeError:
            acks: list[pb.Ack] = []
            for request in group:
                acks += self._batch(who, request, seq + len(acks))
            return acks

    def _batch(self, who: Identity, request: pb.SubmitRequest, seq: int, *, strict: bool = False,
               starts: Sequence[int] = ()) -> list[pb.Ack]:
        if request.certificates:
            self._learn(who, request.certificates)
        acks: list[pb.Ack] = []
        if request.records:
            acks += self._signed(who, request.records, seq, strict=strict)
        if request.unsigned:
            acks += self._unsigned(who, request.unsigned, seq + len(acks), strict=strict, starts=starts)
        self._log_batch(who, acks)
        return acks

    def _learn(self, who: Identity, ders: Sequence[bytes]) -> None:
        if who.role != NODE or not self._inbox.is_child(who.node_id):  # strangers add no signers
            log.warning("submit.certificates_ignored", extra={"peer": who.node_id, "count": len(ders)})
            return
        for problem in self._inbox.learn_certificates(list(ders)):
            log.warning("submit.certificate_refused", extra={"peer": who.node_id, "code": problem.code,
                                                             "reason": problem.message})

    def _signed(self, who: Identity, records: Sequence[pb.SignedRecord], seq: int, *,
                strict: bool = False) -> list[pb.Ack]:
        if who.role != NODE:
            message = f"{who.node_id} (role {who.role}) may not send signed records; only nodes may"
            return [rejected_ack(seq + i, "E_NOT_AUTHORIZED", message) for i in range(len(records))]
        try:
            receipts = self._inbox.receive(records, sender=who.node_id, start_seq=seq)
        except StoreError:
            raise
        except NodeError as exc:
            if strict:
                raise
            return [rejected_ack(seq + i, exc.code, exc.message, exc.field) for i in range(len(records))]
        return [r.to_ack() for r in receipts]

    def _unsigned(self, who: Identity, records: Sequence[pb.UnsignedRecord], seq: int, *,
                  strict: bool = False, starts: Sequence[int] = ()) -> list[pb.Ack]:
        if who.role != SOURCE:
            message = f"{who.node_id} (role {who.role}) may not send unsigned records; only sources may"
            return [rejected_ack(seq + i, "E_NOT_AUTHORIZED", message) for i in range(len(records))]
        try:
            return self._intake.receive(records, source=who.node_id, start_seq=seq, starts=starts)
        except StoreError:
            raise
        except NodeError as exc:
            if strict:
                raise
            return [rejected_ack(seq + i, exc.code, exc.message, exc.field) for i in range(len(records))]

    @staticmethod
    def _log_batch(who: Identity, acks: Sequence[pb.Ack]) -> None:
        counts = {pb.Ack.ACCEPTED: 0, pb.Ack.DUPLICATE: 0, pb.Ack.REJECTED: 0}
        logged = warnings = 0
        for ack in acks:
            counts[ack.outcome] = counts.get(ack.outcome, 0) + 1
            warnings += len(ack.warnings)
            if ack.outcome == pb.Ack.REJECTED and logged < _LOGGED_REJECTIONS:
                logged += 1
                first = ack.rejections[0] if ack.rejections else pb.Rejection()
                log.warning("submit.rejected", extra={"peer": who.node_id, "record_id": ack.record_id,
                                                      "seq": ack.seq, "code": first.code, "field": first.field,
                                                      "reason": first.message})
        log.info("submit.batch", extra={"peer": who.node_id, "records": len(acks),
                                        "accepted": counts[pb.Ack.ACCEPTED],
                                        "duplicates": counts[pb.Ack.DUPLICATE],
                                        "rejected": counts[pb.Ack.REJECTED], "warnings": warnings})


_Item: TypeAlias = pb.SubmitRequest | Exception | None


class _Ahead:
    """Requests read and not yet taken, at most ``count`` of them and, once past ``budget`` bytes,
    no more read until some are taken. One reader and one taker, both on the event loop."""

    def __init__(self, count: int, budget: int) -> None:
        self._count, self._budget = count, budget
        self._items: deque[tuple[_Item, int]] = deque()
        self._bytes = 0
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()

    async def room(self) -> None:
        """Wait until another request may be read."""
        while len(self._items) >= self._count or self._bytes >= self._budget:
            self._taken.clear()
            await self._taken.wait()

    def put(self, item: _Item, size: int = 0) -> None:
        self._items.append((item, size))
        self._bytes += size
        self._arrived.set()

    async def get(self) -> _Item:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        return self.get_nowait()

    def get_nowait(self) -> _Item:
        if not self._items:
            raise asyncio.QueueEmpty
        item, size = self._items.popleft()
        self._bytes -= size
        self._taken.set()
        return item


async def _read_ahead(requests: AsyncIterable[pb.SubmitRequest], ahead: _Ahead) -> None:
    """Read the stream while the previous group is stored: parsing overlaps the store's writes."""
    try:
        await ahead.room()
        async for request in requests:
            ahead.put(request, request.ByteSize())
            await ahead.room()
    except Exception as exc:  # the call broke: the handler raises it where it waits
        ahead.put(exc)
        return
    ahead.put(None)


def _kind(request: pb.SubmitRequest) -> str:
    return "signed" if not request.unsigned else "unsigned" if not request.records else "mixed"


def _gather(group: list[pb.SubmitRequest], ahead: _Ahead, held: list[_Item]) -> None:
    """Add to ``group`` the requests already read that can share its transaction.

    Only requests of one kind, the first alone bringing certificates (learned before any of the
    group's records), and no more than ``GROUP_RECORDS``: what is not taken is held for the next.
    """
    kind = _kind(group[0])
    if kind == "mixed":
        return
    count = len(group[0].records) + len(group[0].unsigned)
    while count < GROUP_RECORDS:
        try:
            nxt = ahead.get_nowait()
        except asyncio.QueueEmpty:
            return
        if (not isinstance(nxt, pb.SubmitRequest) or nxt.certificates or _kind(nxt) != kind
                or count + len(nxt.records) + len(nxt.unsigned) > GROUP_RECORDS):
            held.append(nxt)
            return
        group.append(nxt)
        count += len(nxt.records) + len(nxt.unsigned)


def _fitting(response: pb.SubmitResponse) -> pb.SubmitResponse:
    """``response``, its refusals and warnings shortened if it would not fit in one message.

    The batch is committed by now: an answer grpc cannot send would leave the sender retrying
    records already stored. Only refusals and warnings echoing huge values (up to the request's
    own size: a warning names every unknown field given) get there; every ack stays, with the
    code, field and row of its first refusals and warnings.
    """
    if response.ByteSize() <= MAX_MESSAGE_BYTES - 1024:
        return response
    for ack in response.acks:
        for notes in (ack.rejections, ack.warnings):
            if len(notes) > _SHORT_REJECTIONS:
                del notes[_SHORT_REJECTIONS:]
            for note in notes:
                if len(note.message) > _SHORT_MESSAGE:
                    note.message = note.message[:_SHORT_MESSAGE] + "…"
    return response
