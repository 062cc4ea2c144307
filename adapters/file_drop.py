"""The drop folder: a department saves CSV/XLSX (or .txt) files in the catalogue templates, the node takes them in.

Each file is one batch. A file is read only once it is complete: dotfiles, ``*.part``, ``*.tmp``
and Excel lock files are never touched, and a file must show the same size and modification time
on two consecutive polls (or, with ``ready_marker``, have a ``NAME.ready`` beside it), so a file
still being copied is never read. The answer to the department is ``NAME.result.csv`` (or
``.result.xlsx`` for an .xlsx file) written beside it, listing every refused row with its field,
code and reason; the original then moves to ``done/`` or, when the file as a whole could not be
read (unknown columns, not a table), to ``failed/`` — its result file says why.

Crash safety: batches commit as they go and the original moves only after its last batch
committed and its result was written. A crash in between leaves the file in the folder, and
processing it again stores nothing twice (record ids are stable, identical rows are duplicates)
and leaves no second copy of a rejection open (the store supersedes it).
"""

from __future__ import annotations

import csv
import glob
import logging
import os
import pathlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from adapters.base import Sink
from node.catalog import Catalog, Item
from node.config import FileAdapterConfig
from node.errors import InputFileError, NodeError, Problem, UnknownItemError
from node.identifiers import readable_name
from node.ingest import BATCH_ROWS
from node.preparing import chunks
from node.tabular import HeaderMap, read_table

__all__ = ["RESULT_COLUMNS", "FileDrop", "FileOutcome", "ResultWriter"]

RESULT_COLUMNS = ("row", "field", "field_name", "code", "reason")

# Names office tools, browsers and copy programs use while a file is still being written.
_IN_PROGRESS = re.compile(r"(^\.|^~\$|\.(part|partial|tmp|temp|crdownload|download|filepart)$)", re.IGNORECASE)
# How long an empty file must sit untouched before it is taken for an empty file, not a copy that
# has created its file and not yet written to it.
EMPTY_QUIET_S = 60
_ANSWERS = re.compile(r"\.(result\.csv|result\.xlsx|ready)$", re.IGNORECASE)
_SEPARATOR = re.compile(r"[\s._\-—–()（）\[\]【】]")


@dataclass(frozen=True)
class FileOutcome:
    """What became of one dropped file."""

    name: str
    item: str
    state: str  # done | failed
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    result: str = ""  # path of the result file
    moved_to: str = ""
    error: str = ""  # code of the file-level error (failed files)


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime_ns: int


