"""The concentrator's log output: human lines (the default) or JSON lines on request.

`voltbook-edge --log-format json` (or `VOLTBOOK_LOG_FORMAT=json` in the environment, which the
option overrides) makes every record one JSON object on one line, for a log shipper (Loki,
Vector, journald's JSON export) to read without a parser of its own:

    {"time": "2026-12-06T05:40:01.123Z", "level": "WARNING", "logger": "edge.runtime",
     "message": "cycle overrun …", "process": "MainProcess", "thread": "MainThread"}

with `"exc"` (the traceback as text) when the record carries an exception and `"stack"` when it
carries a stack. Messages are formatted (`%` arguments applied) before encoding; anything the
encoder cannot take is written with `repr`. A copy of `cloud/logs.py` (edge and cloud import
nothing of each other); a test holds the two to the same output.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys

FORMATS = ("text", "json")
ENVIRONMENT = "VOLTBOOK_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
        document: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
            "thread": record.threadName,
        }
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exc"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=repr)


def chosen_format(option: str | None) -> str:
    """The format the option names, else the environment's, else `text`."""
    choice = option or os.environ.get(ENVIRONMENT, "").strip().lower() or "text"
    return choice if choice in FORMATS else "text"


def configure(level: int, log_format: str, text_format: str = TEXT_FORMAT) -> None:
    """Log records of `level` and above to stderr in `log_format` (`text` or `json`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(text_format))
    logging.basicConfig(level=level, handlers=[handler])  # a no-op if the root has handlers
