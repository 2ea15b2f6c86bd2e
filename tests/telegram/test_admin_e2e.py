"""/admin on Telegram, end to end: the real aiogram stack polling the fake Bot API,
an admin pressing through the inline menu, and the people it acts on.

- A non-admin's /admin is an unknown command, a forged admin button an unknown
  button, and neither reaches the model or changes anything.
- Only admins' chats list /admin in the command menu.
- Find a person, give a plan, take it away, reset quotas, read the audit log.
- Models off and on.
- A refund pressed twice: one refundStarPayment call; the second press hears so.
- A ban while the person's answer streams: it stops, and later messages get the
  banned note without a model call.
- A broadcast written, previewed, sent to everyone once; another cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.telegram.broadcast import attach
from bot.telegram.factory import register_commands
from bot.telegram.routers.admin_broadcast import progress_markup
from core.accounts import PlatformProfile
from core.admin.access import Actor
from core.admin.banned import banned_note
from core.admin.models import disable_model, enable_model
from core.broadcast import Status
from core.config import DatabaseSettings, LimitSettings, LLMSettings, Settings, TelegramSettings
from core.db.engine import Database
from core.db.models import AuditLog, BroadcastRecipient, User
from core.i18n import t
from core.llm.client import LLMClient
from core.services import Services
from core.tiers import Tier
from tests.broadcast.conftest import add_people
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness, until

ADMIN = 42


@pytest.fixture
async def services(db: Database, fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[Services]:
    """The core services with TELEGRAM_ADMIN_IDS=42."""
    settings = Settings(
        db=DatabaseSettings(database_url=db.url),
        llm=LLMSettings.model_validate(
            {
                "base_url": fake_llm.base_url,
                "MODEL_CATALOG_REFRESH_HOURS": 0,
                "MODEL_CATALOG_CACHE_FILE": tmp_path / "models.json",
            }
        ),
        limits=LimitSettings(),
        telegram=TelegramSettings(admin_ids=[ADMIN]),
    )
    llm = LLMClient(
        fake_llm.base_url, "test-key", max_retries=0, first_token_timeout=5, idle_timeout=5
    )
    built = Services.build(settings, llm=llm, db=db)
    try:
        yield built
    finally:
        await built.broadcasts.close()
        await llm.aclose()


@pytest.fixture
async def app(services: Services, tg: FakeTelegram, fake_llm: FakeLLM) -> AsyncIterator[Harness]:
    tg.user(USER, first_name="Ann", username="ann", language_code="en")
    tg.user(ADMIN, first_name="Boss", username="boss", language_code="en")
    harness = await start_harness(services, tg, fake_llm)
    services.broadcasts.progress_interval = 0.2
    attach(services.broadcasts, harness.bot, progress_markup)
    try:
        yield harness
    finally:
        await stop_harness(harness)


# -- helpers --------------------------------------------------------------------------


def last(app: Harness, chat_id: int = ADMIN) -> StoredMessage:
    message = app.tg.last_message(chat_id)
    assert message is not None
    return message


async def said(app: Harness, text: str, chat_id: int = ADMIN, within: float = 10) -> StoredMessage:
    """Send `text` as `chat_id` and wait for the bot's next message there."""
    before = len(app.bot_messages(chat_id))
    app.tg.send_text(chat_id, text)
    await until(lambda: len(app.bot_messages(chat_id)) > before, within)
    return app.bot_messages(chat_id)[-1]


def button(message: StoredMessage, label: str) -> str:
    """The callback data of the button whose text contains `label`."""
    for key in message.buttons:
        if label in str(key.get("text", "")):
            return str(key["callback_data"])
    labels = [key.get("text") for key in message.buttons]
    raise AssertionError(f"no button {label!r} on message {message.message_id}: {labels}")


async def press(app: Harness, message: StoredMessage, label: str, chat_id: int = ADMIN) -> str:
    """Press a button and wait until Telegram got its answer; the answer's text."""
    query = app.tg.press(chat_id, message.message_id, button(message, label))
    await until(lambda: app.tg.callback_queries[query].answered)
    return app.tg.callback_queries[query].text or ""


async def screen(app: Harness, message_id: int, contains: str) -> StoredMessage:
    """The admin's menu message once it shows `contains`."""
    await until(lambda: contains in (app.tg.message(ADMIN, message_id).text or ""))
    return app.tg.message(ADMIN, message_id)


async def ann(services: Services) -> User:
    return await services.accounts.upsert(
        PlatformProfile("telegram", str(USER), username="ann", display_name="Ann")
    )


async def audit_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


# -- who ------------------------------------------------------------------------------


