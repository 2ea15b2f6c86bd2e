"""Web search on Discord under simcord: /search asks with OpenRouter's web plugin
and the sources come as numbered masked links without embeds; the /settings toggle
makes the next DM search; a server without search says so."""

from __future__ import annotations

import discord
from sqlalchemy import select

from core.db.models import ChatMessage
from tests.discord.conftest import Harness
from tests.fakes.llm_server import Reply, url_citation

WEB = [{"id": "web"}]


def _search_on(bot: Harness) -> None:
    """Web search offered, as on OpenRouter (the fake stands in for it)."""
    bot.services.settings.llm.web_search = "on"
    bot.services.chat.planner.web_search = True


def _answers(history: list[discord.Message]) -> list[str]:
    return [m.content for m in sorted(history, key=lambda m: m.id) if m.author.bot]


async def test_search_in_a_dm_lists_its_sources_as_links(discord_bot: Harness) -> None:
    _search_on(discord_bot)
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(
        Reply(
            text="Python 3.13 has a JIT.",
            annotations=[
                url_citation("https://docs.python.org/3.13/whatsnew/", "What's *New*"),
                url_citation("javascript:alert(1)", "evil"),
                url_citation("https://peps.python.org/pep-0744/", "PEP 744"),
                url_citation("https://docs.python.org/3.13/whatsnew/", "duplicate"),
            ],
        )
    )
    result = await alice.slash("search", question="what is new in Python 3.13")
    assert result.response is not None and "what is new in Python 3.13" in result.response.content
    await discord_bot.quiet()
    assert discord_bot.llm.requests[0].body["plugins"] == WEB
    answer = _answers(alice.dm_channel.history())[-1]
    assert answer == (
        "Python 3.13 has a JIT.\n\n"
        "[1] [What's \\*New\\*](<https://docs.python.org/3.13/whatsnew/>)\n"
        "[2] [PEP 744](<https://peps.python.org/pep-0744/>)"
    )
    async with discord_bot.services.db.read() as session:
        row = (
            await session.scalars(select(ChatMessage).where(ChatMessage.role == "assistant"))
        ).one()
    assert row.quota_key == "web_search"
    assert len(row.meta["citations"]) == 2


async def test_the_settings_toggle_makes_the_next_dm_search(discord_bot: Harness) -> None:
    _search_on(discord_bot)
    env = discord_bot.env
    alice = env.create_user("alice")
    discord_bot.llm.script(Reply(text="hi"), Reply(text="searched"))
    await alice.send_dm("hello")
    await discord_bot.quiet()
    shown = await alice.slash("settings")
    assert shown.response is not None
    ids = [
        str(component.get("custom_id", ""))
        for row in shown.response.components
        for component in row["components"]
    ]
    toggle = next(i for i in ids if i.startswith("oneai:st:w:"))
    switched = await alice.click(shown.response.message, custom_id=toggle)
    assert switched.response is not None and "searches the web" in switched.response.content
    await alice.send_dm("and now?")
    await discord_bot.quiet()
    assert "plugins" not in discord_bot.llm.requests[0].body
    assert discord_bot.llm.requests[1].body["plugins"] == WEB


async def test_search_where_the_server_has_none_is_refused(discord_bot: Harness) -> None:
    alice = discord_bot.env.create_user("alice")
    refused = await alice.slash("search", question="anything")
    assert refused.ephemeral and refused.response is not None
    assert refused.response.content == "Web search is not available on this server."
    assert discord_bot.llm.requests_count == 0
