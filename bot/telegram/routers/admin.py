"""/admin: the inline admin menu (stats, a person and what can be done to them,
models, the audit log; broadcasts are in admin_broadcast.py). What the screens say
and offer is in core/admin; this draws it.

To anyone but an admin none of this exists: every handler's last filter is
`admin_only`, so a non-admin's /admin falls through to the unknown-command reply
and a forged admin button to the unknown-button one, and nothing reaches a model.
The check runs after the cheap filters (the command, the state, the button
prefix), so ordinary messages never pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.telegram import keyboards
from bot.telegram.callbacks import AdminAction, AdminOp
from bot.telegram.render import split_plain
from bot.telegram.replies import redraw, reply
from bot.telegram.routers import admin_broadcast
from bot.telegram.states import AdminStates
from core.admin import actions, allowlist, screens
from core.admin.access import Actor, admin_actor
from core.admin.audit import audit_page
from core.admin.models import disable_model, enable_model, models_page, refresh_catalog
from core.admin.people import PersonCard, find_person, person_card
from core.admin.stats import stats_screen
from core.errors import OneAIError
from core.i18n import error_text, t
from core.services import Services
from core.tiers import TIERS, Tier
from payments.service import Payments

PLATFORM = "telegram"
NOTICE_CHARS = 200  # Telegram's limit for a callback answer's text

Screen = tuple[str, InlineKeyboardMarkup | None]


async def admin_only(event: Message | CallbackQuery, services: Services) -> dict[str, Any] | bool:
    """Passes admins, with the `actor` the audit log names; anyone else fails."""
    sender = event.from_user
    if sender is None:
        return False
    actor = await admin_actor(services, PLATFORM, sender.id)
    return {"actor": actor} if actor is not None else False


def fit(text: str) -> str:
    """One message's worth: the longest screens (stats) are cut, never refused."""
    parts = split_plain(text)
    return parts[0] if parts else text


# -- screens --------------------------------------------------------------------------


def menu_screen(lang: str) -> Screen:
    return t(lang, "admin.menu"), keyboards.admin(screens.menu_buttons(lang))


async def card_screen(services: Services, user_id: int, lang: str, note: str = "") -> Screen:
    card = await person_card(services, user_id, lang)
    return _card(card, lang, note)


def _card(card: PersonCard, lang: str, note: str = "") -> Screen:
    text = f"{note}\n\n{card.text}" if note else card.text
    return fit(text), keyboards.admin(
        screens.person_buttons(card, lang), [screens.back_button(lang)], width=2
    )


async def models_screen(services: Services, lang: str, note: str = "") -> Screen:
    page = await models_page(services, lang)
    toggles = [
        screens.AdminButton(
            AdminOp.MODEL_TOGGLE, f"{'✅' if m.enabled else '⛔'} {m.name}", arg=str(m.index)
        )
        for m in page.models
    ]
    text = f"{note}\n\n{page.text}" if note else page.text
    return fit(text), keyboards.admin(
        toggles,
        [
            screens.AdminButton(AdminOp.REFRESH, t(lang, "admin.button.refresh")),
            screens.back_button(lang),
        ],
    )


async def audit_screen(services: Services, page: int, lang: str) -> Screen:
    listing = await audit_page(services, page, lang)
    pager = []
    if listing.has_previous:
        pager.append(
            screens.AdminButton(AdminOp.AUDIT, t(lang, "admin.button.newer"), page=listing.page - 1)
        )
    if listing.has_next:
        pager.append(
            screens.AdminButton(AdminOp.AUDIT, t(lang, "admin.button.older"), page=listing.page + 1)
        )
    return fit(listing.text), keyboards.admin(pager, [screens.back_button(lang)])


async def stats_view(services: Services, lang: str) -> Screen:
    screen = await stats_screen(services, lang)
    return fit(screen.text), keyboards.admin(
        [
            screens.AdminButton(AdminOp.STATS, t(lang, "admin.button.stats")),
            screens.back_button(lang),
        ]
    )


# -- commands and typed answers ------------------------------------------------------


