# SPDX-License-Identifier: Apache-2.0
"""The daemon's log lines: one JSON object per record, with the caller's structured fields."""

from __future__ import annotations

import json
import logging
import sys

from adapter.jsonlog import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("adapter.sessions", logging.WARNING, __file__, 1, "sandbox %s: %s", ("sb-1", "x"), None)
    record.__dict__.update(extra)
    return record


def test_a_record_is_one_json_line_with_its_extra_fields() -> None:
    """Time, level, logger and the formatted message, then every field passed as extra, on one line."""
    line = JsonFormatter().format(_record(event="failure", sandbox="sb-1", generation=7))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "warning",
        "logger": "adapter.sessions",
        "message": "sandbox sb-1: x",
        "event": "failure",
        "sandbox": "sb-1",
        "generation": 7,
    }


def test_an_exception_travels_as_one_field() -> None:
    """A logged exception's traceback is a field of the same line, not lines of its own."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exception"].startswith("Traceback") and entry["exception"].endswith("ValueError: boom")
