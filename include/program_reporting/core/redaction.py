"""Personal data: the patterns that recognise it, and the scrubber that keeps
it out of everything the gate writes (reports, Data Docs, alerts, logs).

One place for the rule: the GX suites in expectations/ refer to these
patterns by name (`{"$PARAMETER": "pii_cn_mobile"}`) and the gate passes
them in as suite parameters, so the check and the redaction cannot drift."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

# Patterns for a value that holds personal data somewhere inside a text.
# Digit look-arounds keep a longer number (an amount, an id) from matching.
PII_VALUE_PATTERNS: dict[str, str] = {
    # mainland China mobile number: 11 digits, 1 then 3-9. Not inside a longer
    # token of ASCII letters and digits: a SHA-256 digest in the report index
    # ("...f14324372665a...") holds such a run by chance, and is no phone.
    "cn_mobile": r"(?<![0-9A-Za-z])(?:\+?86[ -]?)?1[3-9]\d{9}(?![0-9A-Za-z])",
    # resident identity card number: 17 digits and a digit or X checksum
    "cn_national_id": r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])",
    # US social security number
    "us_ssn": r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)",
    # US phone number: (802) 555-0134, 802-555-0134, +1 802.555.0134
    "us_phone": r"(?<!\d)(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\d)",
}

# A column whose name says it holds personal data (owner_name, owner_phone,
# owner_national_id of extracts.md, and the obvious relatives).
PII_COLUMN_NAME_PATTERN = (
    r"(?i)(?:owner|phone|mobile|national_id|id_card|idcard|ssn|passport|e_?mail|birth|"
    r"first_name|last_name|full_name|person)"
)

_VALUE_RES = {name: re.compile(p) for name, p in PII_VALUE_PATTERNS.items()}
_COLUMN_RE = re.compile(PII_COLUMN_NAME_PATTERN)


def suite_parameters() -> dict[str, str]:
    """The patterns as GX suite parameters: `pii_<name>` and `pii_column_names`."""
    params = {f"pii_{name}": pattern for name, pattern in PII_VALUE_PATTERNS.items()}
    params["pii_column_names"] = PII_COLUMN_NAME_PATTERN
    return params


def is_pii_column(name: str) -> bool:
    return bool(_COLUMN_RE.search(str(name)))


def redact_text(text: str) -> str:
    """The text with every personal-data match replaced by `[redacted:<kind>]`."""
    for name, rx in _VALUE_RES.items():
        text = rx.sub(f"[redacted:{name}]", text)
    return text


def scrub(value: Any) -> Any:
    """A JSON-safe deep copy of `value` with personal data redacted.

    Dict keys that name a personal-data column lose their value; strings lose
    their matches; numbers that are not finite become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): ("[redacted:column]" if is_pii_column(k) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if hasattr(value, "item"):  # numpy scalars
        try:
            return scrub(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "isoformat"):
        try:
            # pandas turns DATE columns into midnight timestamps: show them as dates
            if (
                getattr(value, "tzinfo", "x") is None
                and hasattr(value, "hour")
                and not (value.hour or value.minute or value.second or value.microsecond)
            ):
                return value.date().isoformat()
            return value.isoformat()
        except (TypeError, ValueError):
            pass
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    return redact_text(str(value))
