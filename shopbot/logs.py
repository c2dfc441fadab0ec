"""Structured logging: one JSON object per line (``SHOPBOT_LOG_FORMAT=json``) or plain text.

Call sites pass context as ``extra={"conversation_id": ...}``; those fields land in
the JSON object. Message text and credentials are never logged, only ids; and
as a second line of defence every line goes through :func:`shopbot.pii.mask`
(phone numbers, e-mail addresses, card-like numbers), all but the id fields.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

from .pii import mask

# Credentials a library may print at DEBUG (python-telegram-bot logs its URLs, which hold the bot token).
SECRET = re.compile(
    r"(?<![\w])(?:bot)?\d{3,15}:[A-Za-z0-9_-]{20,}|xox[a-z]-[A-Za-z0-9-]{6,}|sbt_[0-9a-f]{12}_[\w-]{43}"
)


def redact(text: str) -> str:
    return SECRET.sub("[secret]", mask(text))


# Ids we log on purpose: long digit runs in them (stream ids, chat ids) are not phone or card numbers.
ID_FIELDS = {"conversation_id", "message_id", "update_id", "worker", "event_id", "token_id", "audit_id"}
_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class MaskPersonalData(logging.Filter):
    """Masks personal data and credentials in the message, the exception text and every extra field but the ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for k, v in list(vars(record).items()):
            if k not in _STANDARD and k not in ID_FIELDS and isinstance(v, str):
                setattr(record, k, redact(v))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_text or record.exc_info:
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
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
    handler.addFilter(MaskPersonalData())
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
