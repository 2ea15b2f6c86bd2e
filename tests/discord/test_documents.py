"""Documents on Discord: a file attached to a DM is read and answered through the
same core flow as on Telegram, and a document too large for the model gets the
offer's buttons (a View). simcord stores the attachment on its fake CDN;
discord.py downloads it with `Attachment.read()`."""

from __future__ import annotations

from typing import Any

import discord
import pytest

from tests.discord.conftest import Harness
from tests.discord.test_answers import button, buttons, from_bot
from tests.fakes.llm_server import Reply
from tests.support.documents import pdf, report_pdf


@pytest.fixture(autouse=True)
def short_answers(discord_bot: Harness) -> None:
    # The fake echoes the last user message by default: a whole document, here.
    discord_bot.llm.default = Reply(text="I read it.")


async def _dm_file(
    bot: Harness, user: Any, name: str, data: bytes, caption: str = ""
) -> discord.Message:
    channel = bot.env.backend.get_dm_channel(user.id)
    stored = bot.env.backend.store_attachments(channel.id, [(name, data)])
    return await user.send_dm(caption, attachments=stored)  # type: ignore[no-any-return]


def _last_user_turn(bot: Harness) -> str:
    last = bot.llm.requests[-1].body["messages"][-1]
    assert last["role"] == "user"
    return str(last["content"])


async def test_a_pdf_in_a_dm_is_answered(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    data = pdf([["Invoice 42", "Total due: 310 EUR."]])
    await _dm_file(discord_bot, alice, "invoice.pdf", data, "How much is due?")
    await discord_bot.quiet()
    sent = _last_user_turn(discord_bot)
    assert sent.startswith('<document name="invoice.pdf" pages="1">\n')
    assert "Total due: 310 EUR." in sent and sent.endswith("How much is due?")
    (answer,) = from_bot(alice.dm_channel.history())
    assert answer.content == "I read it."


async def test_a_binary_file_named_txt_gets_a_clear_reply(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    await _dm_file(discord_bot, alice, "notes.txt", b"\x00\x01\x02binary\x00" * 50)
    await discord_bot.quiet()
    (reply,) = from_bot(alice.dm_channel.history())
    assert reply.content.startswith("That file is not text I can read")
    assert discord_bot.llm.requests_count == 0


async def test_a_300_page_pdf_gets_the_offer_and_both_buttons_work(
    discord_bot: Harness,
) -> None:
    alice = discord_bot.env.create_user("alice")
    await _dm_file(discord_bot, alice, "annual.pdf", report_pdf(300, marker="ZEBRA"))
    await discord_bot.quiet()
    (offer,) = from_bot(alice.dm_channel.history())
    assert offer.content.startswith("📎 annual.pdf is too long for GPT-4o mini: about ")
    assert " of 300 pages (" in offer.content
    assert discord_bot.llm.requests_count == 0

    await alice.click(offer, custom_id=button(offer, "oneai:df:"))
    await discord_bot.quiet()
    sent = _last_user_turn(discord_bot)
    assert 'part="only the first ' in sent and "ZEBRA" in sent and "Page 300." not in sent
    assert discord_bot.llm.requests[-1].body["model"] == "openai/gpt-4o-mini"
    shown = next(m for m in alice.dm_channel.history() if m.id == offer.id)
    assert not buttons(shown)  # one way on was taken: the offer's buttons went

    # Again, and this time the larger model.
    await _dm_file(discord_bot, alice, "annual.pdf", report_pdf(300, marker="ZEBRA"))
    await discord_bot.quiet()
    offer = from_bot(alice.dm_channel.history())[-1]
    await alice.click(offer, custom_id=button(offer, "oneai:dm:"))
    await discord_bot.quiet()
    assert discord_bot.llm.requests[-1].body["model"] == "anthropic/claude-3.5-haiku"
    assert "Page 300." in _last_user_turn(discord_bot)
