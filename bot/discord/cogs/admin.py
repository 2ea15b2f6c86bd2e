"""/admin …: the admin operations of core/admin as one slash-command group.

Who sees it: `default_permissions=Permissions()` (no bits) hides /admin in every
server from all but the server's Administrators, who see every command anyway;
a server owner may show it to a role under Server Settings → Integrations.
That is only the picker: it is not who may run it (a server admin is not a
OneAI admin), and in DMs with the bot Discord applies no member permissions, so
anyone who opens a DM sees /admin there. So every subcommand, like every
button, asks `admin_of` first, and a non-admin gets the unknown-command answer.
The group stays usable in DMs: that is where a OneAI admin who runs no server
uses it, and where a broadcast's preview and progress live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.admin_broadcast import compose
from bot.discord.admin_people import audit_screen, models_screen, refund, show_card
from bot.discord.admin_views import admin_of, say, show
from core.admin import actions
from core.admin import allowlist as access_list
from core.admin.models import disable_model, enable_model, refresh_catalog
from core.admin.people import find_person
from core.admin.stats import stats_screen
from core.broadcast import Photo
from core.errors import OneAIError
from core.i18n import error_text, t
from core.tiers import TIERS, QuotaKey, Tier

if TYPE_CHECKING:
    from bot.discord.client import OneAIBot

PLANS = [
    app_commands.Choice(name=TIERS[tier].name, value=tier.value)
    for tier in Tier
    if tier is not Tier.FREE
]
QUOTAS = [
    app_commands.Choice(name=t("en", f"quota.{key.value}"), value=key.value) for key in QuotaKey
]


def _lines(result: actions.ActionResult) -> str:
    return "\n".join([result.text, *result.notes])


class AdminCog(commands.Cog):
    admin = app_commands.Group(
        name="admin",
        description="Run OneAI (admins only)",
        default_permissions=discord.Permissions(),
    )

    def __init__(self, bot: OneAIBot) -> None:
        self.bot = bot
        self.services = bot.services

    async def _action(
        self, interaction: discord.Interaction[Any], person: str, run: Any, *args: Any
    ) -> None:
        """Find the person, run the action, show what changed."""
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            user_id = await find_person(self.services, person)
            result = await run(self.services, admin.actor, user_id, *args, lang=admin.lang)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await say(interaction, _lines(result))

    @admin.command(name="stats", description="People, answers, models, plans, revenue")
    async def stats(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        screen = await stats_screen(self.services, admin.lang)
        await say(interaction, screen.text)

    @admin.command(name="person", description="A person's card and actions")
    @app_commands.describe(query="Our id, telegram:ID, discord:ID, a mention or @username")
    async def person(self, interaction: discord.Interaction[Any], query: str) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            user_id = await find_person(self.services, query)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await show_card(interaction, admin, user_id, edit=False)

    @admin.command(name="grant", description="Give a plan for some days")
    @app_commands.describe(person="Who", tier="Which plan", days="For how many days")
    @app_commands.choices(tier=PLANS)
    async def grant(
        self, interaction: discord.Interaction[Any], person: str, tier: str, days: int
    ) -> None:
        await self._action(interaction, person, actions.grant, tier, days)

    @admin.command(name="revoke", description="Take the plan away now")
    @app_commands.describe(person="Who")
    async def revoke(self, interaction: discord.Interaction[Any], person: str) -> None:
        await self._action(interaction, person, actions.revoke)

    @admin.command(name="reset", description="Reset a person's quotas")
    @app_commands.describe(person="Who", quota="One quota (all when left out)")
    @app_commands.choices(quota=QUOTAS)
    async def reset(
        self, interaction: discord.Interaction[Any], person: str, quota: str | None = None
    ) -> None:
        await self._action(interaction, person, actions.reset_quota, quota)

    @admin.command(name="ban", description="Ban a person: no answers any more")
    @app_commands.describe(person="Who", reason="Why (for the audit log)")
    async def ban(
        self, interaction: discord.Interaction[Any], person: str, reason: str | None = None
    ) -> None:
        await self._action(interaction, person, actions.ban, reason)

    @admin.command(name="unban", description="Lift a ban")
    @app_commands.describe(person="Who")
    async def unban(self, interaction: discord.Interaction[Any], person: str) -> None:
        await self._action(interaction, person, actions.unban)

    @admin.command(name="refund", description="Refund a payment in full")
    @app_commands.describe(payment="The payment's number on the card, or the provider's id")
    async def refund(self, interaction: discord.Interaction[Any], payment: str) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        await say(interaction, await refund(interaction, admin, payment.strip()))

    @admin.command(name="models", description="The catalog, with the models turned off")
    async def models(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        text, buttons = await models_screen(self.services, admin.lang)
        await show(interaction, text, buttons)

    @admin.command(name="model_off", description="Turn a model off for everyone")
    @app_commands.describe(model="The model's id or its number in /admin models", reason="Why")
    async def model_off(
        self, interaction: discord.Interaction[Any], model: str, reason: str | None = None
    ) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            result = await disable_model(
                self.services, admin.actor, _model(model), reason, lang=admin.lang
            )
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await say(interaction, _lines(result))

    @admin.command(name="model_on", description="Turn a model on again")
    @app_commands.describe(model="The model's id or its number in /admin models")
    async def model_on(self, interaction: discord.Interaction[Any], model: str) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            result = await enable_model(self.services, admin.actor, _model(model), lang=admin.lang)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await say(interaction, _lines(result))

    @admin.command(name="refresh", description="Refresh the model catalog now")
    async def refresh(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await refresh_catalog(self.services, admin.actor, lang=admin.lang)
        await say(interaction, _lines(result))

    @admin.command(name="broadcast", description="Write to everyone: a preview comes first")
    @app_commands.describe(text="The message (Markdown)", photo="A picture to go with it")
    async def broadcast(
        self,
        interaction: discord.Interaction[Any],
        text: str,
        photo: discord.Attachment | None = None,
    ) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        # Discord's link to the upload, which every platform can fetch.
        picture = Photo(photo.url) if photo is not None else None
        try:
            await compose(interaction, admin, text, picture)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))

    @admin.command(name="audit", description="Who did what, newest first")
    @app_commands.describe(page="Which page (1 is the newest)")
    async def audit(self, interaction: discord.Interaction[Any], page: int = 1) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        text, buttons = await audit_screen(self.services, admin.lang, page)
        await show(interaction, text, buttons)

    # -- a private deployment's list and invites ------------------------------------

    @admin.command(name="allowlist", description="Who may use a private bot")
    async def allowlist(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        await say(interaction, (await access_list.allowlist(self.services, lang=admin.lang)).text)

    @admin.command(name="allow", description="Put someone on the allowlist")
    @app_commands.describe(entry="telegram:ID, discord:ID, a mention or a Telegram @username")
    async def allow(self, interaction: discord.Interaction[Any], entry: str) -> None:
        await self._list_change(interaction, access_list.allow, entry)

    @admin.command(name="deny", description="Take someone off the allowlist")
    @app_commands.describe(entry="telegram:ID, discord:ID, a mention or a Telegram @username")
    async def deny(self, interaction: discord.Interaction[Any], entry: str) -> None:
        await self._list_change(interaction, access_list.deny, entry)

    async def _list_change(
        self, interaction: discord.Interaction[Any], run: Any, entry: str
    ) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            result = await run(self.services, admin.actor, entry, lang=admin.lang)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await say(interaction, _lines(result))

    @admin.command(name="invite", description="An invite code for a private bot")
    @app_commands.describe(uses="How many people may use it", days="For how many days")
    async def invite(
        self,
        interaction: discord.Interaction[Any],
        uses: int = access_list.DEFAULT_USES,
        days: int = access_list.DEFAULT_DAYS,
    ) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            made = await access_list.invite(self.services, admin.actor, uses, days)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await say(
            interaction,
            t(
                admin.lang,
                "admin.invite.discord",
                uses=t(admin.lang, "admin.invite.uses", uses=made.invite.uses),
                until=made.until,
                code=made.invite.code,
            ),
        )


def _model(text: str) -> str | int:
    """A number is the one /admin models shows (from 1); anything else is an id."""
    value = text.strip()
    return int(value) - 1 if value.isdigit() and value.isascii() else value
