"""The views every platform draws (core/views, payments/offers.py), on the real
services and a real database: what /usage, /model, /history, /settings, /cancel,
/plan and /cancel_subscription show and do, whichever platform asks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from core.config import (
    DiscordSettings,
    PaymentSettings,
    RazorpaySettings,
    Settings,
    YooKassaSettings,
)
from core.conversations.errors import ConversationNotFound
from core.db.engine import Database
from core.db.models import Conversation, OutboxMessage, User
from core.llm.catalog import ModelLocked, UnknownModel
from core.llm.client import LLMClient
from core.services import Services
from core.subscriptions import PlanView, Purchase
from core.tiers import TIERS, QuotaKey, ResetFrequency, Tier, window_bounds
from core.views import Platform
from core.views.cancel import cancel
from core.views.history import (
    ConversationAction,
    delete_conversation,
    export_conversation,
    export_current,
    export_filename,
    history_page,
    open_conversation,
    rename_conversation,
    rename_current,
)
from core.views.models import (
    ModelScope,
    locked_notice,
    menu_for,
    model_at,
    model_menu,
    switch_model,
)
from core.views.settings import (
    PROMPT_MAX_CHARS,
    SettingsOp,
    choose_language,
    clear_system_prompt,
    save_system_prompt,
    settings_view,
)
from core.views.usage import bar, usage_report
from payments import offers as offers_module
from payments.offers import (
    CancelStep,
    OfferKind,
    PayMethod,
    cancel_subscription,
    cancellation,
    find_offer,
    offers,
    plan_page,
    purchase_refusal_text,
    status_line,
)
from payments.plans import PlanCatalog
from payments.razorpay_provider import PROVIDER as RAZORPAY
from payments.service import Payments
from tests.conftest import make_settings
from tests.fakes.llm_server import FakeLLM, Reply
from tests.support.chat import finish, new_user

SKU = 1234567890
MONTH_END = "%Y-%m-%d %H:%M UTC"


async def me(services: Services, user_id: int) -> User:
    user = await services.accounts.get(user_id)
    assert user is not None
    return user


async def talk(services: Services, user_id: int, text: str, *, new: bool = False) -> uuid.UUID:
    """One finished exchange; the conversation's id."""
    generation = await services.chat.send(user_id, text, new_conversation=new)
    await finish(generation)
    return generation.turn.conversation.id


async def give(services: Services, user_id: int, purchase: Purchase) -> None:
    async with services.db.write() as session:
        await services.subscriptions.activate(session, user_id, purchase)


# -- /usage -------------------------------------------------------------------------------


def test_the_bar_fills_by_share_and_stays_ten_wide() -> None:
    assert bar(0, 100) == "▱" * 10
    assert bar(2, 5) == "▰▰▰▰▱▱▱▱▱▱"
    assert bar(1, 5) == "▰▰▱▱▱▱▱▱▱▱"
    assert bar(5, 5) == "▰" * 10
    assert bar(12, 10) == "▰" * 10  # over the limit after a downgrade
    assert bar(3, 0) == "▱" * 10


async def test_usage_of_a_new_person(services: Services) -> None:
    user_id = await new_user(services)
    report = await usage_report(services, user_id, "en")
    assert (report.tier, report.plan, report.period_end) == (Tier.FREE, "Free", None)
    assert report.header == "📊 Plan: Free"
    assert [q.key for q in report.quotas] == [
        QuotaKey.SMALL,
        QuotaKey.LARGE,
        QuotaKey.IMAGE,
        QuotaKey.VOICE,
    ]
    small, large, images, voice = report.quotas
    month_end = window_bounds(ResetFrequency.MONTHLY, datetime.now(UTC))[1]
    assert small.label == "Small messages"
    assert (small.used, small.limit, small.remaining) == (0, 100, 100)
    assert small.resets_at == month_end and small.when == month_end.strftime(MONTH_END)
    assert small.fraction == 0.0
    # A rolling window that has not started yet starts at the next use.
    assert images.resets_at is None and images.when == "3 h after next use"
    assert images.reset_frequency is ResetFrequency.THREE_HOUR
    assert report.text.splitlines() == [
        "📊 Plan: Free",
        f"Small messages: ▱▱▱▱▱▱▱▱▱▱ 0/100 · 100 left · resets {small.when}",
        f"Large messages: ▱▱▱▱▱▱▱▱▱▱ 0/20 · 20 left · resets {large.when}",
        "Images: ▱▱▱▱▱▱▱▱▱▱ 0/5 · 5 left · resets 3 h after next use",
        f"Voice minutes: ▱▱▱▱▱▱▱▱▱▱ 0/5 min · 5 min left · resets {voice.when}",
    ]
    assert (voice.used, voice.limit) == (0, 300)  # counted in seconds, shown in minutes
    assert voice.reset_frequency is ResetFrequency.DAILY
    assert report.lines == report.text.splitlines()[1:]


