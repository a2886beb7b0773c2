"""The row rules of extracts.md as SQL, one place for each.

Every rule is a SQL boolean over one row of a delivery (all fields still
VARCHAR as delivered, plus `<column>__v`, the typed value when the text is
well formed) and a detail expression saying what was wrong. Landing evaluates
them set-based in DuckDB: a row gets the name of the FIRST rule it breaks, in
the order listed here. Columns, enums and reference data come from
`contract` and `reference`; nothing is retyped here.

Stages:
- "row": needs only the row itself (and the program of a merchants row);
- "set": needs other rows (duplicates in the file, earlier deliveries);
- "merchant": needs the row's merchant (currency, the program's time zone),
  so it runs only once the merchant is known; an unknown merchant makes the
  row an orphan, held rather than quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass

from program_reporting.core import contract

# A UTC offset as extracts.md allows it: Z, or -12:00 to +14:00 (+08:00, +0800 or +08).
# DuckDB would take +25:00 and shift the instant by more than a day.
OFFSET_RE = (
    r"(Z|\+((0\d|1[0-3])(:?[0-5]\d)?|14(:?00)?)"
    r"|-((0\d|1[01])(:?[0-5]\d)?|12(:?00)?))"
)
# ISO 8601 with an offset; seconds and fraction optional.
TIMESTAMP_RE = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?" + OFFSET_RE
DATE_RE = r"\d{4}-\d{2}-\d{2}"
MONTH_RE = r"\d{4}-(0[1-9]|1[0-2])"
AMOUNT_RE = r"-?\d+(\.\d{1,2})?"  # plain decimal, at most 2 places: no exponent, no separators
RATE_RE = r"-?\d+(\.\d{1,6})?"  # DECIMAL(12,6)
INTEGER_RE = r"-?\d{1,18}"

AMOUNT_LIMIT = "1000000000000"  # DECIMAL(14,2): 12 integer digits
RATE_LIMIT = "1000000"  # DECIMAL(12,6): 6 integer digits
MAX_EMPLOYEES = 100_000


@dataclass(frozen=True)
class Rule:
    name: str
    stage: str  # row | set | merchant
    when: str  # SQL: true when the row breaks the rule
    detail: str  # SQL VARCHAR: what exactly was wrong
    doc: str


def q(col: str) -> str:
    """A field quoted for a detail message."""
    return f"'''' || {col} || ''''"


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values) -> str:
    return "[" + ", ".join(sql_str(v) for v in values) + "]"


def typed_expr(col: contract.Column) -> str | None:
    """SQL for the typed value of a column, NULL when the text is not well formed."""
    c = col.name
    if col.type == "date":
        return f"CASE WHEN regexp_full_match({c}, '{DATE_RE}') THEN try_cast({c} AS DATE) END"
    if col.type == "timestamp":
        return f"CASE WHEN regexp_full_match({c}, '{TIMESTAMP_RE}') THEN try_cast({c} AS TIMESTAMPTZ) END"
    if col.type == "decimal" and c == "amount":
        return f"CASE WHEN regexp_full_match({c}, '{AMOUNT_RE}') THEN try_cast({c} AS DECIMAL(38,2)) END"
    if col.type == "decimal":
        return f"CASE WHEN regexp_full_match({c}, '{RATE_RE}') THEN try_cast({c} AS DECIMAL(38,6)) END"
    if col.type == "integer":
        return f"CASE WHEN regexp_full_match({c}, '{INTEGER_RE}') THEN try_cast({c} AS BIGINT) END"
    if col.type == "month":
        return f"CASE WHEN regexp_full_match({c}, '{MONTH_RE}') THEN try_cast({c} || '-01' AS DATE) END"
    return None


def output_expr(col: contract.Column) -> str:
    """SQL for the raw-layer column (architecture.md types) of a row that passed."""
    c = col.name
    if col.type == "decimal" and c == "amount":
        return f"CAST({c}__v AS DECIMAL(14,2)) AS {c}"
    if col.type == "decimal":
        return f"CAST({c}__v AS DECIMAL(12,6)) AS {c}"
    if typed_expr(col) is not None:
        return f"{c}__v AS {c}"
    return c


def _column_rules(col: contract.Column, *, required: bool | None = None) -> list[Rule]:
    """The rules every column carries by its contract type."""
    c = col.name
    rules: list[Rule] = []
    if col.required if required is None else required:
        rules.append(Rule(f"{c}_missing", "row", f"{c} IS NULL", f"'{c} is empty'", f"{c} is empty"))
    if col.max_length:
        rules.append(
            Rule(
                f"{c}_too_long",
                "row",
                f"length({c}) > {col.max_length}",
                f"'{c} has ' || length({c}) || ' characters, more than {col.max_length}'",
                f"{c} longer than {col.max_length} characters",
            )
        )
    if col.enum:
        rules.append(
            Rule(
                f"{c}_invalid",
                "row",
                f"{c} IS NOT NULL AND NOT list_contains({sql_list(col.enum)}, {c})",
                f"'{c} ' || {q(c)} || ' is not one of {', '.join(col.enum)}'",
                f"{c} not one of the contract's values",
            )
        )
    bad = f"{c} IS NOT NULL AND {c}__v IS NULL"
    if col.type == "date":
        rules.append(
            Rule(
                "date_invalid",
                "row",
                bad,
                f"'{c} ' || {q(c)} || ' is not a calendar date YYYY-MM-DD'",
                "a date is not a calendar date YYYY-MM-DD (2020-02-30 is not)",
            )
        )
    elif col.type == "timestamp":
        rules.append(
            Rule(
                "timestamp_invalid",
                "row",
                bad,
                f"'{c} ' || {q(c)} || ' is not an ISO 8601 timestamp with offset'",
                "a timestamp is not ISO 8601 with an offset (Z or +hh:mm) between -12:00 and +14:00; one without offset is invalid",
            )
        )
    elif col.type == "decimal" and c == "amount":
        # A plain decimal with more digits than any DECIMAL holds has no typed
        # value either: it is too large, not invalid (and the control's total counts it).
        plain = f"regexp_full_match({c}, '{AMOUNT_RE}')"
        rules += [
            Rule(
                "amount_invalid",
                "row",
                f"{bad} AND NOT {plain}",
                f"'amount ' || {q(c)} || ' is not a plain decimal with at most 2 places'",
                "amount not a plain decimal with at most 2 places (no exponent, no thousands separator)",
            ),
            Rule("amount_negative", "row", f"{c}__v < 0", f"'amount ' || {q(c)} || ' is negative'", "amount < 0"),
            Rule(
                "amount_too_large",
                "row",
                f"{plain} AND (abs({c}__v) >= {AMOUNT_LIMIT} OR {c}__v IS NULL)",
                f"'amount ' || {q(c)} || ' does not fit decimal(14,2)'",
                "amount does not fit decimal(14,2)",
            ),
        ]
    elif col.type == "decimal":
        rules += [
            Rule(
                "rate_invalid",
                "row",
                f"{bad} OR abs({c}__v) >= {RATE_LIMIT}",
                f"'{c} ' || {q(c)} || ' is not a decimal fraction with at most 6 places'",
                f"{c} not a plain decimal fitting decimal(12,6)",
            ),
            Rule("rate_negative", "row", f"{c}__v < 0", f"'{c} ' || {q(c)} || ' is negative'", f"{c} < 0"),
        ]
    elif col.type == "integer":
        rules.append(
            Rule(f"{c}_invalid", "row", bad, f"'{c} ' || {q(c)} || ' is not an integer'", f"{c} not an integer")
        )
    elif col.type == "month":
        rules.append(
            Rule(
                f"{c}_invalid", "row", bad, f"'{c} ' || {q(c)} || ' is not a month YYYY-MM'", f"{c} not a month YYYY-MM"
            )
        )
    return rules


def _col(source: str, name: str) -> contract.Column:
    return next(c for c in contract.COLUMNS[source] if c.name == name)


def _rules_for(source: str, extra: dict[str, list[Rule]], required: dict[str, bool] | None = None) -> list[Rule]:
    """Column rules in contract column order, each followed by its column's extra rules."""
    out: list[Rule] = []
    for col in contract.COLUMNS[source]:
        out += _column_rules(col, required=(required or {}).get(col.name))
        out += extra.get(col.name, [])
    return out


