"""Failpoints: named places where a fault-injection test can kill the process
(or make it fail there).

A module marks a crash-sensitive place with `failpoints.hit("publish.report_written")`.
When the environment variable PROGRAM_REPORTING_FAILPOINT names that point,
the process sends itself SIGKILL there: no `finally`, no `atexit`, no flush,
exactly what a power cut or the OOM killer does. When the variable is unset
(every real run), `hit` is one dictionary lookup.

    PROGRAM_REPORTING_FAILPOINT=publish.report_written      kill at the first hit
    PROGRAM_REPORTING_FAILPOINT=landing.swap.after#2         kill at the second hit
    PROGRAM_REPORTING_FAILPOINT_MARKER=/some/file            touched just before the
                                                             kill, so a test can tell
                                                             "killed there" from "died
                                                             elsewhere"
    PROGRAM_REPORTING_FAILPOINT_ACTION=error                 instead of killing, raise
                                                             OSError(EIO) at that hit and
                                                             every later one, as a disk
                                                             that fails does: the code's
                                                             own error handling runs

Modules owned by others can also be instrumented from the outside, without
editing them: `instrument(module, "swap", "landing.swap")` wraps the function
so that `landing.swap.before` and `landing.swap.after` are hit around every
call (tests/helpers/fault_runner.py does this in the killed subprocess only).

The idea is the one of TiKV's `fail` crate and FoundationDB's buggify, kept
to the two actions this project needs: die, or fail.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
from pathlib import Path
from typing import Any

ENV = "PROGRAM_REPORTING_FAILPOINT"
MARKER_ENV = "PROGRAM_REPORTING_FAILPOINT_MARKER"
ACTION_ENV = "PROGRAM_REPORTING_FAILPOINT_ACTION"  # "kill" (the default) or "error"

_counts: dict[str, int] = {}


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    name, _, nth = spec.partition("#")
    return name, int(nth or 1)


def hit(name: str) -> None:
    """Kill this process with SIGKILL if `name` is the armed failpoint (and this is its
    n-th hit or a later one); with PROGRAM_REPORTING_FAILPOINT_ACTION=error, raise OSError."""
    if ENV not in os.environ:  # the common case: nothing armed, nothing to do
        return
    armed = _armed()
    if armed is None or armed[0] != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] < armed[1]:
        return
    marker = os.environ.get(MARKER_ENV)
    if marker:
        Path(marker).write_text(f"{name}#{_counts[name]} pid {os.getpid()}\n", encoding="utf-8")
    if os.environ.get(ACTION_ENV, "kill") == "error":
        raise OSError(errno.EIO, f"failpoint {name}#{_counts[name]}: injected I/O error")
    os.kill(os.getpid(), signal.SIGKILL)


def instrument(module: Any, function: str, name: str) -> None:
    """Wrap module.<function> so that `<name>.before` and `<name>.after` are hit around each call."""
    original = getattr(module, function)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        hit(f"{name}.before")
        result = original(*args, **kwargs)
        hit(f"{name}.after")
        return result

    setattr(module, function, wrapper)