async def test_usage_counts_answers_and_follows_the_plan(services: Services) -> None:
    user_id = await new_user(services)
    await talk(services, user_id, "hello")
    small = (await usage_report(services, user_id, "en")).quotas[0]
    assert (small.used, small.remaining, small.fraction) == (1, 99, 0.01)
    await give(services, user_id, Purchase(Tier.PRO, "grant"))
    report = await usage_report(services, user_id, "ru")
    assert (report.tier, report.plan) == (Tier.PRO, "Pro")
    assert report.period_end is not None and report.period_end > datetime.now(UTC)
    assert report.header == "📊 Тариф: Pro"
    assert report.quotas[0].label == "Обычные сообщения"
    assert [q.limit for q in report.quotas] == [500, 100, 10, 1800]
    assert report.quotas[0].used == 0  # an upgrade starts fresh


# -- /model ---------------------------------------------------------------------------------


async def test_the_menu_groups_marks_and_locks(services: Services) -> None:
    catalog = services.catalog
    menu = model_menu(catalog, Tier.FREE, "openai/gpt-4o-mini", "en", ModelScope.CONVERSATION)
    assert menu.header == "Current model: GPT-4o mini\nPick one (🔒 needs a bigger plan):"
    assert (menu.current, menu.current_name) == ("openai/gpt-4o-mini", "GPT-4o mini")
    assert [(g.key, g.label) for g in menu.groups] == [
        (QuotaKey.SMALL, "Small messages"),
        (QuotaKey.LARGE, "Large messages"),
        (QuotaKey.IMAGE, "Images"),
    ]
    choices = [choice for group in menu.groups for choice in group.models]
    assert sorted(c.id for c in choices) == sorted(m.id for m in catalog.all())
    assert [c.id for c in choices if c.current] == ["openai/gpt-4o-mini"]
    for choice in choices:
        model = model_at(catalog, choice.index)
        assert model is not None and model.id == choice.id
        assert choice.locked == (not model.available_to(Tier.FREE))
        expected = (model.min_tier, TIERS[model.min_tier].name) if choice.locked else (None, None)
        assert (choice.required_tier, choice.required_plan) == expected
    by_id = {c.id: c for c in choices}
    assert by_id["openai/gpt-4.1"].required_plan == "Pro"
    assert by_id["anthropic/claude-opus-4"].required_plan == "Enterprise"
    # Enterprise unlocks everything; a model gone from the catalog shows by its id.
    rich = model_menu(catalog, Tier.ENTERPRISE, "gone/model", "ru", ModelScope.DEFAULT)
    assert not any(c.locked for g in rich.groups for c in g.models)
    assert not any(c.current for g in rich.groups for c in g.models)
    assert rich.current_name == "gone/model" and rich.header.startswith("Текущая модель: gone")
    assert model_at(catalog, -1) is None and model_at(catalog, len(catalog)) is None


