"""Preparing batches ahead of committing them: a worker process, or a thread.

Preparing (reading, validation, body bytes) is pure CPU and needs no store, so a worker process
(``PrepareWorker``) does it while the node signs and stores the previous batch. The worker runs
jobs: a ``BatchReader`` — a file (``FileReader``), or pages of a department's table
(``adapters.table_pages``) — crosses to it pickled, and its prepared batches come back in order. The
pipes between the two are bounded, so memory stays bounded however big the source is. The worker
never touches the store: every record is still committed by the one process that owns the node's
store connection. Small files are imported in-process, where starting a worker would cost more
than it saves; ``ahead`` prepares on a thread where a source cannot cross to another process.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from node import errors
from node.catalog import Item, load_catalog
from node.errors import NodeError
from node.preparing import IMPORT_RACE_RETRIES, ImportSummary, PreparedBatch, Preparer, chunks
from node.tabular import HeaderMap, SourceRow, read_table
from node.validation import Validator

if TYPE_CHECKING:  # the worker runs this module and must not load the store to do so
    from node.ingest import Ingest

PARALLEL_MIN_BYTES = 4 << 20
T = TypeVar("T")
U = TypeVar("U")
# Rows per worker batch, and so per transaction, when a big file is imported. The store's indexes
# are keyed by digests, so every transaction rewrites pages all over them whatever its size: a
# few large transactions cost far less per row than many small ones (scripts/bench import). The
# worker and this process each hold about two batches, ~20 MB each.
PIPELINE_BATCH_ROWS = 8_192
FIRST_BATCH_ROWS = 1_024


@dataclass(frozen=True)
class PreparerSetup:
    """Everything a worker needs to rebuild the node's preparer (picklable)."""

    node_id: str
    catalog_path: str
    uscc_allowlist: tuple[str, ...]
    source_unit: str
    allow_other_units: bool