async def admin_command(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    actor: Actor,
    lang: str,
    services: Services,
) -> None:
    """/admin, or straight to a screen: /admin stats | models | audit [page] |
    broadcast | person QUERY (or just /admin QUERY); a private deployment's list
    and invites: /admin allowlist | allow ENTRY | deny ENTRY | invite [uses] [days]."""
    await state.clear()
    word, _, rest = (command.args or "").strip().partition(" ")
    word = word.lower()
    try:
        if not word:
            text, markup = menu_screen(lang)
        elif word == "stats":
            text, markup = await stats_view(services, lang)
        elif word == "models":
            text, markup = await models_screen(services, lang)
        elif word == "audit":
            page = int(rest) if rest.strip().isdigit() else 1
            text, markup = await audit_screen(services, page, lang)
        elif word == "broadcast":
            await admin_broadcast.ask_text(message, state, lang)
            return
        elif word in ACCESS_WORDS:
            text, markup = await access_command(message, actor, word, rest, lang, services), None
        else:
            query = rest if word in ("person", "find") else (command.args or "")
            if not query.strip():
                await state.set_state(AdminStates.person)
                await reply(message, t(lang, "admin.ask.person"))
                return
            text, markup = await card_screen(services, await find_person(services, query), lang)
    except OneAIError as exc:
        await reply(message, error_text(lang, exc))
        return
    await reply(message, text, markup)


ACCESS_WORDS = ("allowlist", "access", "allow", "deny", "invite")


async def access_command(
    message: Message, actor: Actor, word: str, rest: str, lang: str, services: Services
) -> str:
    """/admin allowlist | allow ENTRY | deny ENTRY | invite [uses] [days]: the reply
    (the list and how to use these, when the words do not fit)."""
    if word in ("allow", "deny") and rest.strip():
        run = allowlist.allow if word == "allow" else allowlist.deny
        result = await run(services, actor, rest, lang=lang)
        return "\n".join([result.text, *result.notes])
    if word == "invite":
        wanted = allowlist.parse_invite_args(rest.split())
        if wanted is not None:
            made = await allowlist.invite(services, actor, *wanted)
            me = await message.bot.me() if message.bot is not None else None
            link = f"https://t.me/{me.username if me else ''}?start={made.invite.code}"
            uses = t(lang, "admin.invite.uses", uses=made.invite.uses)
            return t(lang, "admin.invite.telegram", uses=uses, until=made.until, link=link)
    return (await allowlist.allowlist(services, lang=lang)).text


async def person_typed(message: Message, state: FSMContext, lang: str, services: Services) -> None:
    try:
        user_id = await find_person(services, message.text or "")
    except OneAIError as exc:
        await reply(message, error_text(lang, exc))  # still waiting: try again or /cancel
        return
    await state.clear()
    await reply(message, *await card_screen(services, user_id, lang))


async def reason_typed(
    message: Message, state: FSMContext, actor: Actor, lang: str, services: Services
) -> None:
    user_id = int((await state.get_data()).get("user", 0))
    await state.clear()
    reason = (message.text or "").strip()
    try:
        result = await actions.ban(
            services, actor, user_id, None if reason in ("", "-") else reason, lang=lang
        )
    except OneAIError as exc:
        await reply(message, error_text(lang, exc))
        return
    note = "\n".join([result.text, *result.notes])
    await reply(message, *await card_screen(services, user_id, lang, note))


# -- buttons ------------------------------------------------------------------------


@dataclass(frozen=True)
class Press:
    """One press of an admin button, with what its handling needs."""

    query: CallbackQuery
    message: Message  # the screen the button is on
    data: AdminAction
    state: FSMContext
    actor: Actor
    lang: str
    services: Services
    payments: Payments

    async def ok(self, notice: str = "") -> None:
        await self.query.answer(notice[:NOTICE_CHARS] or None)

    async def stale(self) -> None:
        """A forged or outdated button: said, nothing changed."""
        await self.query.answer(t(self.lang, "stale_button"), show_alert=True)


async def admin_button(
    query: CallbackQuery,
    callback_data: AdminAction,
    state: FSMContext,
    actor: Actor,
    lang: str,
    services: Services,
    payments: Payments,
) -> None:
    message = query.message if isinstance(query.message, Message) else None
    if message is None:
        await query.answer()
        return
    press = Press(query, message, callback_data, state, actor, lang, services, payments)
    try:
        if callback_data.op in admin_broadcast.OPS:
            screen = await admin_broadcast.pressed(press)
        else:
            screen = await _pressed(press)
    except OneAIError as exc:
        await query.answer(error_text(lang, exc)[:NOTICE_CHARS], show_alert=True)
        return
    if screen is not None:
        await redraw(message, *screen)


