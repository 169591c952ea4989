"""The server's and broker's log: the standard ``logging`` module, one line per record on stderr.

Records are events with fields (``log_event(log, "job_end", job=..., client=...)``), written as
text (``2026-12-01T08:00:00.123Z INFO job_end job=a1b2 client=alice state=done``) or, with
``--log-format json``, as one JSON object per line (``time``, ``level``, ``logger``, ``event``,
the fields; ``message`` for plain records; ``exc`` for a traceback). systemd's journal or any log
shipper reads either.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOG_FORMATS = ("text", "json")
_FIELDS = "colorprop_fields"  # the LogRecord attribute that carries an event's fields


def log_event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One event: ``name`` is the message, ``fields`` (None values left out) its data."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: {k: v for k, v in fields.items() if v is not None}})


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def loggable(text: str) -> str:
    """``text`` with every non-printable character (terminal escapes, newlines) written as its Python escape,
    so a client-chosen string cannot forge or colour a log line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _text_value(v: Any) -> str:
    """A field's value on a text line: bare when it is one printable word, else JSON-quoted (which escapes
    control characters too)."""
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
    return json.dumps(s) if (not s or any(c.isspace() or c in '"=' or not c.isprintable() for c in s)) else s


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, _FIELDS, {})
        line = f"{_timestamp(record)} {record.levelname} {loggable(record.getMessage())}"
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname, "logger": record.name}
        if hasattr(record, _FIELDS):
            out["event"] = record.getMessage()
            for k, v in getattr(record, _FIELDS).items():
                out.setdefault(k, v)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send the ``colorprop_server`` loggers to stderr in ``fmt`` ("text" or "json") at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