async def test_switching_sets_the_conversation_and_the_default(services: Services) -> None:
    user_id = await new_user(services)
    conversation_id = await talk(services, user_id, "hello")
    user = await me(services, user_id)
    switched = await switch_model(
        services, user, "anthropic/claude-3.5-haiku", "en", ModelScope.CONVERSATION
    )
    assert switched.notice == "✅ Model: Claude 3.5 Haiku"
    assert switched.conversation_id == conversation_id
    assert user.default_model == "anthropic/claude-3.5-haiku"
    assert (await services.conversations.get(user_id, conversation_id)).model_id == (
        "anthropic/claude-3.5-haiku"
    )
    menu = await menu_for(services, await me(services, user_id), "en", ModelScope.CONVERSATION)
    assert menu.current == "anthropic/claude-3.5-haiku"
    # The default only (settings): the conversation keeps its model.
    switched = await switch_model(services, user, "openai/gpt-4o", "en", ModelScope.DEFAULT)
    assert switched.conversation_id is None
    stored = await me(services, user_id)
    assert stored.default_model == "openai/gpt-4o"
    assert (await services.conversations.get(user_id, conversation_id)).model_id == (
        "anthropic/claude-3.5-haiku"
    )
    assert (await menu_for(services, stored, "en", ModelScope.DEFAULT)).current == "openai/gpt-4o"
    assert (await menu_for(services, stored, "en", ModelScope.CONVERSATION)).current == (
        "anthropic/claude-3.5-haiku"
    )


async def test_switching_without_a_conversation_sets_the_default(services: Services) -> None:
    user = await me(services, await new_user(services))
    switched = await switch_model(services, user, "openai/o4-mini", "en", ModelScope.CONVERSATION)
    assert switched.conversation_id is None
    assert (await me(services, user.id)).default_model == "openai/o4-mini"


async def test_a_locked_or_unknown_model_changes_nothing(services: Services) -> None:
    user_id = await new_user(services)
    conversation_id = await talk(services, user_id, "hello")
    user = await me(services, user_id)
    with pytest.raises(ModelLocked) as locked:
        await switch_model(services, user, "openai/gpt-4.1", "en", ModelScope.CONVERSATION)
    assert locked_notice("en", locked.value.model) == (
        "🔒 GPT-4.1 needs the Pro plan. /plan shows how to upgrade."
    )
    with pytest.raises(UnknownModel):
        await switch_model(services, user, "no/such", "en", ModelScope.CONVERSATION)
    assert (await me(services, user_id)).default_model is None
    conversation = await services.conversations.get(user_id, conversation_id)
    assert conversation.model_id == "openai/gpt-4o-mini"
    # The plan that includes it lets it through.
    await give(services, user_id, Purchase(Tier.PRO, "grant"))
    user = await me(services, user_id)
    switched = await switch_model(services, user, "openai/gpt-4.1", "en", ModelScope.CONVERSATION)
    assert switched.model.id == "openai/gpt-4.1"


# -- /history -------------------------------------------------------------------------------


async def test_an_empty_history(services: Services) -> None:
    page = await history_page(services, await new_user(services), "en")
    assert page.empty and page.entries == []
    assert page.text == "No conversations yet. Just send a message."
    assert (page.page, page.pages, page.total) == (1, 1, 0)
    assert not page.has_previous and not page.has_next


async def test_history_pages_newest_first_with_the_current_marked(services: Services) -> None:
    user_id = await new_user(services)
    for i in range(10):
        await talk(services, user_id, f"topic {i}", new=True)
    first = await history_page(services, user_id, "en")
    assert first.text == "🗂 Your conversations (page 1/2):"
    assert [e.title for e in first.entries] == [f"topic {i}" for i in range(9, 1, -1)]
    assert [e.current for e in first.entries] == [True] + [False] * 7
    assert (first.previous_page, first.next_page, first.total) == (None, 2, 10)
    assert first.has_next and not first.has_previous
    entry = first.entries[0]
    assert entry.model_id == "openai/gpt-4o-mini"
    assert entry.actions == (
        ConversationAction.OPEN,
        ConversationAction.RENAME,
        ConversationAction.DELETE,
        ConversationAction.EXPORT,
    )
    second = await history_page(services, user_id, "ru", page=2)
    assert second.text == "🗂 Ваши разговоры (стр. 2/2):"
    assert [e.title for e in second.entries] == ["topic 1", "topic 0"]
    assert (second.previous_page, second.next_page) == (1, None)
    # Past the end is the last page; a smaller page size makes more pages.
    assert (await history_page(services, user_id, "en", page=99)).page == 2
    assert (await history_page(services, user_id, "en", per_page=3)).pages == 4


