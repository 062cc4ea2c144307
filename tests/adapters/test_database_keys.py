"""Primary keys as department tables hold them, pulled from the real MariaDB."""

from __future__ import annotations

import datetime as dt

from conftest_values import UNIT
from source_tables import BASE_TIME, create_and_fill, penalty_db_rows, penalty_table
from sqlalchemy import create_engine, text
from test_database import Recorder, drain, pull_for, records

from node.app import Node


def test_a_refused_row_with_an_unsigned_bigint_id_past_2_63_or_id_0_is_kept_and_found_again(
        dept: Node, mariadb_source_url: str):
    # The integer id was the refused row's number as it was: past 2**63 it overflowed the store's
    # BIGINT at the commit, so the batch never committed and every poll failed at it; id 0 is
    # "no row", so that row could not be found again when corrected.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    good = list(penalty_db_rows(item, 4, unit=UNIT))
    create_and_fill(src, penalty_table(item), good)
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties MODIFY id BIGINT UNSIGNED NOT NULL"))
        conn.execute(text("UPDATE cf_penalties SET id = 18446744073709551615, cf_wsh = NULL WHERE id = 1"))
        conn.execute(text("UPDATE cf_penalties SET id = 0, cf_wsh = NULL WHERE id = 2"))
    rec = Recorder(dept)
    pull = pull_for(dept, mariadb_source_url, rec)
    assert drain(pull) == 4
    refused = dept.store.rejections.list_rejections(UNIT)
    assert sorted(r.code for r in refused) == ["E_FIELD_REQUIRED", "E_FIELD_REQUIRED"]
    assert len({r.row for r in refused}) == 2 and all(0 < r.row < 2**63 for r in refused)
    # Corrected, each row is matched to its own rejection, which closes.
    with src.begin() as conn:
        for new_id, old in ((18446744073709551615, good[0]), (0, good[1])):
            conn.execute(text("UPDATE cf_penalties SET cf_wsh = :wsh, updated_at = :at WHERE id = :id"),
                         {"wsh": old["cf_wsh"], "at": BASE_TIME + dt.timedelta(days=1), "id": new_id})
    assert drain(pull) == 2
    assert dept.store.rejections.list_rejections(UNIT) == []
    assert records(dept) == 4
    pull.close()
    src.dispose()