# --- merchants --------------------------------------------------------------
# Joined per row: p_country, p_ds_end (end of ds in the program's time zone),
# r_known (region of the program's country), _dup_count, _prev_program.
MERCHANT_RULES: list[Rule] = _rules_for(
    "merchants",
    {
        "program_code": [
            Rule(
                "program_unknown",
                "row",
                "program_code IS NOT NULL AND p_country IS NULL",
                "'program_code ' || " + q("program_code") + " || ' is not a known program'",
                "program_code not in the programs reference data",
            )
        ],
        "region": [
            Rule(
                "region_unknown",
                "row",
                "region IS NOT NULL AND p_country IS NOT NULL AND NOT r_known",
                "'region ' || " + q("region") + " || ' is not a region of ' || p_country",
                "region not an ISO 3166-2 region of the program's country",
            )
        ],
    },
) + [
    Rule(
        "registered_after_enrolled",
        "row",
        "registered_on__v > enrolled_on__v",
        "'registered_on ' || registered_on || ' is after enrolled_on ' || enrolled_on",
        "registered_on later than enrolled_on",
    ),
    Rule(
        "enrolled_after_ds",
        "row",
        "enrolled_on__v > _ds",
        "'enrolled_on ' || enrolled_on || ' is after the business date ' || _ds",
        "enrolled_on later than ds",
    ),
    Rule(
        "updated_after_ds_end",
        "row",
        "updated_at__v >= p_ds_end",
        "'updated_at ' || updated_at || ' is after the end of ' || _ds || ' in ' || p_tz",
        "updated_at after the end of ds in the program's time zone",
    ),
    Rule(
        "merchant_id_duplicate_in_file",
        "set",
        "_dup_count > 1",
        "'merchant_id ' || " + q("merchant_id") + " || ' appears on ' || _dup_count || ' rows of this file'",
        "every row sharing its merchant_id with another row of the same file",
    ),
    Rule(
        "merchant_program_changed",
        "set",
        "_prev_program IS NOT NULL AND _prev_program <> program_code",
        "'merchant ' || merchant_id || ' was landed earlier in program ' || _prev_program",
        "a merchant never changes program: a row moving a merchant landed on an earlier ds to another program",
    ),
]

