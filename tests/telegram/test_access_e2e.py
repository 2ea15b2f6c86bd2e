"""A private deployment on Telegram, end to end (ACCESS_MODE=invite): the real
aiogram stack polling the fake Bot API, the fake LLM, the real database.

- Admins and allowlisted people (by id, by @username in any case) are answered.
- Anyone else hears "this bot is private" once a day, and nothing of theirs
  reaches the model, a quota or the conversations.
- An invite's t.me link (`/start CODE`) lets a person in; a one-use invite is
  used up for the second person; an expired one says so.
- An admin adds and removes a person without a restart (audited).
- Pre-checkout and successful_payment are never held back.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bot.telegram.callbacks import Buy, PayMethod
from core.accounts import PlatformProfile
from core.admin import allowlist
from core.admin.access import CLI_ACTOR
from core.clock import utcnow
from core.config import (
    AccessSettings,
    DatabaseSettings,
    LimitSettings,
    LLMSettings,
    Settings,
    TelegramSettings,
)
from core.db.engine import Database
from core.db.models import (
    AccessInvite,
    AccessNote,
    AccessRedemption,
    AuditLog,
    ChatMessage,
    Conversation,
    UsageQuota,
)
from core.i18n import t
from core.llm.client import LLMClient
from core.services import Services
from tests.fakes.llm_server import FakeLLM, Reply
from tests.fakes.telegram_server import FakeTelegram, StoredMessage
from tests.telegram.conftest import USER, Harness, start_harness, stop_harness, until

ADMIN = 42
FRIEND = 2002  # on the list as @friend; their username is "FrIeNd"
LISTED = 555  # on the list as telegram:555
STRANGER = 3003
PRIVATE = t("en", "access.private")
LINK = re.compile(r"https://t\.me/oneai_test_bot\?start=([A-Za-z0-9_-]+)")


@pytest.fixture
async def services(db: Database, fake_llm: FakeLLM, tmp_path: Path) -> AsyncIterator[Services]:
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
        access=AccessSettings.model_validate(
            {"mode": "invite", "allowlist": "@friend, telegram:555"}
        ),
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
    tg.user(ADMIN, first_name="Boss", username="boss", language_code="en")
    tg.user(FRIEND, first_name="Fred", username="FrIeNd", language_code="en")
    tg.user(LISTED, first_name="Lee", language_code="en")
    tg.user(STRANGER, first_name="Sam", language_code="en")
    harness = await start_harness(services, tg, fake_llm)
    try:
        yield harness
    finally:
        await stop_harness(harness)


# -- helpers --------------------------------------------------------------------------


async def said(app: Harness, text: str, chat_id: int, within: float = 10) -> StoredMessage:
    """Send `text` as `chat_id` and wait for the bot's next message there."""
    before = len(app.bot_messages(chat_id))
    app.tg.send_text(chat_id, text)
    await until(lambda: len(app.bot_messages(chat_id)) > before, within)
    return app.bot_messages(chat_id)[-1]


async def silent(app: Harness, text: str, chat_id: int) -> None:
    """Send `text` and check that the bot says nothing back."""
    before = len(app.bot_messages(chat_id))
    app.tg.send_text(chat_id, text)
    await until(lambda: not app.tg.pending_updates)  # taken by the bot
    await asyncio.sleep(0.5)
    assert len(app.bot_messages(chat_id)) == before


async def rows(app: Harness, model: type[object], **where: object) -> int:
    async with app.services.db.read() as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(await session.scalar(query) or 0)


async def invite_code(app: Harness, command: str = "/admin invite") -> str:
    reply = await said(app, command, ADMIN)
    found = LINK.search(reply.text or "")
    assert found is not None, reply.text
    return found.group(1)


async def nothing_of(app: Harness, chat_id: int) -> None:
    """No conversation, message or quota use for this person."""
    user = await app.services.accounts.by_identity("telegram", str(chat_id))
    assert user is not None
    assert await rows(app, Conversation, user_id=user.id) == 0
    assert await rows(app, ChatMessage, user_id=user.id) == 0
    async with app.services.db.read() as session:
        used = await session.scalar(
            select(func.coalesce(func.sum(UsageQuota.used_count), 0)).where(
                UsageQuota.user_id == user.id
            )
        )
    assert used == 0


# -- who is answered ------------------------------------------------------------------


