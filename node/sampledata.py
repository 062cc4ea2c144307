"""Realistic synthetic 双公示 data for the demo, the benchmarks and the tests.

Deterministic for a seed. Identifiers carry correct check characters (GB 32100, GB 11643) so the
data exercises the real validators; a ``bad_every`` knob sprinkles the mistakes departments make.
"""

from __future__ import annotations

import csv
import datetime as dt
import pathlib
import random
from collections.abc import Iterator

from node.catalog import Item
from node.identifiers import make_id_number, make_uscc

_ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂"
_TRADES = ["餐饮管理", "建筑工程", "商贸", "科技", "物流", "食品", "医药连锁", "房地产开发", "环保科技", "机械制造"]
_WFXW = [("未按规定公示年度报告", "《企业信息公示暂行条例》第八条", "警告"),
         ("销售不符合食品安全标准的食品", "《中华人民共和国食品安全法》第一百二十四条", "罚款;没收违法所得"),
         ("未取得许可从事经营活动", "《无证无照经营查处办法》第十三条", "罚款"),
         ("虚假宣传", "《中华人民共和国反不正当竞争法》第二十条", "罚款"),
         ("未按规定进行环境影响评价", "《中华人民共和国环境影响评价法》第三十一条", "责令停产停业;罚款")]


def unit_uscc(division: str, body: str) -> str:
    """A government source unit's USCC (registration authority 1 = 机构编制, type 1 = 机关)."""
    return make_uscc("1", "1", division, body)


def _org_body(rng: random.Random) -> str:
    return "".join(rng.choice(_ORG_ALPHABET) for _ in range(8))


def penalty_rows(n: int, *, source_unit: str, source_name: str = "杭州市上城区市场监督管理局",
                 division: str = "330102", seed: int = 1, bad_every: int = 0,
                 start_no: int = 1) -> Iterator[dict[str, str]]:
    """``n`` 行政处罚 rows keyed by column code (CF_*)."""
    rng = random.Random(seed)
    base = dt.date(2024, 1, 1)
    for i in range(start_no, start_no + n):
        kind = rng.random()
        decided = base + dt.timedelta(days=rng.randrange(0, 600))
        wfxw, yj, cflb = rng.choice(_WFXW)
        row: dict[str, str] = {
            "CF_WSH": f"杭上市监罚〔{decided.year}〕{i}号",
            "CF_WFXW": wfxw,
            "CF_SY": f"经查，当事人{wfxw}，违反了相关规定。案号{i}。",
            "CF_YJ": yj,
            "CF_CFLB": cflb,
            "CF_NR": f"{cflb.replace(';', '并')}，责令改正。",
            "CF_JDRQ": decided.isoformat(),
            "CF_YXQ": (decided + dt.timedelta(days=365)).isoformat(),
            "CF_CFJG": source_name,
            "CF_CFJGDM": source_unit,
            "CF_SJLY": source_name,
            "CF_SJLYDM": source_unit,
        }
        if "罚款" in cflb:
            row["CF_NR_FK"] = f"{rng.randrange(1, 5000) / 100:.2f}"
        if "没收" in cflb:  # required with a confiscation; not drawn from rng, so the rows stay as they were
            row["CF_NR_WFFF"] = f"{i % 97 / 100:.2f}"
        if kind < 0.8:
            row.update(CF_XDR_MC=f"杭州{rng.choice(_TRADES)}{i}有限公司", CF_XDR_LB="法人及非法人组织",
                       CF_XDR_SHXYM=make_uscc("9", "1", division, _org_body(rng)),
                       CF_FRDB=rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN))
        elif kind < 0.9:
            row.update(CF_XDR_MC=f"上城区{rng.choice(_SURNAMES)}记{rng.choice(_TRADES)}店{i}",
                       CF_XDR_LB="个体工商户",
                       CF_XDR_SHXYM=make_uscc("9", "2", division, _org_body(rng)))
        else:
            birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 18000))
            row.update(CF_XDR_MC=rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN),
                       CF_XDR_LB="自然人", CF_XDR_ZJLX="身份证",
                       CF_XDR_ZJHM=make_id_number(division, birth, f"{rng.randrange(0, 1000):03d}"))
        if bad_every and i % bad_every == 0:
            _spoil(row, rng)
        yield row


def _spoil(row: dict[str, str], rng: random.Random) -> None:
    mistake = rng.randrange(4)
    if mistake == 0 and row.get("CF_XDR_SHXYM"):
        code = row["CF_XDR_SHXYM"]
        row["CF_XDR_SHXYM"] = code[:-1] + ("0" if code[-1] != "0" else "1")
    elif mistake == 1:
        row["CF_JDRQ"] = "2024-02-30"
    elif mistake == 2:
        row["CF_WSH"] = ""
    else:
        row["CF_CFLB"] = "批评教育"


def write_csv(path: pathlib.Path, item: Item, rows: Iterator[dict[str, str]], *,
              encoding: str = "utf-8-sig", header: str = "name") -> int:
    """Write rows with the item's Chinese headers (``header='name'``) or column codes."""
    cols = [f.code for f in item.fields]
    n = 0
    with path.open("w", encoding=encoding, newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f.name if header == "name" else f.code for f in item.fields])
        for row in rows:
            w.writerow([row.get(c, "") for c in cols])
            n += 1
    return n
