"""The /admin screens about people on Discord: the menu, stats, a person's card
and what can be done to them (plans, quotas, bans, refunds), models and the
audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord

from bot.discord.admin_views import (
    HANDLERS,
    REASON_CHARS,
    Admin,
    admin_of,
    client_of,
    say,
    services_of,
    show,
    title,
)
from core.admin import actions
from core.admin.audit import audit_page
from core.admin.models import models_page, refresh_catalog
from core.admin.people import find_person, person_card
from core.admin.screens import (
    AdminButton,
    AdminOp,
    confirm_refund,
    confirm_revoke,
    grant_days,
    grant_plans,
    menu_buttons,
    parse_grant,
    parse_id,
    person_buttons,
)
from core.admin.stats import stats_screen
from core.errors import OneAIError
from core.i18n import error_text, t
from core.tiers import TIERS, Tier

if TYPE_CHECKING:
    from core.services import Services


def _lines(result: actions.ActionResult) -> str:
    return "\n".join([result.text, *result.notes])


# -- screens: a person ---------------------------------------------------------------------


async def card_screen(
    services: Services, lang: str, user_id: int, head: str = ""
) -> tuple[str, list[AdminButton]]:
    card = await person_card(services, user_id, lang)
    text = f"{head}\n\n{card.text}" if head else card.text
    return text, person_buttons(card, lang)


async def show_card(
    interaction: discord.Interaction[Any], admin: Admin, user_id: int, head: str = "", *, edit: bool
) -> None:
    text, buttons = await card_screen(services_of(interaction), admin.lang, user_id, head)
    await show(interaction, text, buttons, edit=edit)


async def audit_screen(services: Services, lang: str, page: int) -> tuple[str, list[AdminButton]]:
    shown = await audit_page(services, page, lang)
    buttons = []
    if shown.has_previous:
        buttons.append(
            AdminButton(AdminOp.AUDIT, t(lang, "admin.button.newer"), page=shown.page - 1)
        )
    if shown.has_next:
        buttons.append(
            AdminButton(AdminOp.AUDIT, t(lang, "admin.button.older"), page=shown.page + 1)
        )
    return shown.text, buttons


async def models_screen(services: Services, lang: str) -> tuple[str, list[AdminButton]]:
    page = await models_page(services, lang)
    return page.text, [AdminButton(AdminOp.REFRESH, t(lang, "admin.button.refresh"))]


class FindModal(discord.ui.Modal):
    def __init__(self, lang: str) -> None:
        super().__init__(title=title(t(lang, "admin.button.person")), timeout=600)
        self.query: discord.ui.TextInput[FindModal] = discord.ui.TextInput(
            label=title(t(lang, "admin.find.label")), custom_id="query", max_length=200
        )
        self.add_item(self.query)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        try:
            user_id = await find_person(services_of(interaction), self.query.value)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await show_card(interaction, admin, user_id, edit=False)


class BanModal(discord.ui.Modal):
    """Why the person is banned: optional, it goes to the audit log."""

    def __init__(self, lang: str, user_id: int) -> None:
        super().__init__(title=title(t(lang, "admin.button.ban")), timeout=600)
        self.user_id = user_id
        self.reason: discord.ui.TextInput[BanModal] = discord.ui.TextInput(
            label=title(t(lang, "admin.ban.label")),
            custom_id="reason",
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=REASON_CHARS,
        )
        self.add_item(self.reason)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        admin = await admin_of(interaction)
        if admin is None:
            return
        services = services_of(interaction)
        reason = self.reason.value.strip() or None
        try:
            result = await actions.ban(services, admin.actor, self.user_id, reason, lang=admin.lang)
        except OneAIError as exc:
            await say(interaction, error_text(admin.lang, exc))
            return
        await show_card(interaction, admin, self.user_id, _lines(result), edit=True)


async def _menu(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await show(interaction, t(admin.lang, "admin.menu"), menu_buttons(admin.lang), edit=True)


async def _stats(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    screen = await stats_screen(services_of(interaction), admin.lang)
    await say(interaction, screen.text)


async def _find(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.send_modal(FindModal(admin.lang))


async def _person(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await show_card(interaction, admin, b.user_id, edit=True)


async def _grant(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    card = await person_card(services_of(interaction), b.user_id, admin.lang)
    back = AdminButton(AdminOp.PERSON, t(admin.lang, "admin.button.card"), card.user_id)
    if not b.arg:
        text = t(admin.lang, "admin.ask.plan", user=card.user_id)
        await show(interaction, text, [*grant_plans(admin.lang, card.user_id), back], edit=True)
        return
    try:
        tier = Tier(b.arg)
    except ValueError:
        tier = Tier.FREE
    if tier is Tier.FREE:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    text = t(admin.lang, "admin.ask.grant_days", plan=TIERS[tier].name, user=card.user_id)
    await show(interaction, text, [*grant_days(admin.lang, card.user_id, tier), back], edit=True)


async def _grant_days(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    chosen = parse_grant(b.arg)
    if chosen is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    tier, days = chosen
    result = await actions.grant(
        services_of(interaction), admin.actor, b.user_id, tier, days, lang=admin.lang
    )
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _revoke(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    card = await person_card(services_of(interaction), b.user_id, admin.lang)
    text, buttons = confirm_revoke(card, admin.lang)
    await show(interaction, text, buttons, edit=True)


async def _revoke_yes(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    result = await actions.revoke(services_of(interaction), admin.actor, b.user_id, lang=admin.lang)
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _reset(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    result = await actions.reset_quota(
        services_of(interaction), admin.actor, b.user_id, lang=admin.lang
    )
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _ban(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await person_card(services_of(interaction), b.user_id, admin.lang)  # still there
    await interaction.response.send_modal(BanModal(admin.lang, b.user_id))


async def _unban(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    result = await actions.unban(services_of(interaction), admin.actor, b.user_id, lang=admin.lang)
    await show_card(interaction, admin, b.user_id, _lines(result), edit=True)


async def _refund(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    payment_id = parse_id(b.arg)
    card = await person_card(services_of(interaction), b.user_id, admin.lang)
    asked = confirm_refund(card, payment_id, admin.lang) if payment_id is not None else None
    if asked is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    await show(interaction, *asked, edit=True)


async def refund(interaction: discord.Interaction[Any], admin: Admin, payment: int | str) -> str:
    """One refund (the refunds module makes a second press a no-op with a
    reason); the line to show. The provider may take seconds: call deferred."""
    from payments.refunds import RefundError

    refunds = client_of(interaction).payments.refunds
    try:
        result = await refunds.refund(payment, admin_user_id=admin.actor.user_id, reason=None)
    except RefundError as exc:
        return error_text(admin.lang, exc)
    return result.text(admin.lang)


async def _refund_yes(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    payment_id = parse_id(b.arg)
    if payment_id is None:
        await say(interaction, t(admin.lang, "stale_button"))
        return
    await interaction.response.defer()
    line = await refund(interaction, admin, payment_id)
    await show_card(interaction, admin, b.user_id, line, edit=True)


async def _models(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    text, buttons = await models_screen(services_of(interaction), admin.lang)
    await show(interaction, text, buttons)


async def _refresh(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    await interaction.response.defer(ephemeral=True, thinking=True)
    result = await refresh_catalog(services_of(interaction), admin.actor, lang=admin.lang)
    await say(interaction, _lines(result))


async def _audit(interaction: discord.Interaction[Any], admin: Admin, b: AdminButton) -> None:
    text, buttons = await audit_screen(services_of(interaction), admin.lang, b.page or 1)
    await show(interaction, text, buttons, edit=True)


HANDLERS.update(
    {
        AdminOp.MENU: _menu,
        AdminOp.STATS: _stats,
        AdminOp.FIND: _find,
        AdminOp.PERSON: _person,
        AdminOp.GRANT: _grant,
        AdminOp.GRANT_DAYS: _grant_days,
        AdminOp.REVOKE: _revoke,
        AdminOp.REVOKE_YES: _revoke_yes,
        AdminOp.RESET: _reset,
        AdminOp.BAN: _ban,
        AdminOp.UNBAN: _unban,
        AdminOp.REFUND: _refund,
        AdminOp.REFUND_YES: _refund_yes,
        AdminOp.MODELS: _models,
        AdminOp.REFRESH: _refresh,
        AdminOp.AUDIT: _audit,
    }
)
