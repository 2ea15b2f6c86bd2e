"""Which of Telegram's 400s the sink answers by sending the same text plain."""

from __future__ import annotations

import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMessage

from bot.telegram.sink import entities_refused
from tests.fakes.telegram_server import ENTITIES_REFUSED, NOT_MODIFIED


def _error(description: str) -> TelegramBadRequest:
    return TelegramBadRequest(method=SendMessage(chat_id=1, text="x"), message=description)


@pytest.mark.parametrize(
    "description",
    [
        # Wordings seen from the Bot API (tdlib's LinkManager::check_link, MessageEntity.cpp).
        "Bad Request: entity URL '/etc/app.conf' is invalid: URL host is empty",
        "Bad Request: entity URL '@some_bot' is invalid: Wrong HTTP URL",
        "Bad Request: entity URL 'D:/a.md:1' is invalid: Wrong port number specified in the URL",
        "Bad Request: entity URL 'file:///x' is invalid: Unsupported URL protocol",
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 7",
        "Bad Request: can't parse MessageEntity: Can't find field \"url\"",
        "Bad Request: receive an entity with incorrect offset -1",
        ENTITIES_REFUSED,
    ],
)
def test_refused_entities_are_recognized(description: str) -> None:
    assert entities_refused(_error(description))


@pytest.mark.parametrize(
    "description",
    [
        NOT_MODIFIED,
        "Bad Request: inline keyboard button URL 'http://localhost' is invalid: Wrong HTTP URL",
        "Bad Request: message to edit not found",
        "Bad Request: message is too long",
        "Bad Request: chat not found",
    ],
)
def test_other_refusals_are_not_about_entities(description: str) -> None:
    assert not entities_refused(_error(description))