async def test_a_non_admin_gets_the_unknown_command_reply_and_nothing_else(
    app: Harness, fake_llm: FakeLLM
) -> None:
    unknown = await said(app, "/nosuchcommand", USER)
    for text in ("/admin", "/admin stats", "/admin telegram:42", "/admin broadcast"):
        reply = await said(app, text, USER)
        assert reply.text == unknown.text == t("en", "unknown_command")
        assert not reply.buttons
    # A forged admin button (a modified client can send any data).
    query = app.tg.press(USER, reply.message_id, "ad:st:0::0", forge=True)
    await until(lambda: app.tg.callback_queries[query].answered)
    assert app.tg.callback_queries[query].text == t("en", "stale_button")
    # A typed line after a refused /admin broadcast is a chat message, not a draft.
    assert await app.services.broadcasts.recent() == []
    assert fake_llm.requests_count == 0
    assert await audit_count(app.services) == 0


async def test_only_admins_chats_list_admin_in_the_menu(app: Harness) -> None:
    await register_commands(app.bot, [ADMIN, 777])  # 777 never opened the bot

    default = [c["command"] for c in app.tg.my_commands()]
    mine = [c["command"] for c in app.tg.my_commands(scope={"type": "chat", "chat_id": ADMIN})]
    russian = app.tg.my_commands(scope={"type": "chat", "chat_id": ADMIN}, language_code="ru")
    assert "admin" not in default and "admin" in mine
    assert mine == [*default, "admin"]
    assert {"command": "admin", "description": t("ru", "cmd.admin")} in russian


# -- people ---------------------------------------------------------------------------


async def test_find_grant_revoke_reset_and_the_audit_log(app: Harness) -> None:
    person = await ann(app.services)
    menu = await said(app, "/admin")
    assert menu.text == t("en", "admin.menu")

    await press(app, menu, "Find a person")
    await until(lambda: last(app).text == t("en", "admin.ask.person"))
    card = await said(app, "@ann")
    assert f"#{person.id} Ann" in (card.text or "")
    assert "💳 Free" in (card.text or "")

    await press(app, card, "Give a plan")
    plans = await screen(app, card.message_id, "Which plan")
    await press(app, plans, "Pro")
    days = await screen(app, card.message_id, "for how many days")
    assert [b["text"] for b in days.buttons][:4] == ["7 days", "30 days", "90 days", "365 days"]
    notice = await press(app, days, "30 days")
    assert notice.startswith(f"✅ #{person.id}: Free → Pro until")
    card = await screen(app, card.message_id, "💳 Pro (active)")
    # Ann hears about her new plan as for any plan change.
    await until(lambda: any("Pro" in (m.text or "") for m in app.bot_messages(USER)))

    await press(app, card, "Take the plan away")
    confirm = await screen(app, card.message_id, "Take Pro away")
    await press(app, confirm, "No")
    card = await screen(app, card.message_id, "💳 Pro")
    await press(app, card, "Take the plan away")
    confirm = await screen(app, card.message_id, "Take Pro away")
    assert "taken away" in await press(app, confirm, "Yes")
    card = await screen(app, card.message_id, "💳 Free")

    assert "reset to 0" in await press(app, card, "Reset quotas")

    log = await said(app, "/admin audit")
    lines = (log.text or "").splitlines()
    assert "page 1/1 · 3 in all" in lines[0]
    assert [line.split(" · ")[2].split(" ")[0] for line in lines[1:]] == [
        "reset_quota",
        "revoke",
        "grant",
    ]
    assert all("telegram:42" in line for line in lines[1:])
    # Nobody by that name: a clear line, and the menu still waits for a name.
    await press(app, await said(app, "/admin"), "Find a person")
    await until(lambda: last(app).text == t("en", "admin.ask.person"))
    assert "Nobody matches" in ((await said(app, "@nobody")).text or "")
    assert f"#{person.id}" in ((await said(app, f"#{person.id}")).text or "")


async def test_audit_pages_and_models_off_and_on(app: Harness) -> None:
    models = await said(app, "/admin models")
    catalog = app.services.catalog.all()
    other = next(m for m in catalog if m.id != app.services.catalog.default.id)
    notice = await press(app, models, f"✅ {other.name}")
    assert notice.startswith(f"⛔ {other.name}")
    models = await screen(app, models.message_id, "turned off: 1")
    assert other.id in app.services.catalog.disabled
    default = app.services.catalog.default
    refused = await press(app, models, f"✅ {default.name}")
    assert "default model" in refused
    await press(app, models, f"⛔ {other.name}")
    await screen(app, models.message_id, "turned off: 0")
    assert other.id not in app.services.catalog.disabled

    actor = Actor(None, "cli")
    for _ in range(12):  # past one page of the log (presses this fast would be throttled)
        await disable_model(app.services, actor, other.id)
        await enable_model(app.services, actor, other.id)
    log = await said(app, "/admin audit")
    assert "page 1/" in (log.text or "")
    await press(app, log, "Older")
    older = await screen(app, log.message_id, "page 2/")
    await press(app, older, "Newer")
    await screen(app, log.message_id, "page 1/")


