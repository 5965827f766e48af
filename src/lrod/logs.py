"""Logging: one line per event, plain or JSON, with the event's fields."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the event's
    fields, and the traceback (escaped into the same line) if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            **_fields(record),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["traceback"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v!r}" for k, v in _fields(record).items())
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: "
        line += record.getMessage() + (f" {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class EventLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line carries the same fields (a job's operation,
    job type, attempt and worker); a call's own `extra` adds to them."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def with_fields(logger: logging.Logger, **fields: Any) -> EventLogger:
    return EventLogger(logger, fields)


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic narrates every start at INFO (plugins, the context, each step):
    # lrod says what was applied itself. Its lines come back with DEBUG.
    quiet = logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    logging.getLogger("alembic").setLevel(quiet)