class FileDrop:
    """One drop folder (a ``Source``). Not thread-safe: one runner per folder."""

    def __init__(self, cfg: FileAdapterConfig, *, directory: pathlib.Path, catalog: Catalog, sink: Sink,
                 name: str, batch_rows: int = BATCH_ROWS, logger: logging.Logger | None = None,
                 on_file: Callable[[FileOutcome], None] | None = None) -> None:
        self.name = name
        self.interval_s = cfg.interval_s
        self.directory = directory
        self._cfg = cfg
        self._catalog = catalog
        self._sink = sink
        self._batch_rows = batch_rows
        self._log = logger or logging.getLogger(__name__)
        self._on_file = on_file
        self._seen: dict[str, _Seen] = {}  # size and mtime at the previous poll, by file name

    # --- Source ------------------------------------------------------------------------------
    def poll(self) -> int:
        """Process every complete file in the folder; returns the number of rows handled."""
        handled = 0
        for path in self.ready_files():
            outcome = self.process(path)
            handled += outcome.accepted + outcome.duplicates + outcome.rejected
        return handled

    def close(self) -> None:
        """Nothing held open between polls."""

    def ready_files(self) -> list[pathlib.Path]:
        """Files that are complete now, oldest first; remembers what it saw for the next poll."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            raise InputFileError(f"drop folder {self.directory} does not exist", code="E_ADAPTER_FOLDER") from None
        markers = {e.name: e for e in entries if e.name.endswith(".ready")}
        ready: list[tuple[int, str]] = []
        seen: dict[str, _Seen] = {}
        for entry in entries:
            if not entry.is_file(follow_symlinks=False) or _IN_PROGRESS.search(entry.name) \
                    or _ANSWERS.search(entry.name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # taken away between listing and stat
                continue
            now = _Seen(st.st_size, st.st_mtime_ns)
            seen[entry.name] = now
            if self._cfg.ready_marker:
                # Only a marker written after the file counts: one left by a node killed between
                # moving a file away and deleting its marker would otherwise pass the next file
                # of that name while it is still being written.
                if (marker := markers.get(f"{entry.name}.ready")) is not None and _mtime(marker) >= st.st_mtime_ns:
                    ready.append((st.st_mtime_ns, entry.name))
            elif self._seen.get(entry.name) == now and (st.st_size > 0 or _left_empty(st.st_mtime_ns)):
                ready.append((st.st_mtime_ns, entry.name))
        self._seen = seen
        return [self.directory / n for _t, n in sorted(ready)]

    # --- one file ------------------------------------------------------------------------------
    def process(self, path: pathlib.Path) -> FileOutcome:
        """Import one complete file, write its result, move it to done/ or failed/."""
        batch_id = uuid.uuid4().hex
        result_path = result_path_for(path)
        accepted = duplicates = rejected = 0
        error: NodeError | None = None
        item_code = ""
        source = readable_name(path.name)  # a name saved on a GBK system: stored and logged as text
        writer = ResultWriter(result_path)
        try:
            try:
                item = self._item_for(path.name)
                item_code = item.code
                # Other names (.xls, .et, .doc) are refused by read_table, saying what the file holds: an
                # .xls is often a web page or an .xlsx under another name, which its sender cannot tell.
                headers = HeaderMap(item.header_map(), frozenset(f.code for f in item.fields if f.required))
                rows = read_table(path, headers, encoding=self._cfg.encoding or None)
                for chunk in chunks(rows, self._batch_rows):
                    outcomes = self._sink.commit(item, self._sink.prepare(item, chunk, source=source,
                                                                          batch_id=batch_id),
                                                 source=source, batch_id=batch_id)
                    for o in outcomes:
                        if o.outcome == "accepted":
                            accepted += 1
                        elif o.outcome == "duplicate":
                            duplicates += 1
                        else:
                            rejected += 1
                        if o.problems:
                            _write_problems(writer, item, o.row, o.problems)
            except (InputFileError, UnknownItemError) as exc:
                error = exc
                writer.add(0, exc.field, _field_name(item_code, exc.field, self._catalog), exc.code, exc.message)
            except NodeError:
                raise  # the store or the node, not the file: left where it is, tried again next poll
            except Exception as exc:
                # Something in the file the reader did not foresee: it goes to failed/ with a result,
                # instead of failing every poll and holding up the files dropped after it.
                self._log.exception("adapter.file_unreadable", extra={"adapter": self.name, "file": path.name})
                error = InputFileError(f"{path.name} could not be read ({type(exc).__name__}); save it again "
                                       "from the spreadsheet program", code="E_INPUT_UNREADABLE")
                writer.add(0, "", "", error.code, error.message)
            if error is None and not accepted + duplicates + rejected:
                # An empty answer says every row was accepted: a file without rows must not read so.
                writer.add(0, "", "", "W_INPUT_NO_RECORDS", f"{path.name} holds no records: a header and nothing "
                           "under it (the wrong file, or an empty report)")
            writer.commit()
        except BaseException:
            writer.abandon()  # a store or disk failure: leave the file where it is, retry next poll
            raise
        state = "failed" if error is not None else "done"
        moved = move_aside(path, path.parent / state)
        marker = path.with_name(path.name + ".ready")
        marker.unlink(missing_ok=True)
        self._seen.pop(path.name, None)
        outcome = FileOutcome(path.name, item_code, state, accepted, duplicates, rejected, str(result_path),
                              str(moved), error.code if error else "")
        self._log.info("adapter.file", extra={"adapter": self.name, "file": path.name, "state": state,
                                              "batch": batch_id, "accepted": accepted, "duplicates": duplicates,
                                              "rejected": rejected, "code": outcome.error})
        if self._on_file is not None:
            self._on_file(outcome)
        return outcome

    def _item_for(self, filename: str) -> Item:
        if self._cfg.item:
            return self._catalog.item(self._cfg.item)
        code = item_from_filename(filename, self._catalog)
        if code is None:
            raise InputFileError(
                f"cannot tell the catalogue item from the file name {filename!r}: start the name with an "
                "item code or name (e.g. admin_penalty_2026-11.csv, 行政处罚-11月.xlsx)", code="E_INPUT_ITEM")
        return self._catalog.item(code)


def _left_empty(mtime_ns: int) -> bool:
    """Whether an empty file has stayed so for longer than a copy takes to write its first bytes:
    an empty file sent by mistake, to be answered (E_INPUT_EMPTY), not left unanswered for good."""
    return time.time_ns() - mtime_ns > EMPTY_QUIET_S * 1_000_000_000


def _mtime(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        return -1


def item_from_filename(filename: str, catalog: Catalog) -> str | None:
    """The item whose code or name starts ``filename`` (longest first), followed by a separator."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    candidates: list[tuple[str, str]] = []
    for item in catalog.items.values():
        candidates.extend([(item.code, item.code), (item.name, item.code)])
    for prefix, code in sorted(candidates, key=lambda c: -len(c[0])):
        if stem.lower().startswith(prefix.lower()):
            rest = stem[len(prefix):]
            if not rest or _SEPARATOR.match(rest):
                return code
    return None


