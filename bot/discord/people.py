"""Who is this: the person behind a Discord account (created on first contact),
their language (the interaction's locale, else what they chose), and whether
they may use the bot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from core.accounts import PlatformProfile
from core.db.models import User
from core.flood import FloodGuard, Verdict
from core.i18n import pick_language, t
from core.services import Services


@dataclass(frozen=True)
class Person:
    user: User
    lang: str
    platform_user_id: str


async def upsert(
    services: Services, account: discord.abc.User, locale: str | None = None
) -> Person:
    user = await services.accounts.upsert(
        PlatformProfile(
            "discord",
            str(account.id),
            username=account.name,
            display_name=account.display_name,
            language=locale,
        )
    )
    lang = pick_language(user.language or locale)
    return Person(user, lang, str(account.id))


async def person_of(
    services: Services, interaction: discord.Interaction[Any], *, needs_access: bool = True
) -> Person | None:
    """The presser, or None after telling them why not (ephemeral): banned,
    pressing and asking faster than the flood guard allows, or without access to
    a private deployment (unless `needs_access` is False: /start CODE and /link,
    the ways in)."""
    person = await upsert(services, interaction.user, str(interaction.locale))
    flood: FloodGuard | None = getattr(interaction.client, "flood", None)
    if flood is not None and await flood.check(interaction.user.id) is not Verdict.PASS:
        await interaction.response.send_message(t(person.lang, "slow_down"), ephemeral=True)
        return None
    if person.user.is_banned:
        await interaction.response.send_message(t(person.lang, "blocked"), ephemeral=True)
        return None
    if needs_access and not await services.access.allowed(person.user.id):
        # A private deployment: an interaction must be answered, so it always hears
        # why (only they see it); nothing else runs for them.
        await interaction.response.send_message(t(person.lang, "access.private"), ephemeral=True)
        return None
    return person