class BatchReader(Protocol):
    """One job for the worker: rows read there, in batches, each with what the caller needs of it.

    Picklable, because it crosses to the worker; ``batches`` runs there. ``connections`` lives as
    long as the worker, so a reader can keep its database engine from one job to the next.
    """

    @property
    def item(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def batch_id(self) -> str: ...

    def batches(self, connections: dict[str, Any]) -> Iterator[tuple[Sequence[SourceRow], Any]]: ...


@dataclass(frozen=True)
class FileReader:
    """A CSV/XLSX file read in the worker; each batch comes with the bytes read so far."""

    item: str
    source: str
    batch_id: str
    path: str
    encoding: str | None
    headers: HeaderMap
    batch_rows: int = PIPELINE_BATCH_ROWS

    def batches(self, connections: dict[str, Any]) -> Iterator[tuple[Sequence[SourceRow], Any]]:
        read = [0]

        def on_bytes(n: int) -> None:
            read[0] += n

        rows = read_table(pathlib.Path(self.path), self.headers, encoding=self.encoding, on_bytes=on_bytes)
        # A short first batch: the node starts committing at once instead of waiting for a whole one.
        for chunk in chunks(rows, self.batch_rows, first=min(self.batch_rows, FIRST_BATCH_ROWS)):
            yield chunk, read[0]
            del chunk  # not alive while the next one is read


def headers_for(item: Item) -> HeaderMap:
    return HeaderMap(item.header_map(), frozenset(f.code for f in item.fields if f.required))


_BATCH = 1  # the frame tag of a prepared batch; anything else ends a job


class _Pipe:
    """Tagged, length-prefixed pickles over a pipe between the node and its own worker; the pipe's
    buffer bounds what is in flight."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def put(self, message: object, tag: int = 0) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        # Straight to the descriptor, resuming after every short write. Through the stream's
        # BufferedWriter, a batch arrived corrupt whenever the worker was traced (py-spy or a
        # debugger attached: the node failed to unpickle it in 3 imports of 3); this way, 0 of 2.
        self._stream.flush()
        fd = self._stream.fileno()
        for part in (struct.pack(">IB", len(data), tag), data):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]

    def frame(self) -> tuple[int, bytes] | None:
        """The next message still pickled, with its tag; None once the other side has gone."""
        head = self._stream.read(5)
        if len(head) < 5:
            return None
        size, tag = struct.unpack(">IB", head)
        data = self._stream.read(size)
        return (tag, data) if len(data) == size else None

    def get(self) -> Any:
        """The next message; None once the other side has gone."""
        got = self.frame()
        return None if got is None else pickle.loads(got[1])  # our own parent's or child's, never a peer's


def _serve(jobs: _Pipe, out: _Pipe) -> None:
    """The worker: a preparer built once, then each job's batches prepared and sent, in order."""
    # Its objects die by reference counting batch by batch; the cyclic collector would only
    # rescan the catalogue and compiled plans again and again.
    gc.disable()
    try:
        setup: PreparerSetup = jobs.get()
        catalog = load_catalog(setup.catalog_path)
        validator = Validator(catalog, uscc_allowlist=setup.uscc_allowlist, source_unit=setup.source_unit,
                              allow_other_units=setup.allow_other_units)
        preparer = Preparer(node_id=setup.node_id, catalog=catalog, validator=validator)
    except BaseException as exc:  # the parent must learn of any failure, not wait for ever
        out.put(("crash", f"{type(exc).__name__}: {exc}", None))
        return
    connections: dict[str, Any] = {}
    while (reader := jobs.get()) is not None:
        try:
            item = catalog.item(reader.item)
            for rows, extra in reader.batches(connections):
                prepared = preparer.prepare(item, rows, source=reader.source, batch_id=reader.batch_id)
                del rows  # peak memory: one batch's rows alive at a time, not two
                out.put(("batch", prepared, extra), _BATCH)
                del prepared
            out.put(("end", None, None))
        except NodeError as exc:  # the job failed (a bad file, the source down); the worker goes on
            out.put(("error", (type(exc).__name__, exc.message, exc.field, exc.code), None))
        except BaseException as exc:
            out.put(("crash", f"{type(exc).__name__}: {exc}", None))
            return


def _message(frame: bytes) -> tuple[str, Any, Any]:
    """A worker's frame unpickled; one that does not unpickle is the worker's failure, not a traceback."""
    try:
        kind, payload, extra = pickle.loads(frame)  # our own child's, never a peer's
    except Exception as exc:  # pickle raises anything from UnpicklingError to MemoryError on bad bytes
        raise NodeError(f"the prepare worker sent a batch that does not decode ({type(exc).__name__}: {exc})",
                        code="E_IMPORT_WORKER") from None
    return str(kind), payload, extra


def _rebuilt(name: str, message: str, field: str, code: str) -> NodeError:
    """The worker's NodeError as the same class here, so callers see its retryable flag and exit code."""
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, NodeError) and cls.__init__ is NodeError.__init__):
        cls = NodeError
    return cls(message, field=field, code=code)


