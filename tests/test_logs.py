"""Log lines: the JSON format, the update's context, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from core import logs
from core.config import LLMSettings, RazorpaySettings, RedisSettings, TelegramSettings
from core.logs import Redactor, secret_values, setup_logging

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger writes here for the test; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    yield out
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_json_lines_carry_the_context_that_is_known(stream: io.StringIO) -> None:
    setup_logging("DEBUG", "json", [], logging.StreamHandler(stream))
    log = logging.getLogger("oneai.test")
    log.info("plain %s", "line")
    tokens = (logs.PLATFORM.set("telegram"), logs.UPDATE_ID.set(77), logs.USER_ID.set(42))
    conversation = logs.CONVERSATION_ID.set("c-1")
    try:
        log.warning("with context")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logs.CONVERSATION_ID.reset(conversation)
        logs.USER_ID.reset(tokens[2])
        logs.UPDATE_ID.reset(tokens[1])
        logs.PLATFORM.reset(tokens[0])
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "INFO"
    assert first["logger"] == "oneai.test"
    assert first["message"] == "plain line"
    assert first["time"].endswith("+00:00")
    assert second["platform"] == "telegram"
    assert second["update_id"] == 77
    assert second["user_id"] == 42
    assert second["conversation_id"] == "c-1"
    assert third["level"] == "ERROR"
    assert "ValueError: boom" in third["exception"]


def test_text_stays_the_default_and_is_redacted_too(stream: io.StringIO) -> None:
    setup_logging("INFO", "text", ["hunter2-secret"], logging.StreamHandler(stream))
    logging.getLogger("x").info("key=%s url=%s", "hunter2-secret", f"/bot{TOKEN}/getMe")
    line = stream.getvalue()
    assert " INFO x: key=[redacted] url=/bot[redacted]/getMe" in line
    assert "hunter2" not in line
    assert TOKEN.split(":")[1] not in line


def test_quieter_libraries_at_info(stream: io.StringIO) -> None:
    setup_logging("INFO", "text", [], logging.StreamHandler(stream))
    assert logging.getLogger("apscheduler.executors.default").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("alembic").getEffectiveLevel() == logging.WARNING


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"POST https://api.telegram.org/bot{TOKEN}/sendMessage", TOKEN),
        (f"token {TOKEN} alone", TOKEN),
        ("Bearer sk-or-v1-abcdefabcdef0123", "sk-or-v1-abcdefabcdef0123"),
        ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
        ("card 5555555555554444", "5555555555554444"),
        (
            "discord MTIzNDU2Nzg5MDEyMzQ1Njc4.GAbCdE.abcdefghijklmnopqrstuvwxyz0123",
            "MTIzNDU2Nzg5MDEyMzQ1Njc4.GAbCdE.abcdefghijklmnopqrstuvwxyz0123",
        ),
    ],
)
def test_the_redactor_hides(text: str, hidden: str) -> None:
    redacted = Redactor(["sk-or-v1-abcdefabcdef0123"])(text)
    assert hidden not in redacted
    assert "[redacted]" in redacted or "[card]" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "user 123456789 pressed 2/3",
        "discord user 1234567890123456789 (a snowflake, not a card)",
        "payment 4111111111111112 is not a valid card number",
        "12:30 at 2026-12-02",
    ],
)
def test_the_redactor_keeps_what_is_not_secret(text: str) -> None:
    assert Redactor(["abc"])(text) == text  # too short to be a secret worth hiding


def test_secret_values_come_from_every_section() -> None:
    sections = [
        LLMSettings.model_validate({"LLM_API_KEY": "llm-key-123456"}),
        TelegramSettings(
            bot_token=SecretStr(TOKEN),
            webhook_url="https://bot.example",
            webhook_secret=SecretStr("hook-secret-1"),
        ),
        RedisSettings(redis_url="redis://:r3dis-pass@cache:6379/0"),
        RazorpaySettings(key_id="rzp_live_X", key_secret=SecretStr("rzp-secret-42")),
    ]
    found = secret_values(sections)
    assert {"llm-key-123456", TOKEN, "hook-secret-1", "r3dis-pass", "rzp-secret-42"} <= set(found)
    # The Basic-auth header form of the Razorpay pair too.
    assert "cnpwX2xpdmVfWDpyenAtc2VjcmV0LTQy" in found
