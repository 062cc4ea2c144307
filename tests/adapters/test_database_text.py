"""Text as department databases hold it, pulled from the real MariaDB."""

from __future__ import annotations

import pytest
from conftest_values import UNIT
from source_tables import create_and_fill, penalty_db_rows, penalty_table
from sqlalchemy import create_engine, text
from test_database import Recorder, drain, pull_for, records

from node.app import Node


@pytest.mark.parametrize(("charset", "name"), [
    ("utf-8", "杭州市张三餐饮有限公司"),  # a UTF-8 application writing through a latin1 connection
    ("gbk", "杭州市张喆堃餐饮店"),  # 喆 and 堃 are GBK's extension: bytes 0x86 and 0x88
])
def test_chinese_bytes_in_a_mariadb_latin1_column_are_refused_naming_what_they_read(
        dept: Node, mariadb_source_url: str, charset: str, name: str):
    # MariaDB's latin1 is Windows-1252: bytes 0x80-0x9F come as € ž œ ‰ …, past U+00FF, and the
    # check for garbled text looked only at cells within U+0000-U+00FF: the garbled name was
    # stored and signed as the subject's name.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 4, unit=UNIT))
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties MODIFY cf_xdr_mc VARBINARY(400)"))
        conn.execute(text("UPDATE cf_penalties SET cf_xdr_mc = UNHEX(:raw)"),
                     {"raw": name.encode(charset).hex()})
        conn.execute(text("ALTER TABLE cf_penalties MODIFY cf_xdr_mc VARCHAR(400) CHARACTER SET latin1"))
    rec = Recorder(dept)
    pull = pull_for(dept, mariadb_source_url + "?charset=utf8mb4", rec)
    assert drain(pull) == 4
    assert records(dept) == 0
    assert sorted(o.row for o in rec.outcomes if o.outcome == "rejected") == [1, 2, 3, 4]
    for refused in rec.outcomes:
        assert [(p.field, p.code) for p in refused.problems] == [("CF_XDR_MC", "E_FIELD_ENCODING")]
        assert name in refused.problems[0].message and charset.upper() in refused.problems[0].message
    pull.close()
    src.dispose()


@pytest.mark.parametrize("charset", ["utf8", "utf8mb3"])
def test_a_rare_character_outside_the_bmp_survives_a_url_asking_for_mariadbs_3_byte_utf8(
        dept: Node, mariadb_source_url: str, charset: str):
    # 𠀀 and 𡃁 (CJK extension B, in names) have no 3-byte UTF-8 form: a ?charset=utf8 connection,
    # as legacy settings write it, had the server send '?' for each, and '杭州??餐饮有限公司' was
    # stored and signed as the subject's name.
    from test_database import _stored

    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url + "?charset=utf8mb4")
    rows = list(penalty_db_rows(item, 2, unit=UNIT))
    create_and_fill(src, penalty_table(item), rows)
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties MODIFY cf_xdr_mc VARCHAR(200) CHARACTER SET utf8mb4"))
        conn.execute(text("UPDATE cf_penalties SET cf_xdr_mc = '杭州𠀀𡃁餐饮有限公司' WHERE id = 1"))
    pull = pull_for(dept, f"{mariadb_source_url}?charset={charset}")
    assert drain(pull) == 2
    pull.close()
    src.dispose()
    assert _stored(dept)[rows[0]["cf_wsh"]]["CF_XDR_MC"] == "杭州𠀀𡃁餐饮有限公司"
