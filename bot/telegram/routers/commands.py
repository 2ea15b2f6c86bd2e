"""Commands: /start /help /new /model /history /rename /export /usage /settings
/cancel /plan. (/image lives with the chat router: it generates.) What they show
and do is in core/views; this draws it."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, Message

from bot.telegram import keyboards
from bot.telegram.replies import patiently, redraw, reply
from bot.telegram.states import SettingsStates
from core.db.models import User
from core.errors import OneAIError
from core.i18n import error_text, t
from core.services import Services
from core.tiers import TIERS, Tier
from core.views import cancel as cancelling
from core.views.history import export_current, history_page, rename_current
from core.views.models import ModelScope, menu_for
from core.views.search import web_search_state
from core.views.settings import save_system_prompt, settings_view
from core.views.usage import usage_report

CAPTION_CHARS = 1024


async def start(
    message: Message, command: CommandObject, user: User, lang: str, services: Services
) -> None:
    """/start, or /start CODE from an invite's t.me link (in ACCESS_MODE=invite)."""
    code = (command.args or "").strip()
    if code and services.access.invites_on:
        try:
            redeemed = await services.access.redeem(user.id, code)
        except OneAIError as exc:
            await reply(message, error_text(lang, exc))  # nothing granted, nothing taken
            return
        await reply(message, t(lang, "access.already" if redeemed.already else "access.welcome"))
    await reply(
        message,
        t(
            lang,
            "start",
            name=message.from_user.first_name if message.from_user else "",
            models=len(services.catalog),
            plan=TIERS[Tier(user.tier)].name,
        ),
    )


async def help_(message: Message, lang: str) -> None:
    await reply(message, t(lang, "help"))


async def new(message: Message, user: User, lang: str, services: Services) -> None:
    await services.accounts.set_current_conversation(user.id, None)
    await reply(message, t(lang, "new"))


async def send_models(
    message: Message, user: User, lang: str, services: Services, scope: ModelScope
) -> None:
    menu = await menu_for(services, user, lang, scope)
    await reply(message, menu.header, keyboards.models(menu))


async def model(message: Message, user: User, lang: str, services: Services) -> None:
    await send_models(message, user, lang, services, ModelScope.CONVERSATION)


async def send_history(
    message: Message, user: User, lang: str, services: Services, page: int = 1, edit: bool = False
) -> None:
    listing = await history_page(services, user.id, lang, page)
    if edit:
        await redraw(message, listing.text, keyboards.history(listing))
    else:
        await reply(message, listing.text, keyboards.history(listing))


async def history(message: Message, user: User, lang: str, services: Services) -> None:
    await send_history(message, user, lang, services)


async def rename(
    message: Message, command: CommandObject, user: User, lang: str, services: Services
) -> None:
    await reply(message, await rename_current(services, user.id, command.args or "", lang))


async def export(message: Message, user: User, lang: str, services: Services) -> None:
    exported = await export_current(services, user.id)
    if exported is None:
        await reply(message, t(lang, "nothing"))
        return
    document = BufferedInputFile(exported.content.encode(), filename=exported.filename)
    caption = exported.caption[:CAPTION_CHARS]
    await patiently(lambda: message.answer_document(document, caption=caption))


async def usage(message: Message, user: User, lang: str, services: Services) -> None:
    await reply(message, (await usage_report(services, user.id, lang)).text)


async def settings(message: Message, user: User, lang: str, services: Services) -> None:
    view = settings_view(services, user, lang, await web_search_state(services, user))
    await reply(message, view.text, keyboards.settings(view))


async def cancel(
    message: Message, state: FSMContext, user: User, lang: str, services: Services
) -> None:
    pending = await state.get_state() is not None
    await state.clear()
    result = await cancelling.cancel(services, user.id, lang, pending=pending)
    await reply(message, result.text)


async def save_prompt(
    message: Message, state: FSMContext, user: User, lang: str, services: Services
) -> None:
    text = await save_system_prompt(services, user.id, message.text or "", lang)
    await state.clear()
    await reply(message, text)


def create_router() -> Router:
    router = Router(name="commands")
    router.message.filter(F.chat.type == "private")
    router.message.register(start, CommandStart())
    router.message.register(help_, Command("help"))
    router.message.register(new, Command("new"))
    router.message.register(model, Command("model"))
    router.message.register(history, Command("history"))
    router.message.register(rename, Command("rename"))
    router.message.register(export, Command("export"))
    router.message.register(usage, Command("usage"))
    router.message.register(settings, Command("settings"))
    router.message.register(cancel, Command("cancel"))
    router.message.register(save_prompt, SettingsStates.prompt, F.text, ~F.text.startswith("/"))
    return router
