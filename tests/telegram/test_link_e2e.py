"""/link end to end: the real aiogram bot against the fake Bot API. The Discord side
is the core service itself (a user with a Discord identity and a code issued for
Discord), as the Discord adapter calls it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from sqlalchemy import func, select

from core.accounts import PlatformProfile
from core.db.models import Conversation, LinkCodeRecord
from core.subscriptions import Purchase, Reason
from core.tiers import Tier
from tests.fakes.telegram_server import CallbackQuery, StoredMessage
from tests.telegram.conftest import USER, Harness, until

GAP = 0.15
CODE = re.compile(r"[A-Z2-9]{4}-[A-Z2-9]{4}")
DISCORD_ID = "555000111"


async def bot_reply(app: Harness, act: Callable[[], object], chat_id: int = USER) -> StoredMessage:
    await asyncio.sleep(GAP)
    before = {m.message_id for m in app.bot_messages(chat_id)}
    act()
    return await app.tg.wait_for(
        lambda: next((m for m in app.bot_messages(chat_id) if m.message_id not in before), None)
    )


async def say(app: Harness, text: str, user: int = USER) -> StoredMessage:
    return await bot_reply(app, lambda: app.tg.send_text(user, text), chat_id=user)


async def chat(app: Harness, text: str) -> StoredMessage:
    """Send `text` and wait for the whole answer (its Regenerate button)."""
    await asyncio.sleep(GAP)

    def finals() -> list[StoredMessage]:
        return [
            m
            for m in app.bot_messages()
            if any(str(b.get("callback_data", "")).startswith("a:r:") for b in m.buttons)
        ]

    count = len(finals())
    app.tg.send_text(USER, text)
    await app.answered(count + 1)
    return finals()[-1]


async def press(
    app: Harness, message: StoredMessage, data: str, *, user: int = USER, forge: bool = False
) -> CallbackQuery:
    await asyncio.sleep(GAP)
    query_id = app.tg.press(
        user, message.message_id, data, chat_id=message.chat_id if forge else None, forge=forge
    )
    query = app.tg.callback_queries[query_id]
    await until(lambda: query.answered)
    return query


async def press_edit(app: Harness, message: StoredMessage, data: str) -> StoredMessage:
    edits = app.tg.message(message.chat_id, message.message_id).edits
    await press(app, message, data)
    await until(lambda: app.tg.message(message.chat_id, message.message_id).edits > edits)
    return app.tg.message(message.chat_id, message.message_id)


def labelled(message: StoredMessage, text: str) -> str:
    for button in message.buttons:
        if button["text"] == text:
            return str(button["callback_data"])
    labels = [b["text"] for b in message.buttons]
    raise AssertionError(f"no button {text!r}: {labels}")


async def discord_user(app: Harness, *, pro: bool = False) -> int:
    """Someone on Discord, as the Discord adapter would create them."""
    services = app.services
    user = await services.accounts.upsert(
        PlatformProfile("discord", DISCORD_ID, username="ann_dc", display_name="Ann")
    )
    if pro:
        async with services.db.write() as session:
            await services.subscriptions.activate(
                session, user.id, Purchase(tier=Tier.PRO, provider="grant", reason=Reason.GRANT)
            )
    return user.id


async def telegram_user_id(app: Harness, telegram_id: int = USER) -> int:
    user = await app.services.accounts.by_identity("telegram", str(telegram_id))
    assert user is not None
    return user.id


# -- tests ----------------------------------------------------------------------------


async def test_link_shows_a_code_to_copy(app: Harness) -> None:
    reply = await say(app, "/link")
    text = reply.text or ""
    found = CODE.findall(text)
    assert found and set(found) == {found[0]}, text
    code = found[0]
    assert "works once, for 10 minutes" in text
    assert f"/link {code}" in text
    # The code is set as code (tap to copy) wherever it appears.
    spans = [(e["offset"], e["length"]) for e in reply.entities if e["type"] == "code"]
    assert len(spans) == len(found)
    units = text.encode("utf-16-le")  # Telegram counts offsets in UTF-16 code units
    assert all(units[2 * o : 2 * (o + n)].decode("utf-16-le") == code for o, n in spans)
    assert reply.buttons == []
    # Only its hash is kept.
    async with app.services.db.read() as session:
        (stored,) = (await session.scalars(select(LinkCodeRecord))).all()
    assert stored.platform == "telegram" and code not in stored.code_hash
    # /link again replaces it.
    again = CODE.findall((await say(app, "/link")).text or "")[0]
    assert again != code
    async with app.services.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(LinkCodeRecord)) == 1


async def test_a_code_from_discord_joins_both_accounts(app: Harness) -> None:
    await chat(app, "hello from telegram")
    telegram_before = await telegram_user_id(app)
    dc = await discord_user(app, pro=True)
    code = await app.services.linking.issue_code(dc, "discord")

    reply = await say(app, f"/link {code.code.lower().replace('-', ' ')}")
    text = reply.text or ""
    assert "✅ Linked: Discord + Telegram share one account now." in text
    assert "Plan: Pro." in text and "Conversations: 1." in text
    assert await telegram_user_id(app) == dc != telegram_before
    user = await app.services.accounts.get(dc)
    assert user is not None and user.tier == "pro"
    # Telegram carries on as the one user: its conversation came along.
    await chat(app, "and now?")
    async with app.services.db.read() as session:
        owners = set((await session.scalars(select(Conversation.user_id))).all())
    assert owners == {dc}
    # The same code works once.
    other = await say(app, f"/link {code.code}")
    assert "wrong, used or expired" in (other.text or "")


async def test_link_again_lists_the_accounts_and_unlinks_after_asking(app: Harness) -> None:
    dc = await discord_user(app)
    code = await app.services.linking.issue_code(dc, "discord")
    await say(app, f"/link {code.code}")

    overview = await say(app, "/link")
    text = overview.text or ""
    assert "🔗 Linked accounts:" in text
    assert "• Discord @ann_dc" in text and "• Telegram (here)" in text
    assert CODE.search(text)
    assert [b["text"] for b in overview.buttons] == ["Unlink Discord"]

    asked = await press_edit(app, overview, labelled(overview, "Unlink Discord"))
    assert (asked.text or "").startswith("Unlink Discord? This account keeps")
    assert [b["text"] for b in asked.buttons] == ["Yes, unlink Discord", "Keep linked"]
    back = await press_edit(app, asked, labelled(asked, "Keep linked"))
    assert "• Discord @ann_dc" in (back.text or "")
    assert len(await app.services.linking.linked(dc)) == 2

    asked = await press_edit(app, back, labelled(back, "Unlink Discord"))
    done = await press_edit(app, asked, labelled(asked, "Yes, unlink Discord"))
    assert done.text == "✅ Discord is unlinked and has its own free account now."
    assert done.buttons == []
    assert await telegram_user_id(app) == dc
    split = await app.services.accounts.by_identity("discord", DISCORD_ID)
    assert split is not None and split.id != dc and split.tier == "free"
    assert [i.platform for i in await app.services.linking.linked(dc)] == ["telegram"]


async def test_wrong_codes_count_and_lock(app: Harness) -> None:
    malformed = await say(app, "/link hello")
    assert (malformed.text or "").startswith("A link code looks like ABCD-EFGH")
    for left in (4, 3, 2, 1):
        wrong = await say(app, "/link ZZZZ-ZZZZ")
        assert f"{left} more wrong codes lock linking" in (wrong.text or "")
    locked = await say(app, "/link ZZZZ-ZZZZ")
    assert (locked.text or "").startswith("Too many wrong codes. You can link again after ")
    dc = await discord_user(app)
    code = await app.services.linking.issue_code(dc, "discord")
    still = await say(app, f"/link {code.code}")
    assert (still.text or "").startswith("Too many wrong codes.")


async def test_own_code_and_someone_elses_buttons(app: Harness) -> None:
    reply = await say(app, "/link")
    code = CODE.findall(reply.text or "")[0]
    own = await say(app, f"/link {code}")
    assert (own.text or "").startswith("That is the code shown here.")

    dc = await discord_user(app)
    discord_code = await app.services.linking.issue_code(dc, "discord")
    await say(app, f"/link {discord_code.code}")
    overview = await say(app, "/link")
    data = labelled(overview, "Unlink Discord")
    # Someone else pressing it (a forged press into this chat) changes nothing.
    app.tg.user(2002, first_name="Mallory")
    query = await press(app, overview, data, user=2002, forge=True)
    assert query.show_alert and query.text == "This button is not for you."
    # Forged data for this person's own Telegram identity is refused too.
    forged = data.replace(":discord:", ":telegram:")
    query = await press(app, overview, forged, forge=True)
    assert query.show_alert and query.text == "This button no longer works."
    assert len(await app.services.linking.linked(dc)) == 2


async def test_russian_texts(app: Harness) -> None:
    app.tg.user(3003, first_name="Иван", language_code="ru")
    reply = await say(app, "/link", user=3003)
    assert "Ваш код для связи" in (reply.text or "")
    wrong = await say(app, "/link ZZZZ-ZZZZ", user=3003)
    assert "Осталось попыток: 4" in (wrong.text or "")


async def test_a_telegram_code_entered_on_discord_tells_the_telegram_chat(app: Harness) -> None:
    await chat(app, "my telegram conversation")
    telegram_id = await telegram_user_id(app)
    code = CODE.findall((await say(app, "/link")).text or "")[0]
    dc = await discord_user(app, pro=True)
    before = len(app.bot_messages())

    result = await app.services.linking.redeem(dc, "discord", code)

    # The Telegram account showed the code, so it is the one that stays.
    assert result.user_id == telegram_id and result.absorbed_user_id == dc
    assert result.tier is Tier.PRO and result.conversations == 1
    linked = (
        "🔗 Your accounts are linked now: one plan (Pro), one quota, all conversations. "
        "/link shows them."
    )
    # (The Discord user's own pending notices come along to the joined account too.)
    await app.tg.wait_for(
        lambda: any(m.text == linked for m in app.bot_messages()[before:]), timeout=10
    )
    overview = await say(app, "/link")
    assert "• Discord @ann_dc" in (overview.text or "")
    assert "Plan" not in (overview.text or "")
