"""Preparing batches ahead of committing them: a worker process for files, a thread for pulls.

Preparing (reading, validation, body bytes) is pure CPU and needs no store, so a worker process
does it while the parent signs and stores the previous batch. The queue between them is bounded,
so memory stays bounded however big the file is. The worker never touches the store: every
record is still committed by the one process that owns the node's store connection. Small files
are imported in-process, where starting a worker would cost more than it saves.
"""

from __future__ import annotations

import contextlib
import gc
import pathlib
import pickle
import queue
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from node.catalog import Item, load_catalog
from node.errors import InputFileError, NodeError
from node.ingest import ImportSummary, Ingest, Preparer, chunks
from node.tabular import HeaderMap, read_table
from node.validation import Validator

PARALLEL_MIN_BYTES = 4 << 20
T = TypeVar("T")
U = TypeVar("U")
# Rows per worker batch, and so per transaction, when a big file is imported. The store's indexes
# are keyed by digests, so every transaction rewrites pages all over them whatever its size: a
# few large transactions cost far less per row than many small ones (scripts/bench import). The
# worker and this process each hold about two batches, ~20 MB each.
PIPELINE_BATCH_ROWS = 8_192


@dataclass(frozen=True)
class PrepareSpec:
    """Everything a worker needs to rebuild the node's preparer (picklable)."""

    node_id: str
    catalog_path: str
    uscc_allowlist: tuple[str, ...]
    source_unit: str
    allow_other_units: bool
    item: str
    path: str
    encoding: str | None
    batch_id: str
    batch_rows: int = PIPELINE_BATCH_ROWS


def headers_for(item: Item) -> HeaderMap:
    return HeaderMap(item.header_map(), frozenset(f.code for f in item.fields if f.required))


_EOF = ("eof", None, 0)  # what _Pipe.get returns once the worker has gone


class _Pipe:
    """Length-prefixed pickles over the worker's stdout; the pipe's buffer bounds what is in flight."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def put(self, message: object) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._stream.write(struct.pack(">I", len(data)))
        self._stream.write(data)
        self._stream.flush()

    def get(self) -> Any:
        head = self._stream.read(4)
        if len(head) < 4:
            return _EOF
        (size,) = struct.unpack(">I", head)
        return pickle.loads(self._stream.read(size))  # our own child's output, never a peer's


def _worker(spec: PrepareSpec, out: _Pipe) -> None:
    # A short-lived process whose objects die by reference counting batch by batch; the cyclic
    # collector would only rescan the catalogue and compiled plans again and again.
    gc.disable()
    try:
        catalog = load_catalog(spec.catalog_path)
        item = catalog.item(spec.item)
        validator = Validator(catalog, uscc_allowlist=spec.uscc_allowlist, source_unit=spec.source_unit,
                              allow_other_units=spec.allow_other_units)
        preparer = Preparer(node_id=spec.node_id, catalog=catalog, validator=validator)
        read = [0]

        def on_bytes(n: int) -> None:
            read[0] += n

        path = pathlib.Path(spec.path)
        rows = read_table(path, headers_for(item), encoding=spec.encoding, on_bytes=on_bytes)
        for chunk in chunks(rows, spec.batch_rows):
            out.put(("batch", preparer.prepare(item, chunk, source=path.name, batch_id=spec.batch_id), read[0]))
        out.put(("end", None, read[0]))
    except NodeError as exc:
        out.put(("error", (exc.code, exc.message, exc.field), 0))
    except BaseException as exc:  # the parent must learn of any failure, not wait for ever
        out.put(("crash", f"{type(exc).__name__}: {exc}", 0))


def import_file(ingest: Ingest, spec: PrepareSpec, *, size: int,
                on_bytes: Callable[[int], None] | None = None,
                progress: Callable[[int], None] | None = None) -> ImportSummary:
    item = ingest.catalog.item(spec.item)
    path = pathlib.Path(spec.path)
    if size < PARALLEL_MIN_BYTES:
        rows = read_table(path, headers_for(item), encoding=spec.encoding, on_bytes=on_bytes)
        return ingest.import_rows(item, rows, source=path.name, progress=progress, batch_rows=spec.batch_rows)
    summary = ImportSummary(batch_id=spec.batch_id)
    # A plain child process, not multiprocessing: it must not re-import the caller's __main__,
    # and fork would copy the parent's gRPC threads in a broken state.
    proc = subprocess.Popen([sys.executable, "-m", "node.pipeline"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(pickle.dumps(spec))
    proc.stdin.close()
    pipe = _Pipe(proc.stdout)
    seen_bytes = 0
    # Every batch is tens of thousands of objects freed by reference counting; the cyclic
    # collector would only walk the whole heap again and again meanwhile (~15% of this loop).
    collecting = gc.isenabled()
    gc.disable()
    # Read ahead on a thread: the worker goes on with the next batch instead of waiting, in its
    # write, for this process to finish committing the previous one.
    messages = ahead(iter(pipe.get, _EOF), lambda m: m)
    try:
        while True:
            message = next(messages, None)
            if message is None:
                raise NodeError(f"the import worker died (exit code {proc.wait()})", code="E_IMPORT_WORKER")
            kind, payload, nbytes = message
            if kind == "batch":
                summary.count(ingest.commit(item, payload, source=path.name, batch_id=spec.batch_id))
            elif kind == "end":
                break
            elif kind == "error":
                code, text, fld = payload
                raise InputFileError(text, field=fld, code=code)
            else:
                raise NodeError(f"the import worker failed: {payload}", code="E_IMPORT_WORKER")
            if on_bytes is not None and nbytes > seen_bytes:
                on_bytes(nbytes - seen_bytes)
                seen_bytes = nbytes
            if progress is not None:
                progress(payload.size)
    finally:
        if collecting:
            gc.enable()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        messages.close()  # the reader sees the end of the pipe and stops
        proc.stdout.close()
    return summary


def ahead(items: Iterable[T], work: Callable[[T], U], *, depth: int = 2) -> Generator[U, None, None]:
    """``work(item)`` for each item, in order, the next ones computed on a thread meanwhile.

    For sources read in the node's own process (a database pull): while the caller commits one
    batch — SQLite and the network wait without holding the GIL — the thread reads and prepares
    the next. At most ``depth`` results wait, so memory stays bounded. An exception in ``items``
    or ``work`` is raised to the caller at its place in the order; closing the generator early
    stops the thread after the item it is working on.
    """
    results: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stopping = threading.Event()

    def run() -> None:
        try:
            for it in items:
                if stopping.is_set():
                    return
                results.put(("ok", work(it)))
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            results.put(("error", exc))
            return
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
    spec = pickle.loads(sys.stdin.buffer.read())  # written by our own parent process
    _worker(spec, _Pipe(sys.stdout.buffer))


if __name__ == "__main__":
    _main()
