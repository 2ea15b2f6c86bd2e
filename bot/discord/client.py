"""The bot client: discord.py's sharded `commands.AutoShardedBot` with our cogs,
persistent buttons and slash commands, holding the services it serves."""

from __future__ import annotations

import logging
from typing import Any, TypedDict

import discord
from discord.ext import commands

from bot.discord.buttons import DYNAMIC_ITEMS
from bot.discord.chat import DiscordAnswers
from bot.discord.notices import DiscordNotices
from bot.discord.voice import TranscriptEditButton
from core.config import DiscordSettings
from core.flood import FloodGuard
from core.services import Services
from core.streaming import RateLimiter, StreamDriver
from payments.service import Payments

log = logging.getLogger(__name__)


def intents() -> discord.Intents:
    """DMs, server messages and their content (a privileged intent: enable
    "Message Content Intent" for the bot in the Developer Portal)."""
    chosen = discord.Intents.default()
    chosen.message_content = True
    return chosen


class _Shards(TypedDict, total=False):
    shard_count: int
    shard_ids: list[int]


def shard_options(settings: DiscordSettings) -> _Shards:
    """The shard settings discord.py is given: only those that are set (without a
    count it asks Discord for the recommended one; without ids it runs them all)."""
    options = _Shards()
    if settings.shard_count is not None:
        options["shard_count"] = settings.shard_count
    if settings.shard_ids:
        options["shard_ids"] = list(settings.shard_ids)
    return options


_OWN_EVENTS = frozenset({"message", "raw_message_edit"})


def _author_id(event: object) -> int | None:
    """Who wrote the message of a `message` or `raw_message_edit` event."""
    if isinstance(event, discord.Message):
        return event.author.id
    if isinstance(event, discord.RawMessageUpdateEvent):
        author = event.data.get("author") or {}
        try:
            return int(author.get("id", 0)) or None
        except (TypeError, ValueError):
            return None
    return None


class OneAIBot(commands.AutoShardedBot):
    def __init__(self, services: Services, *, payments: Payments | None = None) -> None:
        super().__init__(
            # No prefix commands: everything is a slash command or a message.
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents(),
            # Neither the model nor a quoted prompt may ping @everyone or anyone.
            allowed_mentions=discord.AllowedMentions.none(),
            # No cache of messages: what a message shows is in the database, and the
            # edit handler reads the raw event. A cache would hold 1,000 messages and
            # scan them at every edit the bot makes of its answers.
            max_messages=None,
            **shard_options(services.settings.discord),
        )
        # Shards whose session is up (identified and past their guilds, or resumed).
        self._live_shards: set[int] = set()
        self.services = services
        self.payments = payments or Payments.build(services)
        self._own_payments = payments is None
        settings = services.settings.discord
        # No burst: calls are spread evenly within the global budget.
        self.driver = StreamDriver(
            global_limiter=RateLimiter(settings.global_edits_per_second, burst=1)
        )
        self.answers = DiscordAnswers(self, services, self.driver)
        # Plan changes and cut answers reach people from the outbox while the bot runs.
        self.notices = DiscordNotices(self, services, self.answers)
        # One person's messages and presses: at most 20 per 10 s.
        self.flood = FloodGuard()
        # Cleared when the process stops: new events are then declined.
        self.intake = True
        self._logged_in = False

    async def setup_hook(self) -> None:
        from bot.discord.admin_views import AdminItem
        from bot.discord.cogs import COGS
        from bot.discord.cogs.account import ITEMS as ACCOUNT_ITEMS
        from bot.discord.cogs.link import UnlinkButton
        from bot.discord.cogs.modes import ITEMS as MODE_ITEMS

        self.add_dynamic_items(*DYNAMIC_ITEMS, *ACCOUNT_ITEMS, UnlinkButton, AdminItem)
        self.add_dynamic_items(*MODE_ITEMS)
        self.add_dynamic_items(TranscriptEditButton)
        for cog in COGS:
            await self.add_cog(cog(self))
        # Commands belong to the application, not to a shard: one process syncs them.
        if self.runs_shard_zero:
            await self.sync_commands()
        await self.notices.start()

    @property
    def runs_shard_zero(self) -> bool:
        """Whether this process runs shard 0, the only one Discord sends DMs and the
        application's own events (entitlements) to."""
        return self.shard_ids is None or 0 in self.shard_ids

    def own_shard_ids(self) -> list[int]:
        """The shards this process runs; empty until the count is known (asked from
        Discord at connect when DISCORD_SHARD_COUNT is unset)."""
        if self.shard_ids is not None:
            return list(self.shard_ids)
        return list(range(self.shard_count)) if self.shard_count is not None else []

    def shards_connected(self) -> bool:
        """Every shard of this process has a live session and an open connection."""
        expected = self.own_shard_ids()
        shards = self.shards
        return bool(expected) and all(
            shard_id in self._live_shards
            and shard_id in shards
            and not shards[shard_id].is_closed()
            for shard_id in expected
        )

    async def on_shard_ready(self, shard_id: int) -> None:
        self._live_shards.add(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._live_shards.add(shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._live_shards.discard(shard_id)

    async def login(self, token: str) -> None:
        self._logged_in = True
        await super().login(token)

    async def close(self) -> None:
        await self.notices.stop()
        # discord.py's sharded close needs what its login set up; a client stopped
        # before it started (another part of `oneai run` failed first) has nothing open.
        if self._logged_in:
            await super().close()
        if self._own_payments:
            await self.payments.close()

    async def sync_commands(self) -> None:
        """Slash commands reach Discord: per server for the ids in DISCORD_GUILD_IDS
        (instant), else globally (Discord may take up to an hour to show them)."""
        guild_ids = self.services.settings.discord.guild_ids
        if not guild_ids:
            synced = await self.tree.sync()
            log.info("discord: %d slash commands synced globally", len(synced))
            return
        for guild_id in guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        log.info("discord: slash commands synced to %d servers", len(guild_ids))

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # The bot's own posts and edits (at least two per streamed answer) are no
        # one's prompt: dropped here, before discord.py starts a task for each of
        # their listeners only for it to return at once.
        me = self.user
        if event_name in _OWN_EVENTS and me is not None and args and _author_id(args[0]) == me.id:
            return
        super().dispatch(event_name, *args, **kwargs)

    async def on_message(self, message: discord.Message) -> None:
        """Not a prefix-command bot: messages are the chat cog's."""