async def test_admins_and_allowlisted_people_are_answered(app: Harness, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(text="hi admin"), Reply(text="hi fred"), Reply(text="hi lee"))
    app.tg.send_text(ADMIN, "hello")
    await app.answered(1, ADMIN)
    app.tg.send_text(FRIEND, "hello")  # "@friend" on the list, "FrIeNd" on Telegram
    await app.answered(1, FRIEND)
    app.tg.send_text(LISTED, "hello")
    await app.answered(1, LISTED)
    assert fake_llm.requests_count == 3
    assert PRIVATE not in [
        m.text for chat in (ADMIN, FRIEND, LISTED) for m in app.bot_messages(chat)
    ]


async def test_a_refused_person_hears_once_a_day_and_nothing_reaches_the_model(
    app: Harness, fake_llm: FakeLLM
) -> None:
    note = await said(app, "hello", USER)
    assert note.text == PRIVATE
    await silent(app, "hello again", USER)  # the same day: nothing
    await silent(app, "/help", USER)
    await silent(app, "/start", USER)
    # A button press is answered (Telegram waits for it), with the same words.
    query = app.tg.press(USER, note.message_id, "a:r:1:0", forge=True)
    await until(lambda: app.tg.callback_queries[query].answered)
    assert app.tg.callback_queries[query].text == PRIVATE
    assert fake_llm.requests_count == 0
    await nothing_of(app, USER)
    assert len(app.bot_messages(USER)) == 1

    # The next day (UTC) they hear it once more.
    async with app.services.db.write() as session:
        await session.execute(
            update(AccessNote).values(told_on=utcnow().date() - timedelta(days=1))
        )
    assert (await said(app, "a day later", USER)).text == PRIVATE
    await silent(app, "and again", USER)
    assert fake_llm.requests_count == 0


# -- invites --------------------------------------------------------------------------


async def test_an_invite_link_lets_a_person_in(app: Harness, fake_llm: FakeLLM) -> None:
    code = await invite_code(app)
    assert len(code) >= 16
    async with app.services.db.read() as session:
        stored = await session.scalar(select(AccessInvite.code_hash))
    assert stored is not None and code not in stored  # only its hash is kept
    assert await rows(app, AuditLog, action="access_invite") == 1

    welcome = await said(app, f"/start {code}", USER)
    await until(lambda: len(app.bot_messages(USER)) >= 2)  # then the usual /start
    assert welcome.text == t("en", "access.welcome")
    assert "I'm OneAI" in (app.bot_messages(USER)[-1].text or "")
    fake_llm.script(Reply(text="welcome in"))
    app.tg.send_text(USER, "hello")
    await app.answered(1, USER)
    assert fake_llm.requests_count == 1
    assert await rows(app, AccessRedemption) == 1


async def test_a_one_use_invite_is_used_up_for_the_second_person(app: Harness) -> None:
    code = await invite_code(app, "/admin invite 1 7")
    assert (await said(app, f"/start {code}", USER)).text == t("en", "access.welcome")
    await until(lambda: len(app.bot_messages(USER)) == 2)  # and the usual /start
    used_up = await said(app, f"/start {code}", STRANGER)
    assert used_up.text == t("en", "error.access_invite_used_up")
    await asyncio.sleep(0.3)
    assert len(app.bot_messages(STRANGER)) == 1  # no welcome after it
    # The first person again: they have access, and nothing more is taken.
    assert (await said(app, f"/start {code}", USER)).text == t("en", "access.already")
    assert await rows(app, AccessRedemption) == 1
    async with app.services.db.read() as session:
        assert await session.scalar(select(AccessInvite.uses_left)) == 0
    # A code nobody made.
    wrong = await said(app, "/start NotAnInviteAtAll", STRANGER)
    assert wrong.text == t("en", "error.access_invite_unknown")
    await nothing_of(app, STRANGER)


async def test_an_expired_invite_says_so_and_changes_nothing(
    app: Harness, fake_llm: FakeLLM
) -> None:
    code = await invite_code(app, "/admin invite 5 1")
    async with app.services.db.write() as session:
        await session.execute(update(AccessInvite).values(expires_at=utcnow() - timedelta(1)))
    expired = await said(app, f"/start {code}", USER)
    assert expired.text == t("en", "error.access_invite_expired")
    assert (await said(app, "hello", USER)).text == PRIVATE
    assert await rows(app, AccessRedemption) == 0
    async with app.services.db.read() as session:
        assert await session.scalar(select(AccessInvite.uses_left)) == 5
    assert fake_llm.requests_count == 0


