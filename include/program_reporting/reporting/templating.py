"""The Jinja2 environment of the pages people read: the validation reports,
their index and the KPI brief.

Templates live in the reporting package's templates/ folder and ship in the
wheel as package data. Autoescaping is on for every template: a value reaches
the page escaped unless the code hands it over as markupsafe.Markup (the
brief's charts, which matplotlib wrote).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jinja2

# Named by package, not by path, so the loader finds the folder wherever this module lives.
TEMPLATE_PACKAGE = "program_reporting.reporting"


def _printable(value: Any) -> Any:
    """What a template prints for a value: nothing for None (an empty cell, not
    "None") and JSON for dicts and lists (observed values, sample rows)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATE_PACKAGE, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the render, never prints blank
        finalize=_printable,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
