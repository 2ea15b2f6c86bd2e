"""The Discord side of broadcasts: one DM per person (the Markdown as is, a photo
as an embed image or an attached file), and Discord's answers translated for the
engine (core/broadcast): 429 -> RetryAfter, 50007 (DMs closed, bot blocked) and
an unknown user -> Unreachable, other 4xx -> Rejected, network and 5xx ->
Transient. Pacing, retries and records are the engine's."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import discord

from bot.discord.render import DISCORD_LIMIT
from bot.discord.sink import retry_after
from core.broadcast import (
    BroadcastEngine,
    Content,
    Photo,
    Progress,
    Rejected,
    RetryAfter,
    SendLimits,
    Transient,
    Unreachable,
)

log = logging.getLogger(__name__)

PLATFORM = "discord"
CANNOT_DM = 50007
# A DM is two calls the first time (open the channel, post); Discord allows 50
# calls a second per bot and frowns on bots that DM many people fast.
PER_SECOND = 10.0
CONCURRENCY = 2

# The bytes of a photo Discord cannot fetch by itself (another platform's file).
PhotoLoader = Callable[[Photo], Awaitable[bytes]]


class DiscordBroadcastSender:
    platform = PLATFORM

    def __init__(
        self,
        client: discord.Client,
        *,
        per_second: float = PER_SECOND,
        concurrency: int = CONCURRENCY,
        photo_bytes: PhotoLoader | None = None,
    ) -> None:
        self.client = client
        self.photo_bytes = photo_bytes
        self._limits = SendLimits(per_second=per_second, concurrency=concurrency)
        self._photos: dict[str, bytes] = {}
        self._loading = asyncio.Lock()

    @property
    def limits(self) -> SendLimits:
        return self._limits

    def problem(self, content: Content) -> str | None:
        if len(content.text) > DISCORD_LIMIT:
            return f"longer than one Discord message ({DISCORD_LIMIT} characters)"
        photo = content.photo
        if photo is not None and not photo.is_url and self.photo_bytes is None:
            return f"the photo is a {photo.platform} file, which Discord cannot show"
        if not content.text and photo is None:
            return "nothing to show"
        return None

    async def _file(self, photo: Photo) -> discord.File:
        async with self._loading:  # loaded once for every recipient
            data = self._photos.get(photo.ref)
            if data is None:
                assert self.photo_bytes is not None
                data = await self.photo_bytes(photo)
                self._photos = {photo.ref: data}  # keep only the current broadcast's
        return discord.File(io.BytesIO(data), filename="photo.jpg")

    async def send(self, address: str, content: Content) -> None:
        user_id = int(address)
        kwargs: dict[str, Any] = {}
        photo = content.photo
        try:
            if photo is not None:
                if photo.is_url:
                    kwargs["embed"] = discord.Embed().set_image(url=photo.ref)
                else:
                    kwargs["file"] = await self._file(photo)
            # The DM channel (cached after the first): one call, no user lookup.
            channel = await self.client.create_dm(discord.Object(id=user_id))
            await channel.send(content.text or None, **kwargs)
        except discord.RateLimited as exc:
            raise RetryAfter(exc.retry_after) from None
        except discord.NotFound as exc:  # no such user any more
            raise Unreachable(str(exc)) from None
        except discord.HTTPException as exc:
            if exc.status == 429:
                raise RetryAfter(retry_after(exc)) from None
            if exc.code == CANNOT_DM:
                raise Unreachable(exc.text or "cannot send messages to this user") from None
            if exc.status >= 500:
                raise Transient(str(exc)) from None
            raise Rejected(str(exc)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(str(exc)) from None


# The buttons under a progress message (pause or resume, cancel); None: none.
ProgressMarkup = Callable[[Progress], Awaitable[discord.ui.View | None]]


def progress_reporter(
    client: discord.Client, markup: ProgressMarkup | None = None
) -> Callable[[Progress], Awaitable[None]]:
    """Shows a broadcast's progress by editing the message it was started with
    (`report_to`, a channel message of the bot); `markup` gives its buttons."""

    async def report(progress: Progress) -> None:
        where = progress.report_to
        if where is None or where.platform != PLATFORM:
            return
        channel = client.get_partial_messageable(int(where.chat_id))
        extra: dict[str, Any] = {}
        if markup is not None:
            extra["view"] = await markup(progress)  # None takes the buttons away
        try:
            message = channel.get_partial_message(int(where.message_id))
            await message.edit(content=progress.line(), **extra)
        except discord.HTTPException as exc:
            log.warning("broadcast %d: progress not shown: %s", progress.broadcast_id, exc)

    return report


def attach(
    engine: BroadcastEngine,
    client: discord.Client,
    photo_bytes: PhotoLoader | None = None,
    markup: ProgressMarkup | None = None,
) -> None:
    """Broadcasts reach Discord through `client` (`photo_bytes` loads another
    platform's photo file); progress messages there are edited, with `markup`'s
    buttons."""
    engine.add_sender(DiscordBroadcastSender(client, photo_bytes=photo_bytes))
    engine.add_reporter(PLATFORM, progress_reporter(client, markup))
