"""Structured logs: one JSON object a line (or plain text for a terminal), each carrying
the id of the request it belongs to, so one push can be followed from the gateway into
the node that stored it."""

from __future__ import annotations

import json
import logging
import sys
import time

from node.request_id import REQUEST_ID

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            event["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in ("request_id", "message"):
                event[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return json.dumps(event, separators=(",", ":"))


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