def result_path_for(path: pathlib.Path) -> pathlib.Path:
    suffix = ".result.xlsx" if path.suffix.lower() in (".xlsx", ".xlsm") else ".result.csv"
    return path.with_name(path.name + suffix)


def move_aside(path: pathlib.Path, folder: pathlib.Path) -> pathlib.Path:
    """Move ``path`` into ``folder`` (atomic rename), never overwriting an earlier file of the name."""
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = folder / f"{path.stem}.{stamp}-{uuid.uuid4().hex[:6]}{path.suffix}"
    os.replace(path, target)
    return target


def _field_name(item_code: str, field: str, catalog: Catalog) -> str:
    if not item_code or not field or item_code not in catalog.items:
        return ""
    item = catalog.items[item_code]
    return item.field(field).name if item.has_field(field) else ""


def _write_problems(writer: ResultWriter, item: Item, row: int, problems: tuple[Problem, ...]) -> None:
    """A refused row's problems, and the warnings of a row accepted anyway (``W_…`` codes), which
    DOMAIN §2 wants told, never passed over in silence."""
    for p in problems:
        writer.add(row, p.field, item.field(p.field).name if item.has_field(p.field) else "", p.code, p.message)


_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # what openpyxl refuses in a cell


def _shown_escaped(m: re.Match[str]) -> str:
    return f"\\x{ord(m[0]):02x}"


class ResultWriter:
    """The result file, streamed to a hidden temporary name and renamed into place when complete.

    CSV results carry a UTF-8 BOM so Excel opens the Chinese text correctly; an .xlsx input gets
    an .xlsx result (openpyxl's write-only mode keeps memory flat however many rows are refused).
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.rows = 0
        # One adapter processes a file at a time: a temporary result of this name is one a killed
        # node left behind, never read again.
        for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._xlsx = path.suffix.lower() == ".xlsx"
        self._fh: IO[str] | None = None
        self._csv: Any = None
        self._book: Any = None
        self._sheet: Any = None
        if self._xlsx:
            import openpyxl  # only xlsx answers pay for it

            self._book = openpyxl.Workbook(write_only=True)
            self._sheet = self._book.create_sheet("result")
            self._sheet.append(list(RESULT_COLUMNS))
        else:
            self._fh = self._tmp.open("w", encoding="utf-8-sig", newline="")
            self._csv = csv.writer(self._fh)
            self._csv.writerow(RESULT_COLUMNS)

    def add(self, row: int, field: str, field_name: str, code: str, reason: str) -> None:
        self.rows += 1
        if self._xlsx:
            # A reason may quote a cell or a header holding a control character (a workbook keeps
            # one as _x000B_), which a worksheet cannot hold: shown escaped, so the answer is written.
            self._sheet.append([row, field, field_name, code, _UNWRITABLE.sub(_shown_escaped, reason)])
        else:
            self._csv.writerow([row, field, field_name, code, reason])

    def commit(self) -> None:
        if self._xlsx:
            self._book.save(self._tmp)
        elif self._fh is not None:
            self._fh.close()
        os.replace(self._tmp, self.path)

    def abandon(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)