# --- credit_events ----------------------------------------------------------
# Joined per row: _conflict (description of a differing earlier row of the
# same event_id, in this file or an earlier delivery), m_program, m_currency,
# m_ds_end, m_tz.
CREDIT_EVENT_RULES: list[Rule] = _rules_for(
    "credit_events",
    {
        "amount": [
            Rule(
                "amount_not_zero_for_line_closed",
                "row",
                "event_type = 'line_closed' AND amount__v <> 0",
                "'amount ' || amount || ' on line_closed (must be 0)'",
                "amount must be 0 for line_closed",
            )
        ],
        "annual_interest_rate": [
            Rule(
                "rate_missing_for_line_opened",
                "row",
                "event_type = 'line_opened' AND annual_interest_rate IS NULL",
                "'annual_interest_rate is empty on line_opened'",
                "annual_interest_rate required for line_opened",
            )
        ],
        "due_on": [
            Rule(
                "due_on_missing_for_drawdown",
                "row",
                "event_type = 'drawdown' AND due_on IS NULL",
                "'due_on is empty on drawdown'",
                "due_on required for drawdown",
            )
        ],
        "goods_category": [
            Rule(
                "goods_category_missing_for_drawdown",
                "row",
                "event_type = 'drawdown' AND goods_category IS NULL",
                "'goods_category is empty on drawdown'",
                "goods_category required for drawdown",
            )
        ],
    },
) + [
    Rule(
        "event_id_conflict",
        "set",
        "_conflict IS NOT NULL",
        "'event_id ' || " + q("event_id") + " || ' was delivered with different values ' || _conflict",
        "a known event_id with any value different (in this file: the later line; else vs an earlier ds in force)",
    ),
    Rule(
        "currency_not_program_currency",
        "merchant",
        "currency <> m_currency",
        "'currency ' || " + q("currency") + " || ' is not ' || m_currency || ', the currency of ' || m_program",
        "currency not the currency of the merchant's program",
    ),
    Rule(
        "event_at_after_ds_end",
        "merchant",
        "event_at__v >= m_ds_end",
        "'event_at ' || event_at || ' is after the end of ' || _ds || ' in ' || m_tz",
        "event_at after the end of ds in the program's time zone",
    ),
]
# goods_category is "ignored on other event types": its enum is checked on drawdowns only.
for _i, _r in enumerate(CREDIT_EVENT_RULES):
    if _r.name == "goods_category_invalid":
        CREDIT_EVENT_RULES[_i] = Rule(
            _r.name,
            _r.stage,
            f"event_type = 'drawdown' AND {_r.when}",
            _r.detail,
            _r.doc + " (drawdowns only; ignored on other event types)",
        )

