"""Simulate the three source systems and write their daily deliveries.

Writes contract-conforming deliveries (../shared/spec/extracts.md) into the
drop folder, one per source and business date:

  <drop>/<source>/ds=YYYY-MM-DD/<source>.csv[.gz]   written first
  <drop>/<source>/ds=YYYY-MM-DD/_control.json        written last (temp file + rename)

What it simulates, per program (default SPARK-2020 and SPRING-THUNDER-2020):
  - merchants enrolling over time; the first delivery of a program is a full
    load of everything enrolled so far, pilots enrolled before launch included;
    later deliveries carry upserts (status active/suspended/exited, region moves);
    a few new merchants reach the registry days after the ledger saw them
    (orphans the warehouse holds and releases);
  - credit lines of up to 100,000 CNY (mostly interest-free), limit changes,
    drawdowns to buy goods with a due date 30-90 days later, repayments (most
    on time, some late, some never: lines go 30 and 90 days past due), write-offs,
    closures; late postings up to 30 days back; the first delivery carries history;
  - monthly employment reports with a December-2019 baseline, and corrections;
  - delivery quirks: some gzipped files, CRLF line ends, a UTF-8 BOM, an unknown
    extra column, shuffled column order, Chinese business names, timestamps in
    +08:00, Z or another offset (also near midnight), header-only days;
  - a small share of contract-breaking rows (--bad-row-share) for quarantine.

Same arguments and seed -> byte-identical files (produced_at is derived from ds).

Examples:
  program-reporting simulate                                 # 2,000 merchants, 2020-06-02 + 7 days
  program-reporting simulate --start 2020-06-02 --days 30 --merchants 100000
  program-reporting simulate --redeliver 2020-06-04          # correct an existing ds (all sources)
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from program_reporting.core import contract, reference
from program_reporting.core.checksums import sha256_file
from program_reporting.core.settings import SOURCES, parse_ds, paths

log = logging.getLogger(__name__)

DEFAULT_START = dt.date(2020, 6, 2)
DEFAULT_PROGRAMS = ("SPARK-2020", "SPRING-THUNDER-2020")
MAX_BAD_ROW_SHARE = 0.04  # a delivery with more than 5% quarantined rows fails whole: stay below
EPOCH = dt.date(1970, 1, 1)
NEVER = 2**30  # a day number that never comes
DAY = 86400
BOM = b"\xef\xbb\xbf"
PILOT_DAYS = 60  # pilots enrol up to this many days before launch
MAX_LIMIT_CENTS = 100_000_00

# --------------------------------------------------------------------------- vocabulary
# Program weights when the defaults are simulated; other programs share equally.
PROGRAM_WEIGHTS = {"SPARK-2020": 3.0, "SPRING-THUNDER-2020": 1.0}

CN_CITIES = {
    "CN-AH": ["合肥", "芜湖", "蚌埠"],
    "CN-BJ": ["北京"],
    "CN-CQ": ["重庆"],
    "CN-FJ": ["福州", "厦门", "泉州"],
    "CN-GD": ["广州", "深圳", "东莞", "佛山", "汕头"],
    "CN-GS": ["兰州", "天水"],
    "CN-GX": ["南宁", "柳州", "桂林"],
    "CN-GZ": ["贵阳", "遵义"],
    "CN-HA": ["郑州", "洛阳", "开封"],
    "CN-HB": ["武汉", "宜昌", "襄阳"],
    "CN-HE": ["石家庄", "保定", "唐山"],
    "CN-HI": ["海口", "三亚"],
    "CN-HL": ["哈尔滨", "齐齐哈尔"],
    "CN-HN": ["长沙", "株洲", "岳阳"],
    "CN-JL": ["长春", "吉林"],
    "CN-JS": ["南京", "苏州", "无锡", "徐州"],
    "CN-JX": ["南昌", "赣州"],
    "CN-LN": ["沈阳", "大连"],
    "CN-NM": ["呼和浩特", "包头"],
    "CN-NX": ["银川"],
    "CN-QH": ["西宁"],
    "CN-SC": ["成都", "绵阳", "南充"],
    "CN-SD": ["济南", "青岛", "烟台", "临沂"],
    "CN-SH": ["上海"],
    "CN-SN": ["西安", "宝鸡"],
    "CN-SX": ["太原", "大同"],
    "CN-TJ": ["天津"],
    "CN-XJ": ["乌鲁木齐", "喀什"],
    "CN-XZ": ["拉萨"],
    "CN-YN": ["昆明", "大理"],
    "CN-ZJ": ["杭州", "宁波", "温州", "义乌"],
}
# Where small shops are: heavier weights for the coastal provinces.
CN_REGION_WEIGHTS = {
    "CN-GD": 14,
    "CN-ZJ": 10,
    "CN-JS": 9,
    "CN-SD": 7,
    "CN-HA": 5,
    "CN-SC": 5,
    "CN-FJ": 5,
    "CN-HB": 4,
    "CN-HN": 4,
    "CN-HE": 4,
    "CN-AH": 3,
    "CN-SH": 3,
    "CN-BJ": 3,
}
# GB/T 2260 province codes: the first two digits of a resident identity card number.
CN_GB_CODES = {
    "CN-BJ": 11,
    "CN-TJ": 12,
    "CN-HE": 13,
    "CN-SX": 14,
    "CN-NM": 15,
    "CN-LN": 21,
    "CN-JL": 22,
    "CN-HL": 23,
    "CN-SH": 31,
    "CN-JS": 32,
    "CN-ZJ": 33,
    "CN-AH": 34,
    "CN-FJ": 35,
    "CN-JX": 36,
    "CN-SD": 37,
    "CN-HA": 41,
    "CN-HB": 42,
    "CN-HN": 43,
    "CN-GD": 44,
    "CN-GX": 45,
    "CN-HI": 46,
    "CN-CQ": 50,
    "CN-SC": 51,
    "CN-GZ": 52,
    "CN-YN": 53,
    "CN-XZ": 54,
    "CN-SN": 61,
    "CN-GS": 62,
    "CN-QH": 63,
    "CN-NX": 64,
    "CN-XJ": 65,
}
CN_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁沈姚卢钟陆汪金石廖贾夏方白邹孟熊秦江薛雷侯龙陶贺顾毛龚万钱严武戴孔汤"
)
CN_GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红玉春梅海燕文斌晓东丹凤鹏飞宁慧琳浩宇欣怡")
CN_BRANDS = [
    "鑫源",
    "福满多",
    "好邻居",
    "惠民",
    "万家乐",
    "兴隆",
    "金泰",
    "利民",
    "百姓",
    "顺发",
    "天天",
    "聚福",
    "旺角",
    "新概念",
    "佳美",
    "永辉",
    "红星",
    "阳光",
    "四季",
    "和顺",
]
CN_SUFFIX = {
    "convenience_store": ["便利店", "小卖部", "便民超市"],
    "street_stall": ["小吃摊", "烧烤摊", "水果摊", "煎饼摊"],
    "grocery": ["杂货铺", "粮油店", "副食店"],
    "restaurant": ["饭馆", "面馆", "小厨", "饺子馆"],
    "retail_shop": ["服装店", "五金店", "文具店", "鞋店"],
    "service": ["理发店", "修车铺", "洗衣店"],
    "exporter": ["贸易有限公司", "进出口有限公司", "制品厂"],
    "other": ["商行", "工作室"],
}
CN_BRANCH = ["", "（一分店）", "（二分店）", "（三分店）", "（总店）"]
CN_PHONE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "177",
    "180",
    "181",
    "182",
    "185",
    "186",
    "187",
    "188",
    "189",
    "199",
]
# A few names that need RFC 4180 quoting (comma, double quote).
QUOTING_SUFFIXES = ["", " (Co., Ltd.)", '\u201c正宗\u201d "老字号"']

EN_SURNAMES = [
    "Smith",
    "Johnson",
    "Garcia",
    "Miller",
    "Davis",
    "Lopez",
    "Wilson",
    "Nguyen",
    "Patel",
    "Kim",
    "O'Brien",
    "Martinez",
    "Anderson",
    "Thomas",
    "Moore",
    "Jackson",
    "Lee",
    "Walker",
    "Young",
    "Hill",
]
EN_GIVEN = ["James", "Mary", "John", "Linda", "Maria", "David", "Susan", "Wei", "Ana", "Ahmed", "Grace", "Luis"]
EN_SUFFIX = {
    "convenience_store": [" Corner Store", " Quick Mart"],
    "street_stall": [" Food Cart", " Stand"],
    "grocery": [" Grocery", " Market"],
    "restaurant": [" Diner", " Kitchen"],
    "retail_shop": [" Hardware", " Boutique"],
    "service": [" Barber Shop", " Auto Repair"],
    "exporter": [" Trading LLC", " Exports Inc."],
    "other": [" & Sons", " Studio"],
}
EN_CITIES = ["Springfield", "Franklin", "Greenville", "Clinton", "Madison", "Salem", "Georgetown", "Fairview"]

RATES = ["0", "0.0185", "0.0275", "0.0365", "0.0435"]  # annual_interest_rate of a line, as delivered
LIMITS_BY_SIZE = {  # CNY
    "micro": [10000, 20000, 30000, 50000],
    "small": [30000, 50000, 80000, 100000],
    "medium": [50000, 80000, 100000],
}
GOODS_WEIGHTS = {
    "food": 25,
    "beverages": 15,
    "daily_necessities": 20,
    "fresh_produce": 15,
    "tobacco_alcohol": 8,
    "household": 10,
    "other": 7,
}
EXPORTER_GOODS_WEIGHTS = {"household": 40, "other": 40, "daily_necessities": 20}
EXIT_WITHIN_90_DAYS = {"micro": 0.22, "small": 0.10, "medium": 0.05}  # see docs/simulator.md
EXTRA_COLUMNS = {
    "merchants": ("data_source", ["registry", "partner_app", "field_agent"]),
    "credit_events": ("channel", ["app", "branch", "partner"]),
    "employment_reports": ("submission_channel", ["app", "web", "paper"]),
}

# Contract-breaking (or tricky) rows injected on purpose. expect: what landing should do with them.
#   quarantine: rejected at landing; held: orphan, held, quarantined after 7 days unless released;
#   duplicate: a harmless repeat of an earlier event (all values equal), counted once.
INJECT_KINDS = {
    "credit_events": [
        "amount_negative",
        "amount_too_many_decimals",
        "event_type_unknown",
        "goods_category_unknown",
        "currency_wrong",
        "event_at_invalid",
        "event_at_after_ds",
        "due_on_invalid",
        "due_on_missing",
        "event_id_too_long",
        "merchant_unknown",
        "event_id_conflict",
        "duplicate_event_same_values",
    ],
    "merchants": [
        "region_unknown",
        "region_other_country",
        "program_unknown",
        "business_type_unknown",
        "size_class_unknown",
        "status_unknown",
        "enrolled_on_invalid",
        "enrolled_on_after_ds",
        "registered_after_enrolled",
        "updated_at_after_ds",
        "merchant_id_too_long",
        "business_name_missing",
        "duplicate_merchant_id",
    ],
    "employment_reports": [
        "employees_too_large",
        "employees_negative",
        "employees_not_integer",
        "baseline_negative",
        "period_month_after_ds",
        "period_month_invalid",
        "verification_status_unknown",
        "reported_at_after_ds",
        "merchant_unknown",
        "report_id_too_long",
    ],
}
PAIRED_KINDS = {"amount_too_many_decimals", "duplicate_merchant_id"}  # injected two rows at a time
EXPECT = {"merchant_unknown": "held", "duplicate_event_same_values": "duplicate"}


# --------------------------------------------------------------------------- small helpers
def _day(d: dt.date) -> int:
    return (d - EPOCH).days


def _date(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _hash(seed: int, salt: int, idx: np.ndarray) -> np.ndarray:
    """A stable pseudo-random uint64 per (seed, salt, index): attributes that never
    change (names, phone numbers) are computed on demand instead of stored."""
    key = _splitmix(np.array([(seed * 1_000_003 + salt) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    return _splitmix(np.asarray(idx).astype(np.uint64) ^ key)


def _below(h: np.ndarray, n: int) -> np.ndarray:
    return (h % np.uint64(n)).astype(np.int64)


def _unit(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _strings(values: Sequence[str | None], codes: np.ndarray) -> pa.Array:
    return pa.array(list(values), pa.string()).take(pa.array(np.asarray(codes, dtype=np.int64)))


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _int_str(values: np.ndarray, width: int = 0) -> pa.Array:
    s = pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())
    return pc.utf8_lpad(s, width=width, padding="0") if width else s


def _money(cents: np.ndarray) -> pa.Array:
    cents = np.asarray(cents, dtype=np.int64)
    return _join(_int_str(cents // 100), ".", _int_str(cents % 100, 2))


def _dates(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    arr = pa.array(np.asarray(days, dtype=np.int32), pa.int32(), mask=null).cast(pa.date32())
    return arr.cast(pa.string())


def _fmt_offset(seconds: int) -> str:
    if seconds == 0:
        return "Z"
    sign = "+" if seconds > 0 else "-"
    m = abs(seconds) // 60
    return f"{sign}{m // 60:02d}:{m % 60:02d}"


@cache
def _utc_offset(tz: str, day: int) -> int:
    noon = dt.datetime.combine(_date(day), dt.time(12), tzinfo=ZoneInfo(tz))
    return int(noon.utcoffset().total_seconds())


def _local_secs(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Seconds after local midnight: mostly business hours, 10% within an hour of
    midnight so that converting to the local date crosses the UTC/+08:00 boundary."""
    secs = np.where(u1 < 0.90, 8 * 3600 + u2 * 14 * 3600, np.where(u1 < 0.95, 23 * 3600 + u2 * 3600, u2 * 3600))
    return np.minimum(secs.astype(np.int64), DAY - 1)