async def test_open_and_delete_move_the_current_marker(services: Services) -> None:
    user_id = await new_user(services)
    cats = await talk(services, user_id, "about cats", new=True)
    dogs = await talk(services, user_id, "about dogs", new=True)
    opened = await open_conversation(services, user_id, cats)
    assert opened.title == "about cats"
    page = await history_page(services, user_id, "en")
    assert {e.title: e.current for e in page.entries} == {"about cats": True, "about dogs": False}
    deleted = await delete_conversation(services, user_id, cats)
    assert deleted.id == cats
    page = await history_page(services, user_id, "en")
    assert [(e.id, e.current) for e in page.entries] == [(dogs, False)]
    assert (await me(services, user_id)).current_conversation_id is None
    # Someone else's, or one already gone: not found.
    stranger = await new_user(services)
    for who, which in ((stranger, dogs), (user_id, cats)):
        with pytest.raises(ConversationNotFound):
            await open_conversation(services, who, which)
        with pytest.raises(ConversationNotFound):
            await delete_conversation(services, who, which)
    assert len((await history_page(services, user_id, "en")).entries) == 1


async def test_rename_and_export_the_current_conversation(services: Services) -> None:
    user_id = await new_user(services)
    assert await rename_current(services, user_id, "  ", "en") == "Usage: /rename New title"
    assert await rename_current(services, user_id, "Too early", "en") == (
        "There is no conversation yet."
    )
    assert await export_current(services, user_id) is None
    await talk(services, user_id, "Explain tides")
    assert await rename_current(services, user_id, "  Tide   talk ", "en") == (
        "✏️ Renamed to “Tide talk”."
    )
    exported = await export_current(services, user_id)
    assert exported is not None
    assert (exported.filename, exported.caption) == ("Tide-talk.md", "Tide talk")
    assert exported.content.startswith("# Tide talk\n")
    assert "\nExplain tides\n" in exported.content
    # Any entry of the list, not only the current one; never someone else's.
    older = exported
    newer = await talk(services, user_id, "Another topic", new=True)
    page = await history_page(services, user_id, "en")
    tide = next(e.id for e in page.entries if e.title == "Tide talk")
    assert await rename_conversation(services, user_id, tide, "Tides", "en") == (
        "✏️ Renamed to “Tides”."
    )
    assert (await export_conversation(services, user_id, tide)).content == older.content.replace(
        "# Tide talk", "# Tides"
    )
    current = await services.conversations.current(user_id)
    assert current is not None and current.id == newer
    stranger = await new_user(services)
    with pytest.raises(ConversationNotFound):
        await rename_conversation(services, stranger, tide, "Mine now", "en")
    with pytest.raises(ConversationNotFound):
        await export_conversation(services, stranger, tide)


def test_export_file_names() -> None:
    assert export_filename("Explain tides") == "Explain-tides.md"
    assert export_filename("¿¿??") == "conversation.md"
    assert export_filename("x" * 100) == "x" * 40 + ".md"


# -- /settings ------------------------------------------------------------------------------


async def test_settings_show_prompt_model_and_language(services: Services) -> None:
    user = await me(services, await new_user(services))
    view = settings_view(services, user, "en")
    assert view.text == (
        "⚙️ Settings\n\nSystem prompt: none\nDefault model: GPT-4o mini\nLanguage: English"
    )
    assert (view.system_prompt, view.default_model, view.language) == (
        None,
        "openai/gpt-4o-mini",
        "en",
    )
    assert [(b.op, b.label, b.value, b.selected) for b in view.buttons] == [
        (SettingsOp.PROMPT, "✍️ System prompt", "", False),
        (SettingsOp.CLEAR_PROMPT, "🧹 Clear prompt", "", False),
        (SettingsOp.MODEL, "🤖 Default model", "", False),
        (SettingsOp.LANGUAGE, "🌐 English", "en", True),
        (SettingsOp.LANGUAGE, "🌐 Русский", "ru", False),
    ]


