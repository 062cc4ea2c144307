"""Reporting templates a source unit fills in: the item's Chinese headers, in catalogue order.

CSV is written in UTF-8 with a BOM, without which Excel on Chinese Windows reads it as GBK and
garbles every header. XLSX has a bold header row and a second sheet "说明" describing each column.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Literal

from node.catalog import FieldSpec, Item, template_headers
from node.errors import UsageError

__all__ = ["write_template"]

_TYPE_NAMES = {"string": "文本", "text": "长文本", "date": "日期 (YYYY-MM-DD)", "decimal": "数字",
               "integer": "整数", "enum": "枚举", "uscc": "统一社会信用代码 (18位)", "id_number": "证件号码",
               "org_code": "组织机构代码 (9位)", "code": "代码"}
# Typed into a General cell, an 18-digit ID number loses its last digits and a code its leading
# zeros: such columns are text. Dates and amounts stay typed (their cells read as they should).
_TEXT_TYPES = frozenset({"string", "text", "enum", "uscc", "id_number", "org_code", "code"})
_LIST_ROWS = 10_000  # rows under the header that get an enum's drop-down list
_LIST_MAX_CHARS = 255  # Excel's limit for a list written into the validation itself


def _required(item: Item, f: FieldSpec) -> str:
    if f.required:
        return "必填"
    if f.required_when:
        return "条件必填: " + "; ".join(f"{item.field(c.field).name}为{'/'.join(c.values)}" for c in f.required_when)
    return "选填"


def _notes(item: Item, f: FieldSpec) -> str:
    notes = []
    if f.max_length:
        notes.append(f"最多{f.max_length}字")
    if f.multi:
        notes.append('可多选, 以";"分隔')
    if f.minimum is not None:
        notes.append(f"不小于{f.minimum}")
    if f.scale is not None:
        notes.append(f"最多{f.scale}位小数")
    if f.forbidden_when:
        notes.append("须为空: " + "; ".join(f"{item.field(c.field).name}为{'/'.join(c.values)}"
                                          for c in f.forbidden_when))
    if f.value_aliases:
        notes.append("也接受: " + ", ".join(f"{a}→{v}" for a, v in f.value_aliases))
    if f.description:
        notes.append(f.description)
    return "; ".join(notes)


def write_template(item: Item, fmt: Literal["csv", "xlsx"], out: pathlib.Path) -> None:
    """Write ``item``'s empty reporting template to ``out`` as ``csv`` or ``xlsx``."""
    headers = template_headers(item)
    if fmt == "csv":
        with out.open("w", encoding="utf-8-sig", newline="") as fh:
            csv.writer(fh).writerow(headers)
        return
    if fmt != "xlsx":
        raise UsageError(f"template format must be csv or xlsx, not {fmt!r}", field="format")
    from openpyxl import Workbook  # only this path needs it; importing it costs ~0.3 s
    from openpyxl.styles import Font
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = Workbook()
    ws = wb.active
    ws.title = item.name[:31]  # Excel's sheet-name limit
    ws.append(headers)
    for cell, f in zip(ws[1], item.fields, strict=True):
        cell.font = Font(bold=True)
        column = ws.column_dimensions[cell.column_letter]
        column.width = max(12, min(40, 2 * len(f.name) + 2))
        if f.type in _TEXT_TYPES:
            column.number_format = "@"
        choices = ",".join(f.enum)
        if f.type == "enum" and not f.multi and len(choices) + 2 <= _LIST_MAX_CHARS and "," not in "".join(f.enum):
            # A choice offered, not imposed: the aliases the node accepts may still be typed.
            listed = DataValidation(type="list", formula1=f'"{choices}"', allow_blank=True, showErrorMessage=False)
            listed.add(f"{cell.column_letter}2:{cell.column_letter}{_LIST_ROWS + 1}")
            ws.add_data_validation(listed)
    ws.freeze_panes = "A2"
    notes = wb.create_sheet("说明")
    notes.append(["字段代码", "字段名称", "是否必填", "类型", "可选值", "说明"])
    for cell in notes[1]:
        cell.font = Font(bold=True)
    for f in item.fields:
        notes.append([f.code, f.name, _required(item, f), _TYPE_NAMES.get(f.type, f.type),
                      ";".join(f.enum), _notes(item, f)])
    for col, width in zip("ABCDEF", (16, 30, 30, 22, 40, 60), strict=True):
        notes.column_dimensions[col].width = width
    wb.save(out)