# -- refunds --------------------------------------------------------------------------


async def stars_paid(app: Harness, charge: str, *, monthly: bool = False) -> int:
    """Ann buys Pro for Stars in the chat (`monthly`: a Stars subscription): our
    user id."""
    payments = app.dispatcher["payments"]
    user = await ann(app.services)
    spec = await payments.invoices.new_invoice(user.id, Tier.PRO, recurring=monthly)
    assert spec is not None
    query = app.tg.pre_checkout(USER, spec.payload, "XTR", spec.amount)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    if monthly:
        app.tg.successful_payment(
            USER, spec.payload, "XTR", spec.amount, charge, is_recurring=True,
            is_first_recurring=True, subscription_expiration_date=int(time.time()) + 30 * 86400,
        )  # fmt: skip
    else:
        app.tg.successful_payment(USER, spec.payload, "XTR", spec.amount, charge)
    await until(lambda: any("Pro is active" in (m.text or "") for m in app.bot_messages(USER)))
    return user.id


async def test_a_refund_pressed_twice_refunds_once(app: Harness) -> None:
    user_id = await stars_paid(app, "charge-77")
    card = await said(app, "/admin telegram:1001")
    await press(app, card, "Refund")
    confirm = await screen(app, card.message_id, "Refund 500")
    yes = button(confirm, "Yes")

    # Two presses before the first is answered (a double tap, a laggy client).
    first = app.tg.press(ADMIN, confirm.message_id, yes)
    second = app.tg.press(ADMIN, confirm.message_id, yes)
    queries = app.tg.callback_queries
    await until(lambda: queries[first].answered and queries[second].answered)

    answers = sorted([queries[first].text or "", queries[second].text or ""])
    assert len(app.tg.calls_of("refundStarPayment")) == 1
    assert any(a.startswith("↩️ Refunded 500") for a in answers), answers
    assert any("already" in a for a in answers), answers
    card = await screen(app, card.message_id, "💳 Free")
    assert "refunded" in (card.text or "")
    assert not any("Refund" in str(b.get("text")) for b in card.buttons)  # nothing left to give
    person = await app.services.accounts.get(user_id)
    assert person is not None and person.tier == "free"


async def test_a_refunded_stars_subscription_stops_renewing(app: Harness) -> None:
    await stars_paid(app, "sub-9", monthly=True)
    card = await said(app, "/admin @ann")
    assert "renews" in (card.text or "")
    await press(app, card, "Refund")
    confirm = await screen(app, card.message_id, "Refund 500")
    await press(app, confirm, "Yes")
    card = await screen(app, card.message_id, "💳 Free")
    assert "Its renewals at Telegram Stars are stopped." in (card.text or "")
    (stop,) = app.tg.calls_of("editUserStarSubscription")
    assert stop.ok
    assert stop.params["telegram_payment_charge_id"] == "sub-9"
    assert stop.params["is_canceled"] is True and stop.params["user_id"] == USER


# -- bans -----------------------------------------------------------------------------


async def test_a_ban_stops_the_streaming_answer_and_keeps_the_model_out(
    app: Harness, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply(text="word " * 400, chunk_delay=0.05))
    app.tg.send_text(USER, "tell me a long story")
    await until(lambda: any(m.buttons for m in app.bot_messages(USER)))  # ⏹ is up
    person = await ann(app.services)

    card = await said(app, "/admin @ann")
    await press(app, card, "Ban")
    await until(lambda: last(app).text == t("en", "admin.ask.reason"))
    banned = await said(app, "spamming")
    assert f"🚫 #{person.id} is banned. Reason: spamming" in (banned.text or "")
    assert "told to stop: 1" in (banned.text or "")
    await app.answered(1, USER)
    story = app.bot_messages(USER)[-1]
    assert len((story.text or "").split()) < 400  # cut, not finished
    calls = fake_llm.requests_count

    note = await said(app, "hello?", USER)
    assert note.text == banned_note("en")
    app.tg.send_text(USER, "anyone?")  # within the hour: no second note
    await asyncio.sleep(0.5)
    assert app.bot_messages(USER)[-1].message_id == note.message_id
    assert fake_llm.requests_count == calls

    assert "not banned any more" in await press(app, banned, "Unban")
    fake_llm.script(Reply(text="welcome back"))
    await said(app, "hi again", USER)
    await until(lambda: fake_llm.requests_count == calls + 1)