async def test_settings_changes(services: Services) -> None:
    user_id = await new_user(services)
    user = await me(services, user_id)
    assert await save_system_prompt(services, user_id, "p" * 5000, "en") == (
        "✅ System prompt saved."
    )
    user = await me(services, user_id)
    assert user.system_prompt == "p" * PROMPT_MAX_CHARS
    assert f"System prompt: {'p' * 300}\n" in settings_view(services, user, "en").text
    assert await choose_language(services, user, "xx") is None
    assert await choose_language(services, user, "ru") == "✅ Язык: русский"
    assert user.language == "ru" and (await me(services, user_id)).language == "ru"
    view = settings_view(services, user, "ru")
    assert view.text.startswith("⚙️ Настройки") and "Язык: Русский" in view.text
    assert [b.selected for b in view.buttons if b.op is SettingsOp.LANGUAGE] == [False, True]
    assert await clear_system_prompt(services, user, "ru") == "✅ Системный промпт очищен."
    assert user.system_prompt is None and (await me(services, user_id)).system_prompt is None
    await switch_model(services, user, "openai/gpt-4o", "en", ModelScope.DEFAULT)
    assert settings_view(services, user, "en").default_model_name == "GPT-4o"


# -- /cancel --------------------------------------------------------------------------------


async def test_cancel_with_nothing_running(services: Services) -> None:
    user_id = await new_user(services)
    assert (await cancel(services, user_id, "en", pending=False)).text == "Nothing to cancel."
    await talk(services, user_id, "done already")
    result = await cancel(services, user_id, "en", pending=False)
    assert (result.stopped, result.text) == (False, "Nothing to cancel.")
    # A question the platform was asking counts.
    assert (await cancel(services, user_id, "ru", pending=True)).text == "Отменено."


async def test_cancel_stops_the_streaming_answer(services: Services, fake_llm: FakeLLM) -> None:
    user_id = await new_user(services)
    fake_llm.script(Reply(chunks=[f"slow{i} " for i in range(50)], chunk_delay=0.1))
    generation = await services.chat.send(user_id, "Go slowly")
    running = asyncio.create_task(finish(generation))
    await fake_llm.wait_for_requests(1)
    result = await cancel(services, user_id, "en", pending=False)
    assert (result.stopped, result.text) == (True, "Cancelled.")
    outcome = await running
    assert outcome.status == "cancelled"
    assert (await cancel(services, user_id, "en", pending=False)).stopped is False


# -- /plan: what is on sale where -------------------------------------------------------------