def _render_ts(utc: np.ndarray, local_off: np.ndarray, u: np.ndarray) -> pa.Array:
    """ISO 8601 with offset: 85% in local time (+08:00), 10% in UTC (Z), 5% an
    hour east of local time (+09:00), the same instant every time."""
    code = np.where(u < 0.85, 0, np.where(u < 0.95, 1, 2))
    off = np.where(code == 0, local_off, np.where(code == 1, 0, local_off + 3600)).astype(np.int64)
    wall = pa.array(np.asarray(utc, dtype=np.int64) + off).cast(pa.timestamp("s"))
    text = pc.strftime(wall, format="%Y-%m-%dT%H:%M:%S")
    suffix_values = sorted(set(int(x) for x in np.unique(off)))
    suffix = _strings([_fmt_offset(x) for x in suffix_values], np.searchsorted(suffix_values, off))
    return _join(text, suffix)


def _low_discrepancy(k: int, share: float, u: float) -> bool:
    """True for about share * n of the files 0..n-1, evenly spread, at least one
    as soon as share * n >= 1 (so small test runs still get a gzip file)."""
    return share > 0 and math.floor((k + 1) * share + u) > math.floor(k * share + u)


def _weights(names: Sequence[str], table: dict[str, float], default: float = 1.0) -> np.ndarray:
    w = np.array([table.get(n, default) for n in names], dtype=np.float64)
    return w / w.sum()


