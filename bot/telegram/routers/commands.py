"""Commands: /start /help /new /model /history /rename /export /usage /settings
/cancel /plan. (/image lives with the chat router: it generates.)"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, Message

from bot.telegram import keyboards
from bot.telegram.replies import patiently, redraw, reply
from bot.telegram.states import SettingsStates
from core.conversations.export import export_markdown
from core.db.models import User
from core.i18n import LANGUAGES, t
from core.quotas import QuotaStatus
from core.services import Services
from core.tiers import TIERS, Tier

BAR_WIDTH = 10


def usage_bar(status: QuotaStatus) -> str:
    filled = 0 if status.limit == 0 else round(BAR_WIDTH * status.used / status.limit)
    return "▰" * filled + "▱" * (BAR_WIDTH - filled)


def model_name(services: Services, model_id: str) -> str:
    model = services.catalog.get(model_id)
    return model.name if model else model_id


async def start(message: Message, user: User, lang: str, services: Services) -> None:
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


async def model(message: Message, user: User, lang: str, services: Services) -> None:
    current = await services.current_model_id(user)
    await reply(
        message,
        t(lang, "model.header", model=model_name(services, current)),
        keyboards.models(lang, services.catalog, current, Tier(user.tier)),
    )


async def send_history(
    message: Message, user: User, lang: str, services: Services, page: int = 1, edit: bool = False
) -> None:
    listing = await services.conversations.page(user.id, page, per_page=8)
    if not listing.items:
        text, markup = t(lang, "history.empty"), None
    else:
        text = t(lang, "history.header", page=listing.page, pages=listing.pages)
        markup = keyboards.history(lang, listing, user.current_conversation_id)
    if edit:
        await redraw(message, text, markup)
    else:
        await reply(message, text, markup)


async def history(message: Message, user: User, lang: str, services: Services) -> None:
    await send_history(message, user, lang, services)


async def rename(
    message: Message, command: CommandObject, user: User, lang: str, services: Services
) -> None:
    title = (command.args or "").strip()
    if not title:
        await reply(message, t(lang, "rename.usage"))
        return
    conversation = await services.conversations.current(user.id)
    if conversation is None:
        await reply(message, t(lang, "nothing"))
        return
    title = await services.conversations.rename(user.id, conversation.id, title)
    await reply(message, t(lang, "rename.done", title=title))


async def export(message: Message, user: User, lang: str, services: Services) -> None:
    conversation = await services.conversations.current(user.id)
    if conversation is None:
        await reply(message, t(lang, "nothing"))
        return
    markdown = await export_markdown(services.db, user.id, conversation.id)
    name = "".join(c if c.isalnum() else "-" for c in conversation.title)[:40].strip("-")
    document = BufferedInputFile(markdown.encode(), filename=f"{name or 'conversation'}.md")
    await patiently(lambda: message.answer_document(document, caption=conversation.title[:1024]))


async def usage_lines(user: User, lang: str, services: Services) -> list[str]:
    """Each quota as a bar with what is left and when it resets."""
    lines = []
    for status in await services.quotas.report(user.id, Tier(user.tier)):
        when = (
            status.resets_at.strftime("%Y-%m-%d %H:%M UTC")
            if status.resets_at
            else t(lang, "usage.rolling")
        )
        lines.append(
            t(
                lang,
                "usage.line",
                label=t(lang, f"quota.{status.key.value}"),
                bar=usage_bar(status),
                used=status.used,
                limit=status.limit,
                remaining=status.remaining,
                when=when,
            )
        )
    return lines


async def usage(message: Message, user: User, lang: str, services: Services) -> None:
    header = t(lang, "usage.header", plan=TIERS[Tier(user.tier)].name)
    await reply(message, "\n".join([header, *await usage_lines(user, lang, services)]))


async def settings_text(user: User, lang: str, services: Services) -> str:
    prompt = user.system_prompt or t(lang, "settings.none")
    return t(
        lang,
        "settings.header",
        prompt=prompt[:300],
        model=services.catalog.preferred(user.default_model).name,
        language=LANGUAGES.get(lang, lang),
    )


async def settings(message: Message, user: User, lang: str, services: Services) -> None:
    await reply(message, await settings_text(user, lang, services), keyboards.settings(lang))


async def cancel(
    message: Message, state: FSMContext, user: User, lang: str, services: Services
) -> None:
    stopped = False
    conversation = await services.conversations.current(user.id)
    if conversation is not None:
        path = await services.conversations.active_path(conversation.id)
        if path and path[-1].status == "streaming":
            stopped = await services.chat.request_stop(user.id, path[-1].id)
    had_state = await state.get_state() is not None
    await state.clear()
    await reply(message, t(lang, "cancel.done" if stopped or had_state else "cancel.nothing"))


async def save_prompt(
    message: Message, state: FSMContext, user: User, lang: str, services: Services
) -> None:
    await services.accounts.set_system_prompt(user.id, (message.text or "")[:4000])
    await state.clear()
    await reply(message, t(lang, "settings.prompt_saved"))


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