class PrepareWorker:
    """A worker process that prepares batches for one source, job after job, until closed.

    A plain child process, not multiprocessing: it must not re-import the caller's __main__, and
    fork would copy the parent's gRPC threads in a broken state. It is started on the first job and
    started again after a job that was abandoned half-way (its pipe would hold stale batches).
    """

    def __init__(self, setup: PreparerSetup) -> None:
        self._setup = setup
        self._proc: subprocess.Popen[bytes] | None = None

    def run(self, reader: BatchReader) -> Generator[tuple[PreparedBatch, Any], None, None]:
        """Each prepared batch of ``reader`` with its extra value; a failed job raises its error."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        _Pipe(proc.stdin).put(reader)
        results = _Pipe(proc.stdout)

        def frames() -> Iterator[tuple[int, bytes] | None]:
            while True:
                got = results.frame()
                yield got
                if got is None or got[0] != _BATCH:
                    return

        # Read ahead on a thread: the worker goes on with the next batch instead of waiting, in
        # its write, for this process to finish committing the previous one. Frames wait still
        # pickled, and one at a time, to keep memory low.
        messages = ahead(frames(), lambda m: m, depth=1)
        clean = False
        try:
            for got in messages:
                if got is None:
                    raise NodeError(f"the prepare worker died (exit code {proc.wait()})", code="E_IMPORT_WORKER")
                kind, payload, extra = _message(got[1])
                del got
                if kind == "batch":
                    yield payload, extra
                    del payload
                elif kind == "end":
                    clean = True
                    return
                elif kind == "error":
                    clean = True
                    raise _rebuilt(*payload)
                else:
                    raise NodeError(f"the prepare worker failed: {payload}", code="E_IMPORT_WORKER")
            raise NodeError(f"the prepare worker died (exit code {proc.wait()})", code="E_IMPORT_WORKER")
        finally:
            if not clean:
                self._kill()  # the reading thread sees the end of the pipe and stops
            messages.close()
            if not clean:
                self.close()

    def close(self) -> None:
        self._kill()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._proc = subprocess.Popen([sys.executable, "-m", "node.pipeline"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE)
            assert self._proc.stdin is not None
            _Pipe(self._proc.stdin).put(self._setup)
        return self._proc


def import_file(ingest: Ingest, setup: PreparerSetup, reader: FileReader, *, size: int,
                on_bytes: Callable[[int], None] | None = None,
                progress: Callable[[int], None] | None = None) -> ImportSummary:
    item = ingest.catalog.item(reader.item)
    path = pathlib.Path(reader.path)
    if size < PARALLEL_MIN_BYTES:
        rows = read_table(path, reader.headers, encoding=reader.encoding, on_bytes=on_bytes)
        return ingest.import_rows(item, rows, source=reader.source, progress=progress, batch_rows=reader.batch_rows)
    summary = ImportSummary(batch_id=reader.batch_id)
    worker = PrepareWorker(setup)
    seen_bytes = 0
    # Every batch is tens of thousands of objects freed by reference counting; the cyclic
    # collector would only walk the whole heap again and again meanwhile (~15% of this loop).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for prepared, nbytes in worker.run(reader):
            summary.count(ingest.commit(item, prepared, source=reader.source, batch_id=reader.batch_id,
                                        race_retries=IMPORT_RACE_RETRIES))
            if on_bytes is not None and nbytes > seen_bytes:
                on_bytes(nbytes - seen_bytes)
                seen_bytes = nbytes
            if progress is not None:
                progress(prepared.size)
            del prepared  # freed before the next batch arrives, not after
    finally:
        if collecting:
            gc.enable()
        worker.close()
    return summary


def ahead(items: Iterable[T], work: Callable[[T], U], *, depth: int = 2) -> Generator[U, None, None]:
    """``work(item)`` for each item, in order, the next ones computed on a thread meanwhile.

    For work done in the node's own process (a pull without a worker): while the caller commits one
    batch — SQLite and the network wait without holding the GIL — the thread reads and prepares
    the next. At most ``depth`` results wait, so memory stays bounded. An exception in ``items``
    or ``work`` is raised to the caller at its place in the order; closing the generator early
    stops the thread after the item it is working on.
    """
    results: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stopping = threading.Event()

    source = iter(items)

    def run() -> None:
        try:
            for it in source:
                if stopping.is_set():
                    return
                results.put(("ok", work(it)))
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            results.put(("error", exc))
            return
        finally:
            # A generator source is closed on the thread that runs it, releasing what it holds
            # (a database connection) when the consumer stops early.
            close = getattr(source, "close", None)
            if close is not None:
                close()
        results.put(("end", None))

    thread = threading.Thread(target=run, name="prepare-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = results.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopping.set()
        while thread.is_alive():  # unblock a put the thread may be waiting in
            with contextlib.suppress(queue.Empty):
                results.get(timeout=0.05)
        thread.join()


def new_batch_id() -> str:
    return uuid.uuid4().hex


def _main() -> None:
    # Ctrl-C at a terminal, and a service manager's SIGTERM, reach the whole process group: the
    # node decides what an interrupt means (it stops between batches and closes this pipe). A
    # worker dying first would make the node report a failed worker instead of a clean stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _serve(_Pipe(sys.stdin.buffer), _Pipe(sys.stdout.buffer))
    except BrokenPipeError:
        # The node went away (stopped, killed) while a batch was on its way: nothing to say, and
        # nothing to flush into a pipe nobody reads.
        os._exit(1)


if __name__ == "__main__":
    _main()