def _amount_sum(table: pa.Table) -> Decimal:
    if table.num_rows == 0:
        return Decimal(0)
    total = pc.sum(table["amount"].cast(pa.decimal128(24, 3))).as_py()
    return Decimal(total or 0)


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- one delivery
class _Delivery:
    """One data file being written, then its control file. Chunks are appended
    as the simulation produces them; the control file is written last."""

    def __init__(self, drop: Path, source: str, ds: dt.date, fmt: dict):
        self.source, self.ds, self.fmt = source, ds, fmt
        self.dir = drop / source / f"ds={ds.isoformat()}"
        self.dir.mkdir(parents=True, exist_ok=True)
        # A new delivery of this ds replaces the old: retract the old control file first.
        (self.dir / contract.CONTROL_FILE).unlink(missing_ok=True)
        self.name = contract.data_file_name(source, fmt["gzip"])
        self.tmp = self.dir / f".{self.name}.tmp"
        self._raw = open(self.tmp, "wb")
        self._out = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
            if fmt["gzip"]
            else self._raw
        )
        if fmt["bom"]:
            self._out.write(BOM)
        self.columns: list[str] = fmt["columns"]
        self.rows = 0
        self.amount = Decimal(0)
        self._header = True
        self._options = pacsv.WriteOptions(include_header=True, eol="\r\n" if fmt["crlf"] else "\n")
        self._extra_rng = np.random.default_rng(fmt["extra_seed"])

    def write(self, table: pa.Table) -> None:
        if self.fmt["extra_column"]:
            name, values = EXTRA_COLUMNS[self.source]
            table = table.append_column(
                name, _strings(values, self._extra_rng.integers(0, len(values), table.num_rows))
            )
        buf = io.BytesIO()
        self._options.include_header = self._header
        pacsv.write_csv(table.select(self.columns), buf, self._options)
        self._out.write(buf.getbuffer())
        self._header = False
        self.rows += table.num_rows
        if self.source == "credit_events":
            self.amount += _amount_sum(table)

    def finish(self, produced_at: str) -> dict:
        if self._header:  # a day with no activity: header only
            self.write(_empty_table(self.source))
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        final = self.dir / self.name
        for stale in (contract.data_file_name(self.source, False), contract.data_file_name(self.source, True)):
            if stale != self.name:
                (self.dir / stale).unlink(missing_ok=True)
        os.replace(self.tmp, final)
        control = {
            "source": self.source,
            "ds": self.ds.isoformat(),
            "schema_version": contract.SCHEMA_VERSION,
            "row_count": self.rows,
            "sha256": sha256_file(final),
        }
        if self.source == "credit_events":
            control["amount_total"] = _format_total(self.amount)
        control["produced_at"] = produced_at
        _write_json_atomic(self.dir / contract.CONTROL_FILE, control)
        return control