# -- broadcasts -----------------------------------------------------------------------


async def test_a_broadcast_written_previewed_and_sent_to_everyone_once(
    app: Harness, db: Database
) -> None:
    people = await add_people(db, 30, first_id=50_000)
    for person in people:
        app.tg.user(int(person.accounts["telegram"]))
    app.tg.block(50_003, notify=False)

    menu = await said(app, "/admin")
    await press(app, menu, "Broadcast")
    await until(lambda: last(app).text == t("en", "admin.broadcast.ask"))
    app.tg.send_text(ADMIN, "**Big news**: the new models are here")
    await until(lambda: "how people will see it" in (last(app).text or ""))
    sample, control = app.bot_messages(ADMIN)[-2:]
    assert sample.text == "Big news: the new models are here"
    assert [e["type"] for e in sample.entities] == ["bold"]
    assert "To: everyone, 31 people" in (control.text or "")  # the admin too

    await press(app, control, "Enterprise")
    control = await screen(app, control.message_id, "0 people")
    assert not any("Send" in str(b.get("text")) for b in control.buttons)
    await press(app, control, "Everyone")
    control = await screen(app, control.message_id, "31 people")
    send = button(control, "📣 Send")
    await press(app, control, "📣 Send")
    done = await screen(app, control.message_id, "✅ Done: 31/31")
    assert "sent 30" in (done.text or "") and "blocked 1" in (done.text or "")
    assert not done.buttons

    for person in people:
        chat = int(person.accounts["telegram"])
        got = [m for m in app.tg.messages(chat, from_bot=True) if "Big news" in (m.text or "")]
        assert len(got) == (0 if chat == 50_003 else 1), chat
    mine = [m for m in app.bot_messages(ADMIN) if "Big news" in (m.text or "")]
    assert len(mine) == 2  # the sample, and the broadcast itself
    # Pressing Send again (an old client) starts nothing new.
    app.tg.press(ADMIN, control.message_id, send, forge=True)
    await asyncio.sleep(0.5)
    sent = len(app.tg.calls_of("sendMessage"))
    await asyncio.sleep(0.5)
    assert len(app.tg.calls_of("sendMessage")) == sent


async def test_a_broadcast_paused_resumed_and_cancelled_from_its_message(
    app: Harness, db: Database
) -> None:
    people = await add_people(db, 150, first_id=60_000)
    for person in people:
        app.tg.user(int(person.accounts["telegram"]))
    draft = await app.services.broadcasts.create_draft(None, "Hello")
    menu = await said(app, "/admin broadcast")
    assert menu.text == t("en", "admin.broadcast.ask")
    app.tg.send_text(ADMIN, "A long one, sent slowly")
    await until(lambda: "how people will see it" in (last(app).text or ""))
    control = last(app)
    await press(app, control, "📣 Send")
    running = await screen(app, control.message_id, "📣 Sending")
    await press(app, running, "Pause")
    paused = await screen(app, control.message_id, "⏸ Paused")
    await press(app, paused, "Resume")
    running = await screen(app, control.message_id, "📣 Sending")
    await press(app, running, "Cancel")
    cancelled = await screen(app, control.message_id, "⏹ Cancelled")
    assert "not sent" in (cancelled.text or "")
    calls = len(app.tg.calls_of("sendMessage"))
    await asyncio.sleep(1)
    assert len(app.tg.calls_of("sendMessage")) == calls  # nothing after the cancel
    async with db.read() as session:
        counts = dict(
            (
                await session.execute(
                    select(BroadcastRecipient.state, func.count()).group_by(
                        BroadcastRecipient.state
                    )
                )
            ).all()
        )
    assert counts.get("sent", 0) < 150
    # The untouched draft is still a draft; the sent one ended cancelled.
    assert (await app.services.broadcasts.get(draft.id)).status is Status.DRAFT
    # Each step is in the audit log, by the admin who pressed it.
    async with db.read() as session:
        rows = (await session.scalars(select(AuditLog).order_by(AuditLog.id))).all()
    assert [(r.action, r.details["actor"]) for r in rows] == [
        ("broadcast_start", "telegram:42"),
        ("broadcast_pause", "telegram:42"),
        ("broadcast_resume", "telegram:42"),
        ("broadcast_cancel", "telegram:42"),
    ]
    assert rows[0].details["after"] == {"status": "running", "recipients": 151}
    assert rows[3].details["before"] == {"status": "running"}