@pytest.fixture
async def build(db: Database, fake_llm: FakeLLM) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Services and payments with the given settings sections on the test database."""
    made: list[tuple[Services, Payments]] = []

    async def make(**sections: Any) -> tuple[Services, Payments]:
        base = make_settings(db.url, fake_llm.base_url)
        settings = Settings(db=base.db, llm=base.llm, limits=base.limits, **sections)
        llm = LLMClient(fake_llm.base_url, "k", max_retries=0)
        services = Services.build(settings, llm=llm, db=db)
        payments = Payments.build(services, PlanCatalog.parse({"pro": PRICES}))
        made.append((services, payments))
        return services, payments

    yield make
    for services, payments in made:
        await payments.close()
        await services.llm.aclose()


PRICES = {"xtr": 500, "rub": 99000, "inr": 84900}


def providers(*, links_in_telegram: bool = False, sku: int | None = None) -> dict[str, Any]:
    return {
        "payments": PaymentSettings(links_in_telegram=links_in_telegram),
        "yookassa": YooKassaSettings(shop_id="1", secret_key=SecretStr("k")),
        "razorpay": RazorpaySettings(
            key_id="rzp", key_secret=SecretStr("s"), plan_ids=["pro:plan_pro"]
        ),
        "discord": DiscordSettings(sku_pro=sku),
    }


def methods(items: list[Any]) -> list[PayMethod]:
    return [offer.method for offer in items]


FREE = PlanView(Tier.FREE, "active", None, False, None, None, False)


async def test_telegram_sells_stars_by_default(build: Callable[..., Awaitable[Any]]) -> None:
    services, payments = await build(**providers(sku=SKU))
    found = offers(services, payments, "telegram", FREE, "en")
    assert methods(found) == [PayMethod.STARS, PayMethod.STARS_MONTHLY]
    stars, monthly = found
    assert (stars.kind, stars.tier, stars.plan, stars.amount, stars.currency) == (
        OfferKind.INVOICE,
        Tier.PRO,
        "Pro",
        500,
        "XTR",
    )
    assert stars.label == "⭐ Pro · 500 ⭐ / 30 days" and not stars.recurring
    assert monthly.label == "⭐ Pro · 500 ⭐ a month, renews" and monthly.recurring


async def test_telegram_shows_links_when_the_operator_allows(
    build: Callable[..., Awaitable[Any]],
) -> None:
    services, payments = await build(**providers(links_in_telegram=True, sku=SKU))
    found = offers(services, payments, "telegram", FREE, "en")
    assert methods(found) == [
        PayMethod.STARS,
        PayMethod.STARS_MONTHLY,
        PayMethod.YOOKASSA,
        PayMethod.RAZORPAY,
    ]
    yookassa, razorpay = found[2:]
    assert (yookassa.kind, yookassa.price, yookassa.recurring) == (OfferKind.LINK, "990 ₽", False)
    assert yookassa.label == "💳 Pro · 990 ₽ / 30 days (card, YooKassa)"
    assert (razorpay.kind, razorpay.price, razorpay.recurring) == (OfferKind.LINK, "₹849", True)


async def test_discord_sells_links_and_its_sku(build: Callable[..., Awaitable[Any]]) -> None:
    services, payments = await build(**providers(sku=SKU))
    found = offers(services, payments, "discord", FREE, "en")
    assert methods(found) == [PayMethod.YOOKASSA, PayMethod.RAZORPAY, PayMethod.DISCORD_SKU]
    sku = found[-1]
    assert (sku.kind, sku.sku_id, sku.tier, sku.price, sku.recurring) == (
        OfferKind.SKU,
        SKU,
        Tier.PRO,
        None,
        True,
    )
    assert sku.label == "💎 Pro · Discord subscription"
    # Without the SKU, the links; without anything, nothing (and never Stars).
    services, payments = await build(**providers())
    assert methods(offers(services, payments, "discord", FREE, "en")) == [
        PayMethod.YOOKASSA,
        PayMethod.RAZORPAY,
    ]
    services, payments = await build(discord=DiscordSettings(sku_pro=None))
    assert offers(services, payments, "discord", FREE, "en") == []
    services, payments = await build(discord=DiscordSettings(sku_pro=SKU))
    assert methods(offers(services, payments, "discord", FREE, "en")) == [PayMethod.DISCORD_SKU]
    assert offers(services, payments, "console", FREE, "en") == []


async def test_no_smaller_plan_and_no_second_renewal(
    build: Callable[..., Awaitable[Any]],
) -> None:
    services, payments = await build(**providers(links_in_telegram=True, sku=SKU))
    end = datetime.now(UTC) + timedelta(days=20)
    renewing = PlanView(Tier.PRO, "active", end, False, "telegram_stars", "sub-1", True)
    assert methods(offers(services, payments, "telegram", renewing, "en")) == [
        PayMethod.STARS,
        PayMethod.YOOKASSA,
    ]
    assert methods(offers(services, payments, "discord", renewing, "en")) == [PayMethod.YOOKASSA]
    cancelled = PlanView(Tier.PRO, "cancelled", end, True, "telegram_stars", "sub-1", True)
    assert PayMethod.STARS_MONTHLY in methods(
        offers(services, payments, "telegram", cancelled, "en")
    )
    bigger = PlanView(Tier.ENTERPRISE, "active", end, False, "grant", None, False)
    assert offers(services, payments, "telegram", bigger, "en") == []


async def test_a_pressed_offer_is_checked_against_the_platform(
    build: Callable[..., Awaitable[Any]],
) -> None:
    services, payments = await build(**providers(sku=SKU))
    offer = find_offer(services, payments, "telegram", "pro", PayMethod.STARS_MONTHLY, "en")
    assert offer is not None and offer.recurring and offer.amount == 500
    refused: list[tuple[Platform, str, PayMethod]] = [
        ("telegram", "pro", PayMethod.YOOKASSA),  # links are off in Telegram
        ("telegram", "pro", PayMethod.DISCORD_SKU),
        ("telegram", "enterprise", PayMethod.STARS),
        ("telegram", "nope", PayMethod.STARS),
        ("discord", "pro", PayMethod.STARS),
        ("console", "pro", PayMethod.YOOKASSA),
    ]
    for platform, tier, method in refused:
        assert find_offer(services, payments, platform, tier, method, "en") is None
    sku = find_offer(services, payments, "discord", Tier.PRO, PayMethod.DISCORD_SKU, "en")
    assert sku is not None and sku.sku_id == SKU
    # Whether this person may buy it now.
    user_id = await new_user(services)
    assert await purchase_refusal_text(services, user_id, offer, "en") is None
    await give(
        services,
        user_id,
        Purchase(Tier.PRO, "telegram_stars", provider_subscription_id="s-1", recurring=True),
    )
    refusal = await purchase_refusal_text(services, user_id, offer, "en")
    assert refusal is not None and "already have a subscription that renews" in refusal


async def test_the_plan_page(build: Callable[..., Awaitable[Any]]) -> None:
    services, payments = await build()
    user_id = await new_user(services)
    page = await plan_page(services, payments, user_id, "telegram", "en")
    usage = await usage_report(services, user_id, "en")
    assert page.status is None and page.plan == "Free"
    assert [(line.tier, line.current) for line in page.tiers] == [
        (Tier.FREE, True),
        (Tier.PRO, False),
        (Tier.ENTERPRISE, False),
    ]
    assert page.tiers[1].limits == {
        QuotaKey.SMALL: 500,
        QuotaKey.LARGE: 100,
        QuotaKey.IMAGE: 10,
        QuotaKey.VOICE: 1800,
    }
    assert page.text.splitlines() == [
        "💳 Your plan: Free",
        *usage.lines,
        "",
        "✅ Free: 100 small and 20 large messages a month, 5 images every 3 hours",
        "• Pro: 500 small and 100 large messages a month, 10 images every 3 hours",
        "• Enterprise: 5000 small and 1000 large messages a month, 100 images every 3 hours",
        "",
        "Upgrade or extend:",
        "Enterprise is priced individually: the bot's administrators.",
    ]
    # The terminal chat sells nothing; a granted plan shows its status.
    await give(services, user_id, Purchase(Tier.PRO, "grant", period=timedelta(days=10)))
    page = await plan_page(services, None, user_id, "console", "en")
    assert page.offers == []
    assert page.footer[0] == "Plans are not sold on this bot yet."
    until = (datetime.now(UTC) + timedelta(days=10)).strftime("%Y-%m-%d")
    assert page.status == f"Status: active · until {until}"
    assert page.text.splitlines()[:2] == ["💳 Your plan: Pro", page.status]


def test_status_lines() -> None:
    end = datetime(2030, 1, 2, tzinfo=UTC)
    assert status_line("en", FREE) is None
    renewing = PlanView(Tier.PRO, "active", end, False, "razorpay", "sub_1", True)
    assert status_line("en", renewing) == (
        "Status: active · until 2030-01-02 · renews automatically"
    )
    cancelled = PlanView(Tier.PRO, "cancelled", end, True, "razorpay", "sub_1", True)
    assert status_line("ru", cancelled) == (
        "Статус: отменён, доступ сохраняется до конца периода · до 2030-01-02"
    )


# -- /cancel_subscription -------------------------------------------------------------------


def test_cancellation_steps_by_provider() -> None:
    end = datetime(2030, 1, 2, tzinfo=UTC)

    def step(provider: str | None, sub_id: str | None, recurring: bool) -> CancelStep:
        view = PlanView(Tier.PRO, "active", end, False, provider, sub_id, recurring)
        return cancellation(view, "en").step

    assert cancellation(FREE, "en").step is CancelStep.NOTHING
    assert cancellation(FREE, "en").text == "You have no subscription to cancel."
    already = cancellation(PlanView(Tier.PRO, "cancelled", end, True, None, None, False), "en")
    assert already.step is CancelStep.ALREADY
    assert already.text == "Your subscription is already cancelled; Pro stays until 2030-01-02."
    assert step("telegram_stars", "charge-1", True) is CancelStep.STOP_STARS
    assert step(RAZORPAY, "sub_1", True) is CancelStep.STOP_RAZORPAY
    assert step("yookassa", "pay-1", True) is CancelStep.RECORD  # we renew those ourselves
    assert step("telegram_stars", "charge-1", False) is CancelStep.RECORD  # one-off
    assert step("grant", None, False) is CancelStep.RECORD
    in_discord = cancellation(
        PlanView(Tier.PRO, "active", end, False, "discord", "ent-1", True), "en"
    )
    assert in_discord.step is CancelStep.IN_DISCORD
    assert in_discord.text is not None and "Cancel it in Discord" in in_discord.text
    assert offers_module.RAZORPAY_PROVIDER == RAZORPAY


async def _outbox(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


async def test_cancelling_a_one_off_plan(build: Callable[..., Awaitable[Any]]) -> None:
    services, payments = await build()
    user_id = await new_user(services)
    assert await cancel_subscription(services, payments, user_id, "discord", "en") == (
        "You have no subscription to cancel."
    )
    await give(services, user_id, Purchase(Tier.PRO, "yookassa"))
    before = await _outbox(services)
    assert await cancel_subscription(services, payments, user_id, "discord", "en") is None
    view = await services.subscriptions.view(user_id)
    assert view.cancel_at_period_end and view.status == "cancelled"
    assert await _outbox(services) == before + 1  # the confirmation
    again = await cancel_subscription(services, payments, user_id, "discord", "en")
    assert again is not None and "already cancelled" in again


async def test_a_stars_subscription_is_stopped_at_telegram_first(
    build: Callable[..., Awaitable[Any]],
) -> None:
    services, payments = await build()
    user_id = await new_user(services)
    stars = Purchase(Tier.PRO, "telegram_stars", provider_subscription_id="sub-1", recurring=True)
    await give(services, user_id, stars)
    # Elsewhere the person is sent to Telegram, and nothing changes.
    text = await cancel_subscription(services, payments, user_id, "discord", "en")
    assert text is not None and "Telegram" in text
    assert not (await services.subscriptions.view(user_id)).cancel_at_period_end

    async def refuses(charge_id: str) -> None:
        raise RuntimeError("Bot API down")

    text = await cancel_subscription(
        services, payments, user_id, "telegram", "en", stop_stars=refuses
    )
    assert text == (
        "The payment provider did not confirm the cancellation. Please try again later."
    )
    assert not (await services.subscriptions.view(user_id)).cancel_at_period_end
    stopped: list[str] = []

    async def stop(charge_id: str) -> None:
        stopped.append(charge_id)

    assert (
        await cancel_subscription(services, payments, user_id, "telegram", "en", stop_stars=stop)
        is None
    )
    assert stopped == ["sub-1"]
    assert (await services.subscriptions.view(user_id)).cancel_at_period_end


async def test_history_lists_only_the_persons_own(services: Services) -> None:
    owner = await new_user(services)
    await talk(services, owner, "mine")
    other = await new_user(services)
    assert (await history_page(services, other, "en")).empty
    async with services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(Conversation)) == 1