# --- employment_reports -----------------------------------------------------
EMPLOYMENT_RULES: list[Rule] = _rules_for(
    "employment_reports",
    {
        "period_month": [
            Rule(
                "period_month_after_ds",
                "row",
                "period_month__v > date_trunc('month', _ds)",
                "'period_month ' || period_month || ' is after the month of ' || _ds",
                "period_month after the month of ds",
            )
        ],
        "employees": [
            Rule(
                "employees_out_of_range",
                "row",
                f"employees__v < 0 OR employees__v >= {MAX_EMPLOYEES}",
                "'employees ' || employees || ' is not in [0, 100000)'",
                "employees < 0 or >= 100,000",
            )
        ],
        "baseline_employees": [
            Rule(
                "baseline_negative",
                "row",
                "baseline_employees__v < 0",
                "'baseline_employees ' || baseline_employees || ' is negative'",
                "baseline_employees < 0",
            )
        ],
    },
) + [
    Rule(
        "report_id_duplicate",
        "set",
        "_conflict IS NOT NULL",
        "'report_id ' || " + q("report_id") + " || ' already delivered ' || _conflict",
        "report_id not unique: every repeat after the first (later line of this file, or any row "
        "whose report_id an earlier ds in force already holds)",
    ),
    Rule(
        "reported_at_after_ds_end",
        "merchant",
        "reported_at__v >= m_ds_end",
        "'reported_at ' || reported_at || ' is after the end of ' || _ds || ' in ' || m_tz",
        "reported_at after the end of ds in the program's time zone",
    ),
]

RULES: dict[str, list[Rule]] = {
    "merchants": MERCHANT_RULES,
    "credit_events": CREDIT_EVENT_RULES,
    "employment_reports": EMPLOYMENT_RULES,
}

# Not row rules of a column, but rule names a quarantined row can carry.
FIELD_COUNT = Rule("field_count", "parse", "", "", "the CSV record has more or fewer fields than the header")
ORPHAN_EXPIRED = Rule(
    "orphan_merchant_unknown",
    "release",
    "",
    "",
    "merchant still unknown 7 days after the row's ds (the orphan was held until then)",
)


def case_sql(rules: list[Rule], stage: str, attr: str = "name") -> str:
    """CASE expression giving the first broken rule's name (or detail) of a stage."""
    arms = [(r.when, sql_str(r.name) if attr == "name" else r.detail) for r in rules if r.stage == stage]
    if not arms:
        return "CAST(NULL AS VARCHAR)"
    return "CASE " + " ".join(f"WHEN {w} THEN {v}" for w, v in arms) + " END"


def detail_sql(rules: list[Rule]) -> str:
    """CASE on the rule name giving the detail; for each name the first matching arm."""
    arms = [f"WHEN _rule = {sql_str(r.name)} AND ({r.when}) THEN {r.detail}" for r in rules]
    return "CASE " + " ".join(arms) + " ELSE _rule END"


def rule_names(source: str | None = None) -> list[str]:
    names: list[str] = []
    for src, rules in RULES.items():
        if source in (None, src):
            for r in rules:
                if r.name not in names:
                    names.append(r.name)
    return names + [FIELD_COUNT.name, ORPHAN_EXPIRED.name]
