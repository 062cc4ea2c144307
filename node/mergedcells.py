"""The merged blocks of a sheet's data rows, met in row order as :mod:`node.workbook` reads them.

The file keeps a merged block's value in its top-left cell only; the spreadsheet shows it across
every cell the block covers, and that is how a department reads its rows.
"""

from __future__ import annotations

__all__ = ["MergedBlocks"]


class MergedBlocks:
    """Merged blocks of the data rows, met in row order: each gives its value to every cell it
    covers, as the spreadsheet shows it across them (the file keeps it in the top-left cell only,
    and the rows below would read as empty). Only the blocks over the current row are looked at."""

    def __init__(self, blocks: list[tuple[int, int, int, int]]) -> None:
        self._ahead = sorted(blocks, reverse=True)  # by first row: the next one to open is last
        self._open: list[tuple[int, int, int, int, object]] = []

    @property
    def pending(self) -> bool:
        return bool(self._ahead or self._open)

    def fill(self, rownum: int, cells: tuple[object, ...]) -> tuple[object, ...]:
        self._open = [b for b in self._open if b[2] >= rownum]
        while self._ahead and self._ahead[-1][0] <= rownum:
            first_row, first_col, last_row, last_col = self._ahead.pop()
            if last_row >= rownum:  # a block whose first row was blank and skipped still counts
                value = cells[first_col] if first_row == rownum and first_col < len(cells) else None
                self._open.append((first_row, first_col, last_row, last_col, value))
        if not self._open:
            return cells
        out = list(cells)
        for _first_row, first_col, _last_row, last_col, value in self._open:
            if len(out) <= last_col:
                out.extend([None] * (last_col + 1 - len(out)))
            for col in range(first_col, last_col + 1):
                out[col] = value
        return tuple(out)

    def across(self, codes: list[str | None]) -> list[int]:
        """The columns of the first block over the current row (the last one :meth:`fill` saw)
        that spans more than one named column: its value is one field's, and which is unknown."""
        for _first_row, first_col, _last_row, last_col, _value in self._open:
            if last_col > first_col:
                named = [i for i in range(first_col, min(last_col, len(codes) - 1) + 1) if codes[i] is not None]
                if len(named) > 1:
                    return named
        return []
