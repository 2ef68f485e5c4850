# SPDX-License-Identifier: Apache-2.0
"""The node daemon's logs as JSON lines: one object per record, structured fields included.

A DaemonSet's output is read by machines first (a log collector, `kubectl logs | jq`),
so `kadapter run` writes every logging record as one JSON object on stderr: time,
level, logger, message, and the fields its caller passed as ``extra`` (event,
sandbox, pod, generation, error, ...), which a query can select without parsing
the message. Modules keep logging through the standard `logging` API; only this
formatter knows the output is JSON. stdout stays free for alerts (--print-alerts).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

# What every LogRecord carries: anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's time, level, logger and message, its extra fields, and any exception's traceback."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: int = logging.INFO, stream: TextIO = sys.stderr) -> None:
    """Send every logger's records at level and above to stream, as JSON lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
