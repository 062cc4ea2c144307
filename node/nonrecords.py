"""Rows of a department's file that are no record: notes under the header, column numbers, sums, footers.

Templates and forms put rows between the header and the data, and under the data, that explain
or total the sheet (填写说明, 栏次, 合计, 填表人：…). The readers (``node.csvfile``,
``node.workbook``) read past them instead of refusing each one field by field in every answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from node.catalog import normalize_header
from node.tabular import BOOKKEEPING, clean_header

__all__ = ["is_footer", "is_notes", "is_total", "numbers_columns"]

# A cell of the row templates put under the header to say which columns must be filled in
# ("必填", "选填", "条件必填", "必填，18位"): never a value of any field.
_FILL_NOTE = re.compile(r"(?:是否)?(?:有?条件)?(?:必填|选填|非必填|可选|可填|必录|选录|非必录)项?(?:[\W_].*)?", re.S)
# What else a row of notes under the header says of its column (the 双公示 templates' own: "必填项，
# 填写…", "涉及自然人时此项为必填项…", "格式为YYYY/MM/DD"; others: "18位", "文本，最多200字", "请填写…",
# "VARCHAR(200)"): words no value of a record is made of alone.
_NOTE_WORDS = re.compile(r"必填|选填|必录|选录|此项|本项|该项|填写|填报|请输入|请选择|格式|例如|示例|样例|不填|留空|"
                         r"可为空|YYYY|yyyy|[0-9]+\s*位|(?:最多|不超过|不多于|最长|至多)\s*[0-9]+\s*个?(?:汉?字|字符|位)|"
                         r"[0-9]+\s*个?(?:汉?字|字符)以内")
_NOTE_TYPE = re.compile(r"(?:(?:文本|字符串?|数字|数值|日期|时间|整数|小数|枚举|代码)(?:型|类型|格式)?"
                        r"|(?i:n?varchar2?|char|date|datetime|timestamp|number|numeric|decimal|int|integer|string))"
                        r"(?:\s*[(（][0-9,， ]+[)）])?(?:[\W_].*)?", re.S)
# The label opening a row of notes, or of an example, under the header (填写说明：…, 注：…, 示例).
_NOTE_LABEL = re.compile(r"(?:(?:填写|填报|填表)?说明|注意事项|注|示例|样例|举例|范例|例)(?:\s*[:：(（].*)?", re.S)
# A cell of the row that forms kept for statistics put under the header to number their columns
# (栏次): 1, (1), （1）, and 甲, 乙 over the columns of text before the numbered ones.
_COLUMN_NUMBER = re.compile(r"[(（]?([0-9]{1,3})(?:\.0)?[)）]?")
_COLUMN_STEMS = frozenset("甲乙丙丁戊己庚辛壬癸")
# The first cell of a row of sums under the data ("合计", "总计：6条"; 汇总, how Chinese Excel and WPS
# label a table's total row); the cells after it are numbers.
_TOTAL = re.compile(r"(?:(?:合|总|小|共)\s*计|汇\s*总)(?:[\W_].*)?", re.S)
_TOTAL_START = frozenset("合总小共汇")
# The first cell of the lines forms end with, under the data: who filled the sheet in and who
# checked it (填表人：张三  审核人：李四  填报日期：…), the unit's seal, a footnote (注：…).
_FOOTER = re.compile(r"(?:(?:填表|填报|制表|审核|审批|复核|经办|联系)人?|(?:单位|部门)?负责人|分管领导|联系电话|电话|"
                     r"(?:填表|填报|制表|报送|审核)日期|(?:填报|报送|制表)单位|注)\s*(?:[(（][^)）]{0,10}[)）])?\s*[:：].*",
                     re.S)
_FOOTER_START = frozenset("填制审复经联负单部分电报注")
_FOOTER_CELLS = 8  # a line of signatures has a few cells; a record has a dozen required ones
_COUNT = re.compile(r"[0-9][0-9,.\s]*(?:万元|元|条|件|笔|户|家|人|次)?")


def is_notes(cells: Sequence[object], names: Sequence[object]) -> bool:
    """Whether a row under the header (``names``) explains how to fill the columns in, rather than
    holding a record: the 填写说明 row of a template, a note (注：带*为必填项), an example row
    (示例, …). Asked only of the rows between the header and the first record.

    It is one when it numbers the columns (栏次: 1 2 3 …), when its first filled cell is such a label,
    or when at least two thirds of its filled cells read as notes: 必填/选填 and the words of
    instructions (请填写, 此项, 格式, 18位, 最多200字), a type (文本, 日期型, VARCHAR(200)), or the
    column's own name (请填写行政相对人名称). A record's names, codes, dates and amounts are none of these.
    """
    filled = [(i, t) for i, t in enumerate(clean_header(c) for c in cells) if t]
    if not filled:
        return False
    if _NOTE_LABEL.fullmatch(filled[0][1]) or numbers_columns(cells):
        return True
    notes = 0
    for i, t in filled:
        if _FILL_NOTE.fullmatch(t) or _NOTE_WORDS.search(t) or _NOTE_TYPE.fullmatch(t):
            notes += 1
            continue
        name = normalize_header(clean_header(names[i])) if i < len(names) else ""
        if len(name) >= 2 and name not in BOOKKEEPING and name in normalize_header(t):
            notes += 1
    return 3 * notes >= 2 * len(filled)


def numbers_columns(cells: Sequence[object]) -> bool:
    """Whether a row numbers the columns (栏次: 1 2 3 …, perhaps after 甲 乙): at least three filled
    cells, each a stem or a number one more than the number before it. No record is only that."""
    last: int | None = None
    filled = 0
    for c in cells:
        if isinstance(c, bool) or (isinstance(c, float) and not c.is_integer()):
            return False
        if isinstance(c, int | float):
            n = int(c)
        else:
            t = clean_header(c)
            if not t:
                continue
            if t in _COLUMN_STEMS and last is None:
                filled += 1
                continue
            if (m := _COLUMN_NUMBER.fullmatch(t)) is None:
                return False
            n = int(m[1])
        if last is not None and n != last + 1:
            return False
        last, filled = n, filled + 1
    return filled >= 3 and last is not None


def is_total(cells: Sequence[object]) -> bool:
    """Whether a row is a row of sums (合计) under the data: its first filled cell says so and
    every other filled cell is a number. Called for every row: it returns at the first filled cell
    of a record."""
    first = True
    label = ""
    for c in cells:
        if c is None:
            continue
        if isinstance(c, str):
            t = c.strip()
            if not t:
                continue
            if first:
                if t[0] not in _TOTAL_START or not _TOTAL.fullmatch(t):
                    return False
                first, label = False, t
            elif t != label and not _COUNT.fullmatch(t):  # the label again: a block merged across columns
                return False
        elif first or isinstance(c, bool) or not isinstance(c, int | float):
            return False
    return not first


def is_footer(cells: Sequence[object]) -> bool:
    """Whether a row under the data is the form's closing line (填表人：…, 审核人：…, 填报单位（盖章）：,
    注：…): its first filled cell is such a label, and it has few filled cells. Called for every
    row: it returns at the first filled cell of a record."""
    filled = 0
    for c in cells:
        if c is None:
            continue
        t = c.strip() if isinstance(c, str) else str(c)
        if not t:
            continue
        if not filled and (t[0] not in _FOOTER_START or not _FOOTER.fullmatch(t)):
            return False
        filled += 1
        if filled > _FOOTER_CELLS:
            return False
    return filled > 0
