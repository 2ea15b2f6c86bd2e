"""Log lines: text for a terminal or one JSON object per line (LOG_FORMAT=json), with
what the current update is about (platform, update, user, conversation) taken from
context variables the platform adapters set, and never a secret.

Redaction happens at the handler, on the finished text of every record (message,
arguments and traceback alike): libraries log URLs (aiogram's and httpx's carry the
bot token in `/bot<token>/`), exceptions may quote request bodies, and none of that
passes through our own code first.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

# What the current update is about; None: not known (or not an update at all).
PLATFORM: contextvars.ContextVar[str | None] = contextvars.ContextVar("platform", default=None)
UPDATE_ID: contextvars.ContextVar[int | str | None] = contextvars.ContextVar(
    "update_id", default=None
)
USER_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("user_id", default=None)
CONVERSATION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conversation_id", default=None
)
_CONTEXT = (
    ("platform", PLATFORM),
    ("update_id", UPDATE_ID),
    ("user_id", USER_ID),
    ("conversation_id", CONVERSATION_ID),
)

REDACTED = "[redacted]"
# Shorter values are not secrets worth the false hits (e.g. a shop id like "1").
_MIN_SECRET = 6
# A Telegram bot token in a Bot API URL, and one standing alone.
_BOT_URL = re.compile(r"/bot[0-9]+:[A-Za-z0-9_-]+")
_BOT_TOKEN = re.compile(r"\b[0-9]{5,}:[A-Za-z0-9_-]{30,}")
# A Discord bot token: three dot-separated base64 parts.
_DISCORD_TOKEN = re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")
# A card number (13-19 digits, maybe grouped); checked with Luhn before it goes.
# Card numbers start with 2-6; Discord ids (17-19 digits) start with 1 for years yet.
_CARD = re.compile(r"\b[2-6][0-9](?:[ -]?[0-9]){11,17}\b")


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[card]" if _luhn(digits) else match.group()


class Redactor:
    """Replaces every configured secret value and anything shaped like a token."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first: a secret that contains another is replaced whole.
        unique = {s for s in secrets if len(s) >= _MIN_SECRET}
        self.secrets = sorted(unique, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "/bot" in text:
            text = _BOT_URL.sub("/bot" + REDACTED, text)
        if ":" in text:
            text = _BOT_TOKEN.sub(REDACTED, text)
        if "." in text:
            text = _DISCORD_TOKEN.sub(REDACTED, text)
        return _CARD.sub(_card, text)


def context_fields() -> dict[str, Any]:
    """The context variables that are set, for one record."""
    fields: dict[str, Any] = {}
    for name, var in _CONTEXT:
        value = var.get()
        if value is not None:
            fields[name] = value
    return fields


class TextFormatter(logging.Formatter):
    """The terminal format, redacted, with the update's context when known."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_fields()
        if fields:
            line += " [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]"
        return self.redactor(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields
    that are known, and the traceback when there is one."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        redact = self.redactor
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(context_fields())
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def secret_values(sections: Iterable[Any]) -> list[str]:
    """Every SecretStr of these settings sections, the password of every URL among
    their strings, and the Basic-auth forms of id/secret pairs that go into headers."""
    found: list[str] = []
    for section in sections:
        values = dict(section)
        secrets = {k: v.get_secret_value() for k, v in values.items() if isinstance(v, SecretStr)}
        found += [v for v in secrets.values() if v]
        for value in values.values():
            if isinstance(value, str) and "://" in value:
                try:
                    password = urlsplit(value).password
                except ValueError:
                    continue
                if password:
                    found += [password, unquote(password)]
        # YooKassa (shop_id:secret_key) and Razorpay (key_id:key_secret) use Basic auth.
        for user_field, secret_field in (("shop_id", "secret_key"), ("key_id", "key_secret")):
            user, secret = values.get(user_field), secrets.get(secret_field)
            if isinstance(user, str) and user and secret:
                found.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return found


def setup_logging(
    level: str,
    fmt: str,
    secrets: Iterable[str],
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """The root logger writes to `handler` (stderr by default) in `fmt` ("text" or
    "json"), redacting `secrets`. Returns the handler."""
    handler = handler or logging.StreamHandler()
    redactor = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if level != "DEBUG":
        # Migration chatter and a line per scheduled job run say nothing an operator
        # needs at INFO; failures still show.
        for noisy in ("alembic", "apscheduler"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
