"""Discord premium apps: entitlements to DISCORD_SKU_PRO grant and end the pro
plan through the subscription service (exactly once, whatever Discord repeats),
and a listing at start-up and every 12 hours (by the process that runs shard 0)
catches what was missed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.ext import commands, tasks

from core.clock import utcnow
from payments.discord_entitlements import (
    RECONCILE_EVERY,
    DiscordEntitlements,
    EntitlementEvent,
    Kind,
)

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

log = logging.getLogger(__name__)


class PremiumCog(commands.Cog):
    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.entitlements: DiscordEntitlements | None = bot.payments.discord

    async def cog_load(self) -> None:
        # Entitlement events come on shard 0, so the process that runs it also lists
        # them. A listing elsewhere would only repeat it: each entitlement's ledger
        # row is locked while it is applied and its state only moves forward, so a
        # grant or an end seen twice, or by two processes at once, applies once.
        if self.entitlements is not None and self.bot.runs_shard_zero:
            self.reconcile.change_interval(seconds=RECONCILE_EVERY.total_seconds())
            self.reconcile.start()

    async def cog_unload(self) -> None:
        self.reconcile.cancel()

    async def _handle(self, entitlement: discord.Entitlement, kind: Kind) -> None:
        if self.entitlements is None:
            return
        event = EntitlementEvent.of(entitlement, kind)
        if event is None:
            return  # a server's entitlement: plans belong to people
        result = await self.entitlements.handle(event)
        log.info("discord entitlement %s (%s): %s", event.id, kind, result.outcome)

    @commands.Cog.listener()
    async def on_entitlement_create(self, entitlement: discord.Entitlement) -> None:
        await self._handle(entitlement, "create")

    @commands.Cog.listener()
    async def on_entitlement_update(self, entitlement: discord.Entitlement) -> None:
        await self._handle(entitlement, "update")

    @commands.Cog.listener()
    async def on_entitlement_delete(self, entitlement: discord.Entitlement) -> None:
        await self._handle(entitlement, "delete")

    @tasks.loop(hours=12)
    async def reconcile(self) -> None:
        entitlements = self.entitlements
        if entitlements is None or entitlements.sku_pro is None:
            return
        listed_at = utcnow()
        try:
            listed = [
                entitlement
                async for entitlement in self.bot.entitlements(
                    limit=None, skus=[discord.Object(id=entitlements.sku_pro)]
                )
            ]
        except discord.HTTPException as exc:
            # Only a complete listing may end plans: skip this round.
            log.warning("listing discord entitlements failed: %s", exc)
            return
        events = [e for item in listed if (e := EntitlementEvent.of(item, "update")) is not None]
        await entitlements.reconcile(events, listed_at=listed_at)

    @reconcile.before_loop
    async def _ready(self) -> None:
        await self.bot.wait_until_ready()
