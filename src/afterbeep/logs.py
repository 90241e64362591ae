"""Structured logging: key=value or JSON lines; phone numbers masked, secrets never written.

Call sites pass phone numbers through `afterbeep.domain.phone.mask`; as a second line of
defence the formatter masks anything that looks like an E.164 number or a bearer key, writes
URLs as scheme://host[:port]/path (no user:password@, no query, no fragment) and never
writes terminal colour codes (uvicorn's `color_message`, or ANSI escapes from anywhere).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_PHONE = re.compile(r"(?<![\w/])\+?\d[\d\- ]{5,}(\d{4})(?!\w)")
_KEY = re.compile(r"abk_key_[0-9a-z]{26}_[A-Za-z0-9_\-]+")
# A URL: scheme, optional userinfo, host[:port], path, then the query and fragment to drop.
_URL = re.compile(
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?:[^\s/?#@]*@)?(?P<host>[^\s/?#\"'<>]*)"
    r"(?P<path>[^\s?#\"'<>]*)(?:\?[^\s#\"'<>]*)?(?:#[^\s\"'<>]*)?"
)
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
# Left out of every line: uvicorn's coloured copy of its message.
_DROPPED = {"color_message"}
_STANDARD = (
    set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"} | _DROPPED
)


def mask_url(url: str) -> str:
    """`url` as scheme://host[:port]/path: credentials, query and fragment left out."""
    return _URL.sub(lambda m: m["scheme"] + m["host"] + m["path"], url)


def redact(text: str) -> str:
    text = _ANSI.sub("", text)
    text = mask_url(text)
    text = _KEY.sub("abk_key_***", text)
    return _PHONE.sub(lambda m: "***" + m.group(1), text)


class RedactingFormatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                fields[name] = redact(str(value))
        if record.exc_info:
            fields["exc"] = redact(self.formatException(record.exc_info))
        if self.json_lines:
            return json.dumps(fields, ensure_ascii=False)
        extras = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("ts", "level", "logger", "msg"))
        return f"{fields['ts']} {fields['level']:<7} {fields['logger']}: {fields['msg']} {extras}".rstrip()


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(json_lines))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request with its full URL (a webhook's credentials and query).
    for noisy in ("uvicorn.access", "aiosqlite", "botocore", "aiobotocore", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