async def _pressed(p: Press) -> Screen | None:
    """The screen a press leads to (None: nothing to redraw); the press answered."""
    op, lang, services = p.data.op, p.lang, p.services
    if op is AdminOp.MENU:
        await p.state.clear()
        await p.ok()
        return menu_screen(lang)
    if op is AdminOp.STATS:
        await p.ok()
        return await stats_view(services, lang)
    if op is AdminOp.FIND:
        await p.state.set_state(AdminStates.person)
        await p.ok()
        await reply(p.message, t(lang, "admin.ask.person"))
        return None
    if op is AdminOp.MODELS:
        await p.ok()
        return await models_screen(services, lang)
    if op is AdminOp.MODEL_TOGGLE:
        index = screens.parse_id(p.data.arg)
        page = await models_page(services, lang)
        line = next((m for m in page.models if m.index == index), None)
        if line is None:
            await p.stale()
            return None
        toggle = disable_model if line.enabled else enable_model
        result = await toggle(services, p.actor, line.index, lang=lang)
        await p.ok(result.text)
        return await models_screen(services, lang, result.text)
    if op is AdminOp.REFRESH:
        await p.ok()
        result = await refresh_catalog(services, p.actor, lang=lang)
        return await models_screen(services, lang, result.text)
    if op is AdminOp.AUDIT:
        await p.ok()
        return await audit_screen(services, p.data.page, lang)
    return await _person_pressed(p)


async def _person_pressed(p: Press) -> Screen | None:
    op, user_id, lang, services, actor = p.data.op, p.data.user, p.lang, p.services, p.actor
    card = await person_card(services, user_id, lang)  # PersonNotFound for a forged id
    if op is AdminOp.PERSON:
        await p.ok()
        return _card(card, lang)
    if op is AdminOp.GRANT:
        return await _grant_choice(p)
    if op is AdminOp.GRANT_DAYS:
        chosen = screens.parse_grant(p.data.arg)
        if chosen is None:
            await p.stale()
            return None
        result = await actions.grant(services, actor, user_id, chosen[0], chosen[1], lang=lang)
    elif op is AdminOp.REVOKE:
        await p.ok()
        text, buttons = screens.confirm_revoke(card, lang)
        return text, keyboards.admin(buttons)
    elif op is AdminOp.REVOKE_YES:
        result = await actions.revoke(services, actor, user_id, lang=lang)
    elif op is AdminOp.RESET:
        result = await actions.reset_quota(services, actor, user_id, lang=lang)
    elif op is AdminOp.BAN:
        await p.state.set_state(AdminStates.ban_reason)
        await p.state.update_data(user=user_id)
        await p.ok()
        await reply(p.message, t(lang, "admin.ask.reason"))
        return None
    elif op is AdminOp.UNBAN:
        result = await actions.unban(services, actor, user_id, lang=lang)
    elif op in (AdminOp.REFUND, AdminOp.REFUND_YES):
        return await _refund(p, card)
    else:
        await p.stale()
        return None
    await p.ok(result.text)
    return await card_screen(services, user_id, lang, "\n".join([result.text, *result.notes]))


async def _grant_choice(p: Press) -> Screen | None:
    """Give a plan: first which plan, then for how many days."""
    user_id, lang = p.data.user, p.lang
    back = [screens.AdminButton(AdminOp.PERSON, t(lang, "admin.button.card"), user_id)]
    if not p.data.arg:
        await p.ok()
        text = t(lang, "admin.ask.plan", user=user_id)
        return text, keyboards.admin(screens.grant_plans(lang, user_id), back)
    try:
        tier = Tier(p.data.arg)
    except ValueError:
        await p.stale()
        return None
    await p.ok()
    text = t(lang, "admin.ask.grant_days", plan=TIERS[tier].name, user=user_id)
    return text, keyboards.admin(screens.grant_days(lang, user_id, tier), back, width=4)


async def _refund(p: Press, card: PersonCard) -> Screen | None:
    payment_id = screens.parse_id(p.data.arg)
    if p.data.op is AdminOp.REFUND:
        asked = screens.confirm_refund(card, payment_id, p.lang) if payment_id is not None else None
        if asked is None:
            await p.stale()
            return None
        await p.ok()
        return asked[0], keyboards.admin(asked[1])
    # Only a payment of the person on the card: a button cannot be turned against
    # another person's payment. Pressed twice, the second press hears "already".
    if payment_id is None or all(line.id != payment_id for line in card.payments):
        await p.stale()
        return None
    refunds = p.payments.refunds
    result = await refunds.refund(payment_id, admin_user_id=p.actor.user_id, reason=None)
    note = result.text(p.lang)
    await p.ok(note)
    return await card_screen(p.services, card.user_id, p.lang, note)


def create_router() -> Router:
    router = Router(name="admin")
    router.message.filter(F.chat.type == "private")
    router.message.register(admin_command, Command("admin"), admin_only)
    router.message.register(
        person_typed, AdminStates.person, F.text, ~F.text.startswith("/"), admin_only
    )
    router.message.register(
        reason_typed, AdminStates.ban_reason, F.text, ~F.text.startswith("/"), admin_only
    )
    admin_broadcast.register(router, admin_only)
    router.callback_query.register(admin_button, AdminAction.filter(), admin_only)
    return router