# -- the list ---------------------------------------------------------------------------


async def test_an_admin_adds_and_removes_a_person_without_a_restart(
    app: Harness, fake_llm: FakeLLM
) -> None:
    assert (await said(app, "hello", USER)).text == PRIVATE

    listing = await said(app, "/admin allowlist", ADMIN)
    assert "Access: invite. Allowlist (2)" in (listing.text or "")
    assert "@friend (ACCESS_ALLOWLIST)" in (listing.text or "")
    bad = await said(app, "/admin allow bob", ADMIN)
    assert bad.text == t("en", "error.access_bad_entry", entry="bob")

    added = await said(app, f"/admin allow tg:{USER}", ADMIN)
    assert added.text == t("en", "admin.done.allow", entry=f"telegram:{USER}")
    fake_llm.script(Reply(text="now you are in"))
    app.tg.send_text(USER, "hello?")
    await app.answered(1, USER)
    assert fake_llm.requests_count == 1

    removed = await said(app, f"/admin deny telegram:{USER}", ADMIN)
    assert removed.text == t("en", "admin.done.deny", entry=f"telegram:{USER}")
    await silent(app, "still there?", USER)  # told today already
    assert fake_llm.requests_count == 1

    # A listed entry from ACCESS_ALLOWLIST: off now, back at the next start.
    removed = await said(app, "/admin deny @friend", ADMIN)
    assert t("en", "admin.done.deny_config") in (removed.text or "")
    assert (await said(app, "hi", FRIEND)).text == PRIVATE

    async with app.services.db.read() as session:
        actions = (
            await session.scalars(
                select(AuditLog.action)
                .where(AuditLog.action.like("access_%"))
                .order_by(AuditLog.id)
            )
        ).all()
    assert actions == ["access_allow", "access_deny", "access_deny"]


# -- payments ---------------------------------------------------------------------------


async def test_pre_checkout_and_payment_are_never_held_back(app: Harness) -> None:
    """A person who got an invoice while on the list and pays after coming off it."""
    await allowlist.allow(app.services, CLI_ACTOR, f"telegram:{USER}")
    before = len(app.bot_messages(USER))
    app.tg.send_text(USER, "/plan")
    await until(lambda: len(app.bot_messages(USER)) > before)
    menu = app.bot_messages(USER)[-1]
    app.tg.press(USER, menu.message_id, Buy(method=PayMethod.STARS, tier="pro").pack())
    await until(lambda: any(c.ok for c in app.tg.calls_of("sendInvoice")))
    invoice = next(c for c in app.tg.calls_of("sendInvoice") if c.ok)
    payload, amount = str(invoice.params["payload"]), invoice.params["prices"][0]["amount"]
    await allowlist.deny(app.services, CLI_ACTOR, f"telegram:{USER}")

    query = app.tg.pre_checkout(USER, payload, "XTR", amount)
    await until(lambda: app.tg.pre_checkouts[query].answered)
    assert app.tg.pre_checkouts[query].ok, app.tg.pre_checkouts[query].error_message
    app.tg.successful_payment(USER, payload, "XTR", amount, "charge-private")
    await until(lambda: any("Pro is active" in (m.text or "") for m in app.bot_messages(USER)))
    user = await app.services.accounts.by_identity("telegram", str(USER))
    assert user is not None and user.tier == "pro"


async def test_link_is_a_way_in_from_an_account_that_has_access(
    app: Harness, fake_llm: FakeLLM
) -> None:
    """Ann's Discord account is on the list; `/link CODE` from it joins her
    Telegram account, which then has access too."""
    await allowlist.allow(app.services, CLI_ACTOR, "discord:9001")
    discord = await app.services.accounts.upsert(PlatformProfile("discord", "9001"))
    issued = await app.services.linking.issue_code(discord.id, "discord")
    assert (await said(app, "hello", USER)).text == PRIVATE
    done = await said(app, f"/link {issued.code}", USER)
    assert done.text != PRIVATE
    fake_llm.script(Reply(text="linked and in"))
    app.tg.send_text(USER, "hello again")
    await app.answered(1, USER)
    assert fake_llm.requests_count == 1
