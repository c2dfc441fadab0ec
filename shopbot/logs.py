"""Structured logging: one JSON object per line (``SHOPBOT_LOG_FORMAT=json``) or plain text.

Call sites pass context as ``extra={"conversation_id": ...}``; those fields land in
the JSON object. Message text and credentials are never logged, only ids.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        return base + ("  " + " ".join(f"{k}={v}" for k, v in extra.items()) if extra else "")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # Celery's "task received" / "task succeeded" lines: two per task, with the
        # arguments; our own log lines carry the conversation and message ids.
        for per_task in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(per_task).setLevel(logging.WARNING)