def _format_total(total: Decimal) -> str:
    return format(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")


def _empty_table(source: str) -> pa.Table:
    return pa.table({c: pa.array([], pa.string()) for c in contract.column_names(source)})


def _produced_at(source: str, ds: dt.date, tz: str, days_after: int = 1) -> str:
    """Deterministic: the night after the business day, a few minutes apart per source."""
    when = dt.datetime.combine(
        ds + dt.timedelta(days=days_after), dt.time(1, 10 * (SOURCES.index(source) + 1)), tzinfo=ZoneInfo(tz)
    )
    return when.isoformat()


# --------------------------------------------------------------------------- the world
class _World:
    def __init__(
        self,
        start: dt.date,
        days: int,
        merchants: int,
        seed: int,
        programs: Sequence[str],
        drop: Path,
        bad_row_share: float,
        gzip_share: float,
        crlf_share: float,
        bom_share: float,
        extra_column_share: float,
        shuffle_share: float,
        late_share: float,
    ):
        known = reference.programs()
        unknown = [p for p in programs if p not in known]
        if unknown:
            raise ValueError(f"unknown program(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if not programs:
            raise ValueError("at least one program is needed")
        self.seed, self.drop = seed, drop
        self.start_day, self.end_day = _day(start), _day(start) + days - 1
        self.days = days
        self.bad_row_share, self.late_share = bad_row_share, late_share
        self.shares = {
            "gzip": gzip_share,
            "crlf": crlf_share,
            "bom": bom_share,
            "extra_column": extra_column_share,
            "shuffle": shuffle_share,
        }
        self.programs = [known[p] for p in programs]
        self.calendar_tz = self.programs[0].time_zone
        P = len(self.programs)
        self.launch = np.array([_day(dt.date.fromisoformat(p.launched_on)) for p in self.programs])
        self.first_day = np.maximum(self.launch, self.start_day)
        live = self.launch <= self.end_day
        self.prog_codes = [p.code for p in self.programs]
        self.currency = [p.currency for p in self.programs]

        # Regions (all programs' countries), cities per region.
        countries = sorted({p.country_code for p in self.programs})
        self.regions: list[str] = []
        for c in countries:
            self.regions += reference.regions_of(c)
        self.region_country = [reference.regions()[r] for r in self.regions]
        cities: list[str] = []
        self.city_off = np.zeros(len(self.regions), np.int64)
        self.city_n = np.zeros(len(self.regions), np.int64)
        for i, r in enumerate(self.regions):
            lst = CN_CITIES.get(r) or EN_CITIES
            self.city_off[i], self.city_n[i] = len(cities), len(lst)
            cities += lst
        self.cities = cities

        rng = np.random.default_rng([seed, 1])
        N = self.N = int(merchants)
        w = np.array([PROGRAM_WEIGHTS.get(p.code, 1.0) for p in self.programs]) * live
        if N and w.sum() == 0:
            raise ValueError(f"none of the programs {', '.join(programs)} has launched by {_date(self.end_day)}")
        w = w / w.sum() if w.sum() else np.full(P, 1.0 / P)
        self.prog = rng.choice(P, N, p=w).astype(np.int8)
        self.prog_country = np.array([p.country_code for p in self.programs])

        # Enrolment: 8% pilots in the 60 days before launch, the rest from launch to the
        # end of the window, front-loaded (a launch-day rush, then a long tail).
        launch = self.launch[self.prog]
        span = np.maximum(self.end_day - launch + 1, 1)
        pilot = rng.random(N) < 0.08
        self.enrol = np.where(
            pilot, launch - 1 - rng.integers(0, PILOT_DAYS, N), launch + np.floor(span * rng.random(N) ** 1.6)
        ).astype(np.int64)

        # Static attributes.
        self.size = rng.choice(3, N, p=[0.70, 0.24, 0.06]).astype(np.int8)
        st = np.array([p.code == "SPRING-THUNDER-2020" for p in self.programs])[self.prog]
        bt_general = rng.choice(
            len(contract.BUSINESS_TYPES),
            N,
            p=_weights(
                contract.BUSINESS_TYPES,
                {
                    "convenience_store": 25,
                    "street_stall": 15,
                    "grocery": 20,
                    "restaurant": 15,
                    "retail_shop": 12,
                    "service": 8,
                    "exporter": 1,
                    "other": 4,
                },
            ),
        )
        bt_export = np.where(
            rng.random(N) < 0.8, contract.BUSINESS_TYPES.index("exporter"), contract.BUSINESS_TYPES.index("retail_shop")
        )
        self.btype = np.where(st, bt_export, bt_general).astype(np.int8)
        self.region = np.zeros(N, np.int16)
        self.new_region = np.zeros(N, np.int16)
        for c in countries:
            members = np.flatnonzero(self.prog_country[self.prog] == c)
            codes = [i for i, r in enumerate(self.regions) if self.region_country[i] == c]
            p = _weights([self.regions[i] for i in codes], CN_REGION_WEIGHTS, 2.0)
            self.region[members] = np.array(codes)[rng.choice(len(codes), len(members), p=p)]
            self.new_region[members] = np.array(codes)[rng.choice(len(codes), len(members), p=p)]

        # Status history: exits (hazard by size), suspensions, moves.
        p90 = np.array([EXIT_WITHIN_90_DAYS[s] for s in contract.SIZE_CLASSES])[self.size]
        hazard = -np.log1p(-p90) / 90.0
        self.exit = (self.enrol + 1 + np.floor(rng.exponential(1.0 / hazard))).astype(np.int64)
        sus = rng.random(N) < 0.04
        self.suspend = np.where(sus, self.enrol + 5 + rng.integers(0, 120, N), NEVER)
        resumes = rng.random(N) < 0.5
        back = self.suspend + 5 + rng.integers(0, 25, N)
        self.resume = np.where(sus & resumes, back, NEVER)
        self.exit = np.where(sus & ~resumes, np.minimum(self.exit, back), self.exit)
        self.suspend = np.where(self.suspend < self.exit, self.suspend, NEVER)
        self.resume = np.where((self.suspend < NEVER) & (self.resume < self.exit), self.resume, NEVER)
        moves = rng.random(N) < 0.01
        self.move = np.where(moves, self.enrol + 10 + rng.integers(0, 170, N), NEVER)
        self.move = np.where(self.move < self.exit, self.move, NEVER)

        # When the registry delivers a merchant: its program's first delivery, or the day
        # it enrols; 1.5% of later enrolments reach the registry 1-5 days late (orphans).
        first = self.first_day[self.prog]
        delay = np.where((self.enrol > first) & (rng.random(N) < 0.015), rng.integers(1, 6, N), 0)
        quiet = np.minimum.reduce([self.suspend, self.exit, self.move]) > self.enrol + delay
        delay = np.where(quiet, delay, 0)
        self.known = np.maximum(self.enrol + delay, first)
        self.delayed = delay > 0

        # Credit lines: one per merchant (line index = merchant index).
        has_line = rng.random(N) < 0.92
        self.open_day = np.where(has_line, self.enrol + rng.geometric(0.4, N) - 1, NEVER)
        self.open_day = np.where(self.open_day < self.exit, self.open_day, NEVER)
        lim = np.zeros(N, np.int64)
        for s, name in enumerate(contract.SIZE_CLASSES):
            m = self.size == s
            lim[m] = np.array(LIMITS_BY_SIZE[name])[rng.integers(0, len(LIMITS_BY_SIZE[name]), m.sum())]
        self.limit = lim * 100
        self.rate = np.where(rng.random(N) < 0.85, 0, rng.integers(1, len(RATES), N)).astype(np.int8)
        lc = rng.random(N) < 0.10
        self.lc_day = np.where(lc, self.open_day + 20 + rng.integers(0, 130, N), NEVER)
        step = rng.choice([-20000_00, -10000_00, 10000_00, 20000_00, 30000_00], N, p=[0.1, 0.15, 0.35, 0.25, 0.15])
        self.new_limit = np.clip(self.limit + step, 5000_00, MAX_LIMIT_CENTS)
        self.p_draw = rng.beta(3.0, 6.0, N).astype(np.float32)  # a restocking purchase every ~3 days
        u = rng.random(N)
        self.lateness = np.where(u < 0.80, 0, np.where(u < 0.95, rng.integers(1, 46, N), rng.integers(60, 151, N)))
        defaults = ((self.exit < NEVER) & (rng.random(N) < 0.35)) | (rng.random(N) < 0.03)
        self.default = np.where(defaults, np.minimum(self.exit, self.open_day + 30 + rng.integers(0, 170, N)), NEVER)
        self.writeoff = np.where(defaults, self.default + 90 + rng.integers(0, 60, N), NEVER)
        # Line state.
        self.outstanding = np.zeros(N, np.int64)
        self.limit_now = self.limit.copy()
        self.is_open = np.zeros(N, bool)
        self.written = np.zeros(N, bool)
        self.queue: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

        # Employment.
        base = np.zeros(N, np.int64)
        for s, (lo, hi) in enumerate([(1, 10), (10, 50), (50, 300)]):
            m = self.size == s
            base[m] = rng.integers(lo, hi, m.sum())
        self.baseline = base
        self.report_dom = rng.integers(1, 21, N)
        enrol_dates = np.asarray(self.enrol, dtype="datetime64[D]")
        months = enrol_dates.astype("datetime64[M]")
        self.enrol_month = months.astype(np.int64) + 1970 * 12  # months since year 0
        self.enrol_dom = (enrol_dates - months).astype(np.int64) + 1
        self.first_report_lag = rng.integers(1, 6, N)
        self.p_report = rng.beta(8.0, 2.0, N).astype(np.float32)
        self.trend = rng.normal(-0.005, 0.03, N).astype(np.float32)

        # Output bookkeeping.
        self.writers: dict[tuple[str, int], _Delivery] = {}
        self.kind_counter = {s: int(rng.integers(0, 100)) for s in SOURCES}
        self.reservoir: dict[str, pa.Table | None] = {s: None for s in SOURCES}
        self.fmt_u = rng.random(5)
        self.summary: dict = {
            "deliveries": {s: {} for s in SOURCES},
            "rows": {s: {} for s in SOURCES},
            "injected": [],
            "orphans_expected": {"credit_events": {}, "employment_reports": {}},
            "late_postings": {},
            "corrections": {},
        }

    # ----------------------------------------------------------------- formats
    def _format(self, source: str, day: int) -> dict:
        k = (day - self.start_day) * len(SOURCES) + SOURCES.index(source)
        fmt = {
            name: _low_discrepancy(k, share, float(self.fmt_u[i]))
            for i, (name, share) in enumerate(self.shares.items())
        }
        cols = contract.column_names(source)
        if fmt["extra_column"]:
            cols = cols + [EXTRA_COLUMNS[source][0]]
        if fmt.pop("shuffle"):
            cols = [cols[i] for i in np.random.default_rng([self.seed, 3, k]).permutation(len(cols))]
        fmt["columns"] = cols
        fmt["extra_seed"] = [self.seed, 4, k]
        return fmt

    def _writer(self, source: str, day: int) -> _Delivery:
        w = self.writers.get((source, day))
        if w is None:
            w = self.writers[(source, day)] = _Delivery(self.drop, source, _date(day), self._format(source, day))
        return w

    # ----------------------------------------------------------------- merchants
    def _status(self, idx: np.ndarray, t: int) -> np.ndarray:
        exited = self.exit[idx] <= t
        suspended = (self.suspend[idx] <= t) & (t < self.resume[idx])
        return np.where(exited, 2, np.where(suspended, 1, 0))

    def _offsets(self, prog: np.ndarray, days: np.ndarray) -> np.ndarray:
        days = np.broadcast_to(np.asarray(days, dtype=np.int64), prog.shape)
        key = prog.astype(np.int64) * (1 << 32) + days
        uniq, inv = np.unique(key, return_inverse=True)
        offs = np.array(
            [_utc_offset(self.programs[int(k >> 32)].time_zone, int(k & 0xFFFFFFFF)) for k in uniq], dtype=np.int64
        )
        return offs[inv] if len(uniq) else np.zeros(0, np.int64)

    def _merchant_ids(self, idx: np.ndarray) -> pa.Array:
        return _join("M", _int_str(idx, 8))

    def merchant_table(self, idx: np.ndarray, t: int) -> pa.Table:
        """The merchants' versions at the end of day t (one row per merchant)."""
        S = self.seed
        n = len(idx)
        prog = self.prog[idx]
        cn = self.prog_country[prog] == "CN"
        btype = self.btype[idx]
        # business name: first part + type suffix + branch + rare characters that need quoting
        firsts_cn = [s + "记" for s in CN_SURNAMES] + ["老" + s for s in CN_SURNAMES] + CN_BRANDS
        firsts_en = [s + "'s" for s in EN_SURNAMES]
        firsts = firsts_cn + firsts_en
        f = np.where(
            cn, _below(_hash(S, 10, idx), len(firsts_cn)), len(firsts_cn) + _below(_hash(S, 10, idx), len(firsts_en))
        )
        suffixes, soff, sn = [], [], []
        for lang in (CN_SUFFIX, EN_SUFFIX):
            for b in contract.BUSINESS_TYPES:
                soff.append(len(suffixes))
                sn.append(len(lang[b]))
                suffixes += lang[b]
        soff, sn = np.array(soff), np.array(sn)
        sk = btype + np.where(cn, 0, len(contract.BUSINESS_TYPES))
        sfx = soff[sk] + _below(_hash(S, 11, idx), 1 << 20) % sn[sk]
        ub = _unit(_hash(S, 12, idx))
        branch = np.where(ub < 0.94, 0, 1 + _below(_hash(S, 13, idx), len(CN_BRANCH) - 1))
        branch = np.where(cn, branch, 0)
        quoting = np.where(ub < 0.993, 0, np.where(ub < 0.997, 1, 2))
        name = _join(
            _strings(firsts, f),
            _strings(suffixes, sfx),
            _strings(CN_BRANCH, branch),
            _strings(QUOTING_SUFFIXES, quoting),
        )
        # owner (personal data: fake but pattern-realistic)
        sur = _below(_hash(S, 20, idx), 1 << 20)
        g1, g2 = _below(_hash(S, 21, idx), len(CN_GIVEN)), _below(_hash(S, 22, idx), len(CN_GIVEN) + 3)
        given2 = CN_GIVEN + ["", "", ""]
        owner_cn = _join(_strings(CN_SURNAMES, sur % len(CN_SURNAMES)), _strings(CN_GIVEN, g1), _strings(given2, g2))
        owner_en = _join(_strings(EN_GIVEN, g1 % len(EN_GIVEN)), " ", _strings(EN_SURNAMES, sur % len(EN_SURNAMES)))
        owner = pc.if_else(pa.array(cn), owner_cn, owner_en)
        hp = _hash(S, 23, idx)
        phone_cn = _join(
            _strings(CN_PHONE_PREFIXES, _below(hp, len(CN_PHONE_PREFIXES))),
            _int_str(_below(hp >> np.uint64(8), 10**8), 8),
        )
        phone_en = _join(
            "(", _int_str(200 + _below(hp, 800)), ") 555-01", _int_str(_below(hp >> np.uint64(16), 100), 2)
        )
        phone = pc.if_else(pa.array(cn), phone_cn, phone_en)
        region = np.where(self.move[idx] <= t, self.new_region[idx], self.region[idx]).astype(np.int64)
        natid = self._national_ids(idx, region, cn)
        nulls = [_unit(_hash(S, 30 + k, idx)) < 0.03 for k in range(3)]
        city = self.city_off[region] + _below(_hash(S, 14, idx * 131 + region), 1 << 20) % self.city_n[region]
        # dates and status
        enrol = self.enrol[idx]
        registered = enrol - 30 - _below(_hash(S, 40, idx), 3650)
        status = self._status(idx, t)
        kinds = [
            (self.enrol[idx], 50),
            (self.suspend[idx], 51),
            (self.resume[idx], 52),
            (self.exit[idx], 53),
            (self.move[idx], 54),
        ]
        upd = np.full(n, -1, np.int64)
        for day, salt in kinds:
            secs = _local_secs(_unit(_hash(S, salt, idx)), _unit(_hash(S, salt + 10, idx)))
            upd = np.where(day <= t, np.maximum(upd, day * DAY + secs), upd)
        local_off = self._offsets(prog, upd // DAY)
        updated_at = _render_ts(upd - local_off, local_off, _unit(_hash(S, 60 + t % 1000, idx)))
        return pa.table(
            {
                "merchant_id": self._merchant_ids(idx),
                "program_code": _strings(self.prog_codes, prog),
                "business_name": name,
                "owner_name": pc.if_else(pa.array(nulls[0]), pa.scalar(None, pa.string()), owner),
                "owner_phone": pc.if_else(pa.array(nulls[1]), pa.scalar(None, pa.string()), phone),
                "owner_national_id": pc.if_else(pa.array(nulls[2]), pa.scalar(None, pa.string()), natid),
                "region": _strings(self.regions, region),
                "city": _strings(self.cities, city),
                "business_type": _strings(contract.BUSINESS_TYPES, btype),
                "size_class": _strings(contract.SIZE_CLASSES, self.size[idx]),
                "registered_on": _dates(registered, _unit(_hash(S, 41, idx)) < 0.10),
                "enrolled_on": _dates(enrol),
                "status": _strings(contract.MERCHANT_STATUSES, status),
                "updated_at": updated_at,
            }
        )

    def _national_ids(self, idx: np.ndarray, region: np.ndarray, cn: np.ndarray) -> pa.Array:
        """18-character resident identity numbers (GB 11643: area, birth date,
        sequence, ISO 7064 MOD 11-2 check character) for CN; SSN-shaped numbers in
        the never-issued 9xx range elsewhere."""
        S = self.seed
        gb = np.array([CN_GB_CODES.get(r, 11) for r in self.regions])[region]
        area = gb * 10000 + 100 + _below(_hash(S, 70, idx), 20) + 1
        birth = np.datetime64("1955-01-01") + _below(_hash(S, 71, idx), 45 * 365).astype("timedelta64[D]")
        y = birth.astype("datetime64[Y]").astype(np.int64) + 1970
        m = birth.astype("datetime64[M]").astype(np.int64) % 12 + 1
        d = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
        body = area * 10**11 + (y * 10000 + m * 100 + d) * 1000 + _below(_hash(S, 72, idx), 1000)
        weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        total = np.zeros(len(idx), np.int64)
        for i, wgt in enumerate(weights):
            total += (body // 10 ** (16 - i)) % 10 * wgt
        check = _strings(list("10X98765432"), total % 11)
        cn_id = _join(_int_str(body, 17), check)
        h = _hash(S, 73, idx)
        us_id = _join(
            _int_str(900 + _below(h, 100), 3),
            "-",
            _int_str(_below(h >> np.uint64(8), 100), 2),
            "-",
            _int_str(_below(h >> np.uint64(16), 10000), 4),
        )
        return pc.if_else(pa.array(cn), cn_id, us_id)

    def merchants_day(self, t: int) -> None:
        changed = (self.suspend == t) | (self.resume == t) | (self.exit == t) | (self.move == t)
        idx = np.flatnonzero((self.known == t) | (changed & (self.known < t)))
        if len(idx) and t >= self.start_day:
            self._deliver("merchants", t, self.merchant_table(idx, t), np.full(len(idx), t))

    # ----------------------------------------------------------------- credit
    def credit_day(self, t: int, rng: np.random.Generator) -> None:
        parts = []  # (lines, type, cents, rate code, due day, goods code)

        def emit(lines, etype, cents, rate=None, due=None, goods=None):
            k = len(lines)
            if k:
                parts.append(
                    (
                        lines,
                        np.full(k, etype, np.int8),
                        cents,
                        np.full(k, -1, np.int64) if rate is None else rate,
                        np.full(k, -1, np.int64) if due is None else due,
                        np.full(k, -1, np.int64) if goods is None else goods,
                    )
                )

        T = contract.EVENT_TYPES.index
        # closures (state at the start of the day): exited merchants, written-off lines
        idx = np.flatnonzero(self.is_open & (self.outstanding == 0) & ((self.exit < t) | self.written))
        self.is_open[idx] = False
        emit(idx, T("line_closed"), np.zeros(len(idx), np.int64))
        # new lines
        idx = np.flatnonzero(self.open_day == t)
        self.is_open[idx] = True
        emit(idx, T("line_opened"), self.limit[idx], rate=self.rate[idx].astype(np.int64))
        # limit changes
        idx = np.flatnonzero((self.lc_day == t) & self.is_open & (t < self.default))
        self.limit_now[idx] = self.new_limit[idx]
        emit(idx, T("limit_changed"), self.new_limit[idx])
        # repayments due today (none once a line has defaulted)
        due = self.queue.pop(t, None)
        if due:
            lines = np.concatenate([d[0] for d in due]).astype(np.int64)
            cents = np.concatenate([d[1] for d in due])
            keep = ~self.written[lines] & (t < self.default[lines])
            lines, cents = lines[keep], cents[keep]
            np.subtract.at(self.outstanding, lines, cents)
            emit(lines, T("repayment"), cents)
        # drawdowns: open lines of active merchants, within the limit
        active = (self.exit > t) & ~((self.suspend <= t) & (t < self.resume))
        cand = np.flatnonzero(self.is_open & (self.open_day < t) & active & (t < self.default))
        cand = cand[rng.random(len(cand)) < self.p_draw[cand]]
        want = np.exp(rng.normal(np.log(1500.0), 0.8, len(cand)))
        cents = np.where(rng.random(len(cand)) < 0.6, np.round(want) * 100, np.round(want * 100)).astype(np.int64)
        avail = self.limit_now[cand] - self.outstanding[cand]
        ok = avail >= 100_00
        cand, cents = cand[ok], np.minimum(cents[ok], avail[ok])
        k = len(cand)
        term = rng.choice([30, 45, 60, 90], k, p=[0.4, 0.2, 0.25, 0.15])
        due_day = t + term
        exporter = self.btype[cand] == contract.BUSINESS_TYPES.index("exporter")
        g_gen = rng.choice(len(contract.GOODS_CATEGORIES), k, p=_weights(contract.GOODS_CATEGORIES, GOODS_WEIGHTS, 0))
        g_exp = rng.choice(
            len(contract.GOODS_CATEGORIES), k, p=_weights(contract.GOODS_CATEGORIES, EXPORTER_GOODS_WEIGHTS, 0)
        )
        self.outstanding[cand] += cents
        emit(cand, T("drawdown"), cents, due=due_day, goods=np.where(exporter, g_exp, g_gen))
        late = self.lateness[cand]
        repay = np.where(
            late == 0, np.maximum(t + 1, due_day - rng.integers(0, 11, k)), due_day + late + rng.integers(-3, 4, k)
        )
        order = np.argsort(repay, kind="stable")
        days_sorted = repay[order]
        uniq, starts = np.unique(days_sorted, return_index=True)
        bounds = list(starts[1:]) + [k]
        for d, a, b in zip(uniq, starts, bounds):
            sel = order[a:b]
            self.queue.setdefault(int(d), []).append((cand[sel].astype(np.int32), cents[sel]))
        # write-offs
        idx = np.flatnonzero((self.writeoff == t) & self.is_open & (self.outstanding > 0))
        emit(idx, T("written_off"), self.outstanding[idx].copy())
        self.outstanding[idx] = 0
        self.written[idx] = True

        if not parts:
            return
        lines, etype, cents, rate, due, goods = (np.concatenate(c) for c in zip(*parts))
        n = len(lines)
        lsec = _local_secs(rng.random(n), rng.random(n))
        order = np.argsort(lsec, kind="stable")
        lines, etype, cents, rate, due, goods, lsec = (a[order] for a in (lines, etype, cents, rate, due, goods, lsec))
        # late postings: some drawdowns and repayments reach the ledger 1-30 days later
        movable = (etype == T("drawdown")) | (etype == T("repayment"))
        lag = np.where(
            movable & (rng.random(n) < self.late_share), np.minimum(30, 1 + np.floor(rng.exponential(4.0, n))), 0
        ).astype(np.int64)
        prog = self.prog[lines]
        record = np.minimum(np.maximum(t + lag, self.first_day[prog]), self.end_day)
        local_off = self._offsets(prog, t)
        ymd = _date(t).strftime("%Y%m%d")
        table = pa.table(
            {
                "event_id": _join(f"CE{ymd}-", _int_str(np.arange(n), 8)),
                "credit_line_id": _join("CL", _int_str(lines, 9)),
                "merchant_id": self._merchant_ids(lines),
                "event_type": _strings(contract.EVENT_TYPES, etype),
                "event_at": _render_ts(t * DAY + lsec - local_off, local_off, rng.random(n)),
                "amount": _money(cents),
                "currency": _strings(self.currency, prog),
                "annual_interest_rate": _strings(RATES + [None], np.where(rate < 0, len(RATES), rate)),
                "due_on": _dates(np.where(due < 0, 0, due), due < 0),
                "goods_category": _strings(
                    list(contract.GOODS_CATEGORIES) + [None], np.where(goods < 0, len(contract.GOODS_CATEGORIES), goods)
                ),
            }
        )
        late = (lag > 0) & (record > np.maximum(t, self.first_day[prog]))  # not history of a first delivery
        if late.any():
            late_by_ds = self.summary["late_postings"]
            for d, c in zip(*np.unique(record[late], return_counts=True)):
                key = _date(d).isoformat()
                late_by_ds[key] = late_by_ds.get(key, 0) + int(c)
        self._deliver("credit_events", t, table, record, merchants=lines)

    # ----------------------------------------------------------------- employment
    def employment_day(self, t: int, rng: np.random.Generator) -> None:
        date = _date(t)
        month = date.year * 12 + date.month - 1  # months since year 0
        period = month - 1
        alive = (self.enrol < t) & (t < self.exit)
        regular = np.flatnonzero(alive & (self.report_dom == date.day))
        regular = regular[rng.random(len(regular)) < self.p_report[regular]]
        # a first report right after enrolling, when no regular report follows the enrolment this month
        first = np.flatnonzero(
            alive
            & (self.enrol + self.first_report_lag == t)
            & (self.enrol_month == month)
            & (self.report_dom <= self.enrol_dom)
        )
        idx = np.concatenate([regular, first])
        n = len(idx)
        if n == 0:
            return
        since_baseline = period - (2019 * 12 + 11)
        factor = 1 + self.trend[idx] * since_baseline + rng.normal(0, 0.05, n)
        employees = np.maximum(0, np.round(self.baseline[idx] * factor)).astype(np.int64)
        verified = rng.random(n) < 0.3
        report_day = np.full(n, t, np.int64)
        # corrections of a report 1-10 days later (same merchant and month, new report_id)
        fix = np.flatnonzero(rng.random(n) < 0.03)
        fix_day = t + rng.integers(1, 11, len(fix))
        keep = fix_day <= self.end_day
        fix, fix_day = fix[keep], fix_day[keep]
        idx = np.concatenate([idx, idx[fix]])
        employees = np.concatenate([employees, np.maximum(0, employees[fix] + rng.choice([-2, -1, 1, 2], len(fix)))])
        verified = np.concatenate([verified, rng.random(len(fix)) < 0.5])
        report_day = np.concatenate([report_day, fix_day])
        m = len(idx)
        prog = self.prog[idx]
        lsec = _local_secs(rng.random(m), rng.random(m))
        local_off = self._offsets(prog, report_day)
        ymd = date.strftime("%Y%m%d")
        pm = f"{period // 12:04d}-{period % 12 + 1:02d}"
        table = pa.table(
            {
                "report_id": _join(f"ER{ymd}-", _int_str(np.arange(m), 8)),
                "merchant_id": self._merchant_ids(idx),
                "period_month": _strings([pm], np.zeros(m, np.int64)),
                "employees": _int_str(employees),
                "baseline_employees": _int_str(self.baseline[idx]),
                "reported_at": _render_ts(report_day * DAY + lsec - local_off, local_off, rng.random(m)),
                "verification_status": _strings(contract.VERIFICATION_STATUSES, verified.astype(np.int64)),
            }
        )
        record = np.maximum(report_day, self.first_day[prog])
        if len(fix):
            corr = self.summary["corrections"]
            for d, c in zip(*np.unique(record[n:], return_counts=True)):
                key = _date(d).isoformat()
                corr[key] = corr.get(key, 0) + int(c)
        self._deliver("employment_reports", t, table, record, merchants=idx)

    # ----------------------------------------------------------------- routing
    def _deliver(
        self, source: str, t: int, table: pa.Table, record: np.ndarray, merchants: np.ndarray | None = None
    ) -> None:
        """Append rows to the delivery of the ds each is recorded on; the rows
        recorded on t itself are the day's own chunk, where bad rows go."""
        record = np.asarray(record, dtype=np.int64)
        order = np.argsort(record, kind="stable")
        uniq, starts = np.unique(record[order], return_index=True)
        bounds = list(starts[1:]) + [len(record)]
        for d, a, b in zip(uniq, starts, bounds):
            d = int(d)
            sel = order[a:b]
            chunk = table.take(pa.array(sel))
            if merchants is not None:
                orphans = int((self.known[merchants[sel]] > d).sum())
                if orphans:
                    book = self.summary["orphans_expected"][source]
                    key = _date(d).isoformat()
                    book[key] = book.get(key, 0) + orphans
            w = self._writer(source, d)
            if d == t:
                clean = chunk
                chunk = self._inject(source, t, chunk, w.rows)
            w.write(chunk)
            if d == t:
                self._remember(source, clean)

    def _remember(self, source: str, chunk: pa.Table) -> None:
        if chunk.num_rows:
            take = min(20, chunk.num_rows)
            self.reservoir[source] = chunk.slice(chunk.num_rows - take, take)

    # ----------------------------------------------------------------- bad rows
    def _inject(self, source: str, t: int, chunk: pa.Table, rows_before: int) -> pa.Table:
        if self.bad_row_share <= 0 or chunk.num_rows == 0:
            return chunk
        rng = np.random.default_rng([self.seed, 7, SOURCES.index(source), t])
        total = rows_before + chunk.num_rows
        cap = int(MAX_BAD_ROW_SHARE * total)
        n = min(int(rng.binomial(total, self.bad_row_share)), cap)
        if n == 0:
            return chunk
        ds = _date(t)
        kinds = INJECT_KINDS[source]
        templates = (
            chunk.to_pylist()
            if chunk.num_rows <= 2000
            else chunk.take(pa.array(rng.choice(chunk.num_rows, 2000, replace=False))).to_pylist()
        )
        if source == "credit_events":  # drawdowns first: the drawdown-only kinds need one
            drawdowns = [r for r in templates if r["event_type"] == "drawdown"]
            templates = drawdowns or templates
        bad: list[dict] = []
        meta: list[tuple[str, str]] = []
        while len(bad) < n:
            kind = kinds[self.kind_counter[source] % len(kinds)]
            self.kind_counter[source] += 1
            if kind in PAIRED_KINDS and len(bad) + 2 > cap:
                continue
            rows = self._bad_rows(source, kind, ds, len(bad), templates, rng)
            if rows is None:
                continue
            bad += rows
            meta += [(kind, EXPECT.get(kind, "quarantine"))] * len(rows)
        m, b = chunk.num_rows, len(bad)
        bad_table = pa.Table.from_pylist(bad, schema=chunk.schema)
        pos = np.sort(rng.choice(m + b, b, replace=False))
        is_bad = np.zeros(m + b, bool)
        is_bad[pos] = True
        order = np.empty(m + b, np.int64)
        order[~is_bad] = np.arange(m)
        order[is_bad] = m + np.arange(b)
        key_col = {"merchants": "merchant_id", "credit_events": "event_id", "employment_reports": "report_id"}[source]
        for p, row, (kind, expect) in zip(pos, bad, meta):
            self.summary["injected"].append(
                {
                    "source": source,
                    "ds": ds.isoformat(),
                    "kind": kind,
                    "expect": expect,
                    "key": row[key_col],
                    "line": int(rows_before + p + 2),
                }
            )
        return pa.concat_tables([chunk, bad_table]).take(pa.array(order))

    def _bad_rows(
        self, source: str, kind: str, ds: dt.date, k: int, templates: list[dict], rng: np.random.Generator
    ) -> list[dict] | None:
        ymd = ds.strftime("%Y%m%d")
        next_day = (ds + dt.timedelta(days=1)).isoformat()
        nxt_month = dt.date(ds.year + ds.month // 12, ds.month % 12 + 1, 1)
        tpl = dict(templates[int(rng.integers(0, len(templates)))])
        if source == "credit_events":
            tpl["event_id"] = f"CE{ymd}-X{k:06d}"
            is_draw = tpl["event_type"] == "drawdown"
            amount = Decimal(tpl["amount"]) or Decimal("1.00")
            if kind == "amount_negative":
                tpl["amount"] = f"-{amount}"
            elif kind == "amount_too_many_decimals":
                # two rows whose third decimals add up to .010: the control total stays exact
                second = dict(tpl, event_id=f"CE{ymd}-X{k + 1:06d}", amount=f"{amount}5")
                tpl["amount"] = f"{amount}5"
                return [tpl, second]
            elif kind == "event_type_unknown":
                tpl["event_type"] = "line_frozen"
            elif kind == "goods_category_unknown" and is_draw:
                tpl["goods_category"] = "electronics"
            elif kind == "currency_wrong":
                tpl["currency"] = "EUR" if tpl["currency"] != "EUR" else "CNY"
            elif kind == "event_at_invalid":
                tpl["event_at"] = f"{ds.year}-02-30T10:15:00+08:00"
            elif kind == "event_at_after_ds":
                tpl["event_at"] = f"{next_day}T10:15:00+08:00"
            elif kind == "due_on_invalid" and is_draw:
                tpl["due_on"] = f"{ds.year}-06-31"
            elif kind == "due_on_missing" and is_draw:
                tpl["due_on"] = None
            elif kind == "event_id_too_long":
                tpl["event_id"] = f"CE{ymd}-X{k:06d}-" + "9" * 30
            elif kind == "merchant_unknown":
                tpl["merchant_id"] = f"MX{int(rng.integers(0, 10**8)):08d}"
                tpl["credit_line_id"] = "CLX" + tpl["merchant_id"][2:]
            elif kind in ("event_id_conflict", "duplicate_event_same_values"):
                earlier = self.reservoir[source]
                if earlier is None or earlier.num_rows == 0:
                    return None
                tpl = earlier.slice(int(rng.integers(0, earlier.num_rows)), 1).to_pylist()[0]
                if kind == "event_id_conflict":
                    tpl["amount"] = str(Decimal(tpl["amount"]) + Decimal("1.00"))
            else:
                return None  # drawdown-only kind without a drawdown to copy
            return [tpl]
        if source == "merchants":
            tpl["merchant_id"] = f"MQ{ymd}{k:06d}"
            if kind == "region_unknown":
                tpl["region"] = "CN-XX"
            elif kind == "region_other_country":
                tpl["region"] = "US-VT" if not tpl["region"].startswith("US-") else "CN-GD"
            elif kind == "program_unknown":
                tpl["program_code"] = "SPARK-2019"
            elif kind == "business_type_unknown":
                tpl["business_type"] = "supermarket"
            elif kind == "size_class_unknown":
                tpl["size_class"] = "large"
            elif kind == "status_unknown":
                tpl["status"] = "closed"
            elif kind == "enrolled_on_invalid":
                tpl["enrolled_on"] = f"{ds.year}-02-30"
            elif kind == "enrolled_on_after_ds":
                tpl["enrolled_on"] = (ds + dt.timedelta(days=5)).isoformat()
            elif kind == "registered_after_enrolled":
                tpl["registered_on"] = (dt.date.fromisoformat(tpl["enrolled_on"]) + dt.timedelta(days=3)).isoformat()
            elif kind == "updated_at_after_ds":
                tpl["updated_at"] = f"{next_day}T09:00:00+08:00"
            elif kind == "merchant_id_too_long":
                tpl["merchant_id"] = f"MQ{ymd}{k:06d}-" + "7" * 24
            elif kind == "business_name_missing":
                tpl["business_name"] = None
            elif kind == "duplicate_merchant_id":
                return [tpl, dict(tpl)]
            return [tpl]
        # employment_reports
        tpl["report_id"] = f"ER{ymd}-X{k:06d}"
        if kind == "employees_too_large":
            tpl["employees"] = str(100000 + int(rng.integers(0, 900000)))
        elif kind == "employees_negative":
            tpl["employees"] = "-3"
        elif kind == "employees_not_integer":
            tpl["employees"] = "3.5"
        elif kind == "baseline_negative":
            tpl["baseline_employees"] = "-1"
        elif kind == "period_month_after_ds":
            tpl["period_month"] = f"{nxt_month.year:04d}-{nxt_month.month:02d}"
        elif kind == "period_month_invalid":
            tpl["period_month"] = f"{ds.year:04d}-13"
        elif kind == "verification_status_unknown":
            tpl["verification_status"] = "audited"
        elif kind == "reported_at_after_ds":
            tpl["reported_at"] = f"{next_day}T09:00:00+08:00"
        elif kind == "merchant_unknown":
            tpl["merchant_id"] = f"MX{int(rng.integers(0, 10**8)):08d}"
        elif kind == "report_id_too_long":
            tpl["report_id"] = f"ER{ymd}-X{k:06d}-" + "8" * 30
        return [tpl]

    # ----------------------------------------------------------------- the run
    def finish_day(self, t: int) -> dict:
        counts = {}
        for source in SOURCES:
            w = self._writer(source, t)
            del self.writers[(source, t)]
            control = w.finish(_produced_at(source, w.ds, self.calendar_tz))
            ds = w.ds.isoformat()
            rel = (w.dir / w.name).relative_to(self.drop).as_posix()
            self.summary["rows"][source][ds] = w.rows
            self.summary["deliveries"][source][ds] = {
                "file": rel,
                "rows": w.rows,
                "gzip": w.fmt["gzip"],
                "crlf": w.fmt["crlf"],
                "bom": w.fmt["bom"],
                "extra_columns": [c for c in w.columns if c not in contract.column_names(source)],
                "columns": list(w.columns),
                "sha256": control["sha256"],
                "amount_total": control.get("amount_total"),
            }
            counts[source] = w.rows
        return counts

    def run(self, progress: bool = True) -> None:
        first = min(int(self.enrol.min()) if self.N else self.start_day, self.start_day)
        began = time.monotonic()
        for t in range(first, self.end_day + 1):
            rng = np.random.default_rng([self.seed, 2, t])
            self.merchants_day(t)
            self.credit_day(t, rng)
            self.employment_day(t, rng)
            if t >= self.start_day:
                counts = self.finish_day(t)
                if progress:
                    log.info(
                        "ds=%s delivered: %s (%.1f s)",
                        _date(t).isoformat(),
                        ", ".join(f"{s} {c:,}" for s, c in counts.items()),
                        time.monotonic() - began,
                    )
        leftover = sorted(self.writers)
        if leftover:  # cannot happen: records are clamped to the window
            raise RuntimeError(f"deliveries left open after the window: {leftover}")


# --------------------------------------------------------------------------- public API
def simulate(
    start: dt.date | str = DEFAULT_START,
    days: int = 7,
    merchants: int = 2000,
    seed: int = 42,
    drop: Path | str | None = None,
    programs: Sequence[str] = DEFAULT_PROGRAMS,
    bad_row_share: float = 0.002,
    gzip_share: float = 0.15,
    crlf_share: float = 0.15,
    bom_share: float = 0.05,
    extra_column_share: float = 0.05,
    shuffle_share: float = 0.10,
    late_share: float = 0.03,
    redeliver: Iterable[str] = (),
    progress: bool = True,
) -> dict:
    """Write `days` daily deliveries of the three sources from `start` into `drop`
    (default: the PROGRAM_REPORTING_DROP setting). Returns a JSON-serialisable summary:

    - rows[source][ds]: data rows delivered; deliveries[source][ds]: file, format, sha256...
    - injected: every contract-breaking (or tricky) row written on purpose, with source,
      ds, kind, expect ("quarantine", "held" or "duplicate"), key (its id) and line
      (CSV record number, header = 1);
    - orphans_expected[source][ds]: rows whose merchant reaches the registry in a later
      ds (held, then released); late_postings[ds]: credit events posted after their day;
      corrections[ds]: employment reports correcting an earlier one;
    - redelivered: the corrections applied by `redeliver` (ds strings), if any.
    """
    start = parse_ds(start) if isinstance(start, str) else start
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    if merchants < 0:
        raise ValueError(f"merchants must not be negative, not {merchants}")
    if not 0 <= bad_row_share <= MAX_BAD_ROW_SHARE:
        raise ValueError(
            f"bad_row_share must be between 0 and {MAX_BAD_ROW_SHARE} (a delivery with more than "
            f"5% quarantined rows fails whole), not {bad_row_share}"
        )
    for name, share in (
        ("gzip_share", gzip_share),
        ("crlf_share", crlf_share),
        ("bom_share", bom_share),
        ("extra_column_share", extra_column_share),
        ("shuffle_share", shuffle_share),
        ("late_share", late_share),
    ):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be between 0 and 1, not {share}")
    drop = Path(drop) if drop is not None else paths().drop
    drop.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    world = _World(
        start,
        days,
        merchants,
        seed,
        list(programs),
        drop,
        bad_row_share,
        gzip_share,
        crlf_share,
        bom_share,
        extra_column_share,
        shuffle_share,
        late_share,
    )
    log.info(
        "simulating %s merchants, %s..%s, seed %s, into %s",
        f"{merchants:,}",
        start.isoformat(),
        _date(world.end_day).isoformat(),
        seed,
        drop,
    )
    world.run(progress)
    summary = world.summary
    summary.update(
        {
            "start": start.isoformat(),
            "end": _date(world.end_day).isoformat(),
            "days": days,
            "merchants": merchants,
            "seed": seed,
            "drop": str(drop),
            "programs": {
                p.code: {
                    "merchants": int((world.prog == i).sum()),
                    "launched_on": p.launched_on,
                    "first_ds": _date(world.first_day[i]).isoformat() if world.first_day[i] <= world.end_day else None,
                    "enrolled_by_end": int(((world.prog == i) & (world.enrol <= world.end_day)).sum()),
                }
                for i, p in enumerate(world.programs)
            },
            "delayed_merchants": int((world.delayed & (world.known <= world.end_day)).sum()),
            "redelivered": [],
        }
    )
    for ds in redeliver:
        for source in SOURCES:
            summary["redelivered"].append(redeliver_ds(source, ds, drop=drop, seed=seed))
    summary["seconds"] = round(time.monotonic() - began, 3)
    return summary


def read_delivery(source: str, ds: str, drop: Path | str | None = None) -> tuple[pa.Table, dict]:
    """Read a delivered data file as all-string columns (empty field = null).
    Returns the table and its format: path, gzip, bom, crlf, columns (header order)."""
    parse_ds(ds)
    drop = Path(drop) if drop is not None else paths().drop
    folder = drop / source / f"ds={ds}"
    files = [folder / contract.data_file_name(source, gz) for gz in (False, True)]
    files = [f for f in files if f.exists()]
    if not files:
        raise FileNotFoundError(f"no {source} delivery for ds={ds} in {folder}")
    path = files[0]
    data = path.read_bytes()
    gz = path.name.endswith(".gz")
    if gz:
        data = gzip.decompress(data)
    bom = data.startswith(BOM)
    if bom:
        data = data[len(BOM) :]
    first_line = data.split(b"\n", 1)[0]
    crlf = first_line.endswith(b"\r")
    columns = next(csv.reader([first_line.decode("utf-8").rstrip("\r")]))
    table = pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )
    return table, {"path": path, "gzip": gz, "bom": bom, "crlf": crlf, "columns": columns}


def redeliver_ds(
    source: str,
    ds: str,
    drop: Path | str | None = None,
    seed: int = 42,
    share: float = 0.01,
    produced_at: str | None = None,
) -> dict:
    """Deliver `ds` of `source` again as a correction of the delivery already in the
    drop folder: about `share` of its rows change (credit_events: drawdown amounts
    corrected to 90%; merchants: business names corrected; employment_reports:
    headcounts corrected by one), everything else is kept. The old control file is
    removed first and the new one written last. Returns what changed."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    drop = Path(drop) if drop is not None else paths().drop
    table, fmt = read_delivery(source, ds, drop)
    rng = np.random.default_rng([seed, 9, SOURCES.index(source), _day(parse_ds(ds))])
    rows = table.to_pylist() if table.num_rows else []
    changed: list[str] = []
    if source == "credit_events":
        cands = [i for i, r in enumerate(rows) if r.get("event_type") == "drawdown"]
    elif source == "merchants":
        cands = [i for i, r in enumerate(rows) if r.get("business_name")]
    else:
        cands = [i for i, r in enumerate(rows) if (r.get("employees") or "").isdigit()]
    if cands:
        pick = rng.choice(len(cands), max(1, round(share * len(cands))), replace=False)
        key = {"merchants": "merchant_id", "credit_events": "event_id", "employment_reports": "report_id"}[source]
        for j in sorted(pick):
            r = rows[cands[j]]
            if source == "credit_events":
                try:
                    r["amount"] = _format_total(Decimal(r["amount"]) * Decimal("0.9"))
                except ArithmeticError:
                    continue
            elif source == "merchants":
                r["business_name"] = r["business_name"] + "（更正）"
            else:
                r["employees"] = str(int(r["employees"]) + 1)
            changed.append(r[key])
    out = pa.Table.from_pylist(rows, schema=table.schema) if rows else table
    when = produced_at or _produced_at(
        source, parse_ds(ds), reference.programs()[DEFAULT_PROGRAMS[0]].time_zone, days_after=2
    )
    w = _Delivery(
        drop,
        source,
        parse_ds(ds),
        {
            "gzip": fmt["gzip"],
            "bom": fmt["bom"],
            "crlf": fmt["crlf"],
            "extra_column": False,
            "columns": fmt["columns"],
            "extra_seed": [seed],
        },
    )
    w.write(out)
    control = w.finish(when)
    log.info("redelivered %s ds=%s: %d of %d rows corrected", source, ds, len(changed), table.num_rows)
    return {"source": source, "ds": ds, "changed_keys": changed, "control": control}
