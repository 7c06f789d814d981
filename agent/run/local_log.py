"""What `python -m agent local` shows the person at its terminal: log lines to read, not JSON.

The worker logs JSON lines (its production format, `python -m agent start`, unchanged); `local` passes its
output through `readable`, which writes each as `time LEVEL logger message key=value ...`, its traceback
below it, and lets anything else through as it is (a Python warning, a crash). `local`'s own records (the
page's) get the same shape from `ReadableFormatter`. Nothing is added: the fields shown are those the JSON
carries, identities already pseudonymised (agent/telemetry/logs.py); only the process id and the source
location are left out.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

# a JSON line's fields that are not the record's extras: shown otherwise, or not at all
_NOT_EXTRAS = frozenset(
    {
        "message",
        "level",
        "name",
        "timestamp",
        "pid",
        "code.file.path",
        "code.function.name",
        "code.line.number",
        "exc_info",
        "stack_info",
        "identities_hidden",
    }
)
# what every LogRecord has, whatever its extras
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "identities_hidden"}
_COLORS = {"DEBUG": 36, "INFO": 32, "WARNING": 33, "ERROR": 31, "CRITICAL": 31}


def _value(value: Any) -> str:
    """A string as it is (quoted if empty or spaced), anything else as compact JSON."""
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return value if value and " " not in value and "=" not in value else json.dumps(value, ensure_ascii=False)


class ReadableFormatter(logging.Formatter):
    """`2026-01-02 10:00:00,123 INFO agent.web token issued role=listener`: the record's extras as
    `key=value` after its message, the level in colour when `color`."""

    def __init__(self, color: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.color = color

    def formatMessage(self, record: logging.LogRecord) -> str:
        if self.color and record.levelname in _COLORS:
            record = logging.makeLogRecord(record.__dict__)
            record.levelname = f"\033[{_COLORS[record.levelname]}m{record.levelname}\033[0m"
        line = super().formatMessage(record)
        extras = [f"{k}={_value(v)}" for k, v in record.__dict__.items() if k not in _RECORD_FIELDS]
        return " ".join([line, *extras])


def readable(line: str, formatter: logging.Formatter) -> str:
    """A line of the worker's output for a person: a JSON log record formatted by `formatter` (with the
    record's time, level, logger name, extras and traceback), anything else as it is."""
    try:
        fields = json.loads(line)
    except ValueError:
        return line
    if not isinstance(fields, dict) or not isinstance(fields.get("message"), str):
        return line
    level = str(fields.get("level", "INFO"))
    try:
        created = datetime.fromisoformat(str(fields["timestamp"])).timestamp()
    except (KeyError, ValueError):
        created = None
    record = logging.makeLogRecord(
        {k: v for k, v in fields.items() if k not in _NOT_EXTRAS and k not in _RECORD_FIELDS}
    )
    record.name = str(fields.get("name", "?"))
    record.msg = fields["message"]
    record.levelname, record.levelno = level, logging.getLevelNamesMapping().get(level, 0)
    if created is not None:
        record.created, record.msecs = created, created % 1 * 1000
    if exc := fields.get("exc_info"):
        record.exc_text = str(exc)
    if stack := fields.get("stack_info"):
        record.stack_info = str(stack)
    return formatter.format(record)
