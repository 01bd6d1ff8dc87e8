"""Structured logging: one JSON object (or a text line) per event.

Only whitelisted fields are written: hookInstance, service id, patient resource id, status,
durations. Tokens, names and clinical values are never passed to the logger.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FIELDS = (
    "hookInstance",
    "service",
    "patient",
    "method",
    "path",
    "status",
    "duration_ms",
    "timings_ms",
    "cards",
    "error",
    "error_type",
)

_MARK = "_besponsa_handler"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__  # type only: values may hold data
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()} {extras}".rstrip()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install one handler on the root logger (idempotent: replaces the one installed before)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    setattr(handler, _MARK, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers propagate to the root handler; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO lines carry query URLs
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter at every start
