"""/admin on Discord, end to end under simcord: the same core admin operations as
Telegram and the command line, drawn as one slash-command group with ephemeral
screens and buttons; a broadcast's preview and progress in the admin's DMs.
Anyone who is not an admin gets the unknown-command answer and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest
import simcord
from simcord.results import InteractionResult, ResponseMessage
from sqlalchemy import func, select

from bot.discord import broadcast
from bot.discord.admin_broadcast import progress_markup
from bot.discord.admin_views import AdminItem
from core.accounts import PlatformProfile
from core.admin import actions
from core.admin.access import CLI_ACTOR
from core.admin.audit import PER_PAGE
from core.admin.banned import banned_note
from core.admin.screens import AdminButton, AdminOp
from core.broadcast import ProgressRef, Status
from core.db.models import AuditLog, Payment, User
from core.i18n import t
from core.services import Services
from core.subscriptions import Purchase
from core.tiers import Tier
from payments.ledger import LedgerEntry
from payments.stars import STARS
from tests.discord.conftest import Harness
from tests.fakes.llm_server import Reply
from tests.support.wait import until

UNKNOWN = t("en", "unknown_command")


# -- helpers -----------------------------------------------------------------------------


def make_admin(bot: Harness, account: Any) -> None:
    """DISCORD_ADMIN_IDS now names `account` (read on every call)."""
    settings = bot.services.settings
    current = settings.discord
    settings.__dict__["discord"] = current.model_copy(
        update={"admin_ids": [*current.admin_ids, account.id]}
    )


def ids(message: ResponseMessage | discord.Message) -> list[str]:
    rows: Any = message.components
    found = []
    for row in rows:
        children = row["components"] if isinstance(row, dict) else row.children
        for child in children:
            custom_id = child.get("custom_id") if isinstance(child, dict) else child.custom_id
            if custom_id:
                found.append(str(custom_id))
    return found


def one(message: ResponseMessage | discord.Message, prefix: str) -> str:
    (found,) = [i for i in ids(message) if i.startswith(prefix)]
    return found


def reply(result: InteractionResult, pressed: ResponseMessage | None = None) -> ResponseMessage:
    """The message an interaction answered with: its follow-up when deferred, or
    the `pressed` message itself when the press was deferred and then edited it."""
    if result.followups:
        return result.followups[-1]
    if result.response is None and result.deferred and pressed is not None:
        env: Any = pressed._env
        return ResponseMessage(env, env.backend.get_message(pressed.channel_id, pressed.id))
    assert result.response is not None, result
    return result.response


async def user_of(services: Services, account: Any) -> User:
    user = await services.accounts.upsert(PlatformProfile("discord", str(account.id)))
    return user


async def audit_count(services: Services) -> int:
    async with services.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


async def tier_of(services: Services, user_id: int) -> str:
    async with services.db.read() as session:
        user = await session.get(User, user_id)
    assert user is not None
    return user.tier


# -- who -----------------------------------------------------------------------------------


async def test_a_non_admin_gets_the_unknown_command_answer_and_changes_nothing(
    discord_bot: Harness,
) -> None:
    env, services = discord_bot.env, discord_bot.services
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    mallory = env.create_user("mallory")
    target = await user_of(services, env.create_user("target"))
    before_users = await services.accounts.by_identity("discord", str(mallory.id))
    assert before_users is None

    for name, options in (
        ("admin stats", {}),
        ("admin person", {"query": str(target.id)}),
        ("admin grant", {"person": str(target.id), "tier": "pro", "days": 30}),
        ("admin ban", {"person": str(target.id), "reason": "spam"}),
        ("admin refund", {"payment": "1"}),
        ("admin model_off", {"model": "1"}),
        ("admin broadcast", {"text": "hello everyone"}),
        ("admin audit", {}),
    ):
        shown = await mallory.slash(name, **options)
        assert shown.ephemeral, name
        assert reply(shown).content == UNKNOWN, name

    # An admin's card, in a server channel where everyone sees it, pressed by
    # Mallory; then a button the bot never drew (a forged custom id).
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    member = guild.add_member(mallory)
    bot: Any = env.bot
    view = discord.ui.View(timeout=None)
    view.add_item(AdminItem(AdminButton(AdminOp.BAN, "Ban", target.id)))
    view.add_item(AdminItem(AdminButton(AdminOp.GRANT_DAYS, "Pro", target.id, "pro.365")))
    posted = await bot.get_channel(channel.id).send("card", view=view)
    for custom_id in ids(posted):
        pressed = await member.click(posted, custom_id=custom_id)
        assert pressed.ephemeral and reply(pressed).content == UNKNOWN
    forged = await member.click(posted, custom_id=ids(posted)[0])
    assert reply(forged).content == UNKNOWN

    # In a server /admin is not even in the picker of an ordinary member.
    assert "admin stats" not in member.available_commands(channel)
    with pytest.raises(simcord.SetupError):
        await member.slash(channel, "admin stats")

    after = await services.accounts.get(target.id)
    assert after is not None and not after.is_banned and after.tier == "free"
    assert await audit_count(services) == 0
    assert discord_bot.llm.requests_count == 0
    assert await services.accounts.by_identity("discord", str(mallory.id)) is None


# -- an admin --------------------------------------------------------------------------------


async def test_stats_and_a_card_found_by_id_and_username(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    carol_account = env.create_user("carol")
    await carol_account.send_dm("hi")
    await discord_bot.quiet()
    carol = await user_of(services, carol_account)

    stats = await boss.slash("admin stats")
    assert stats.ephemeral
    assert reply(stats).content.startswith("📈")

    for query in (f"discord:{carol_account.id}", str(carol_account.id), "@carol", str(carol.id)):
        shown = await boss.slash("admin person", query=query)
        assert shown.ephemeral, query
        card = reply(shown)
        assert card.content.startswith(f"👤 #{carol.id}"), query
        assert one(card, "oneai:adm:g:").endswith(f":{carol.id}::")

    missing = await boss.slash("admin person", query="@nobody")
    assert "nobody" in reply(missing).content


async def test_grant_through_the_buttons_then_revoke_with_a_confirmation(
    discord_bot: Harness,
) -> None:
    env, services = discord_bot.env, discord_bot.services
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    dave = await user_of(services, env.create_user("dave"))

    card = reply(await boss.slash("admin person", query=f"#{dave.id}"))
    plans = await boss.click(card.message, custom_id=one(card, "oneai:adm:g:"))
    plans_msg = reply(plans)
    assert t("en", "admin.ask.plan", user=dave.id) in plans_msg.content
    days = await boss.click(plans_msg.message, custom_id=f"oneai:adm:g:{dave.id}:pro:")
    days_msg = reply(days)
    granted = await boss.click(days_msg.message, custom_id=f"oneai:adm:gd:{dave.id}:pro.30:")
    done = reply(granted)
    assert done.content.startswith(f"✅ #{dave.id}: Free → Pro")
    assert await tier_of(services, dave.id) == "pro"

    asked = reply(await boss.click(done.message, custom_id=one(done, "oneai:adm:rv:")))
    assert asked.content == t("en", "admin.confirm.revoke", user=dave.id, plan="Pro")
    kept = reply(await boss.click(asked.message, custom_id=f"oneai:adm:p:{dave.id}::"))
    assert await tier_of(services, dave.id) == "pro"
    asked = reply(await boss.click(kept.message, custom_id=one(kept, "oneai:adm:rv:")))
    revoked = reply(await boss.click(asked.message, custom_id=one(asked, "oneai:adm:rvy:")))
    assert revoked.content.startswith(f"✅ #{dave.id}: Pro taken away")
    assert await tier_of(services, dave.id) == "free"
    assert await audit_count(services) == 2


async def test_reset_and_a_ban_that_stops_a_streaming_answer_then_unban(
    discord_bot: Harness,
) -> None:
    env, services = discord_bot.env, discord_bot.services
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    erin_account = env.create_user("erin")
    erin = await user_of(services, erin_account)
    # Erin's answer streams (simcord runs one Discord action at a time, so the
    # answer runs beside them, as one from her other linked account would).
    words = [f"w{i} " for i in range(40)]
    discord_bot.llm.script(Reply(chunks=words, chunk_delay=0.1))
    generation = await services.chat.send(erin.id, "tell me a long story", new_conversation=True)
    streaming = asyncio.create_task(generation.run())
    await until(lambda: discord_bot.llm.requests_count == 1, 5)

    card = reply(await boss.slash("admin person", query=f"discord:{erin_account.id}"))
    asked = await boss.click(card.message, custom_id=one(card, "oneai:adm:b:"))
    assert asked.modal is not None
    banned = reply(await boss.submit_modal(asked, {"reason": "spam"}))
    assert banned.content.startswith(f"🚫 #{erin.id} is banned. Reason: spam")
    assert t("en", "admin.done.stopped", count=1) in banned.content
    result = await asyncio.wait_for(streaming, 5)
    assert result.status == "cancelled"
    assert result.content.split() != "".join(words).split()

    await erin_account.send_dm("hello?")
    await discord_bot.quiet()
    (note,) = [m for m in erin_account.dm_channel.history() if m.author.bot]
    assert note.content == banned_note("en")
    assert discord_bot.llm.requests_count == 1

    unbanned = reply(await boss.click(banned.message, custom_id=one(banned, "oneai:adm:ub:")))
    assert unbanned.content.startswith(f"✅ #{erin.id} is not banned any more.")
    reset = reply(await boss.slash("admin reset", person=f"#{erin.id}"))
    assert reset.content.startswith(f"✅ #{erin.id}:")
    discord_bot.llm.script(Reply(text="Welcome back."))
    await erin_account.send_dm("hello again")
    await discord_bot.quiet()
    assert discord_bot.llm.requests_count == 2
    assert await audit_count(services) == 3


async def test_a_double_pressed_refund_calls_the_provider_once(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    # A Telegram user who paid in Stars.
    frank = await services.accounts.upsert(PlatformProfile("telegram", "777", username="frank"))
    bot: Any = env.bot
    payments = bot.payments
    calls: list[tuple[int, str]] = []

    async def refund_star_payment(user_id: int, charge_id: str) -> bool:
        calls.append((user_id, charge_id))
        return True

    # Stars go back through Telegram's Bot API: the process that runs both
    # platforms gives the refunds module Telegram's call.
    payments.refunds.use_telegram(refund_star_payment)
    await payments.ledger.settle(
        LedgerEntry(
            provider=STARS,
            charge_id="stars-charge-1",
            kind="payment",
            user_id=frank.id,
            amount_minor=250,
            currency="XTR",
            tier=Tier.PRO,
            purchase=Purchase(Tier.PRO, STARS),
        )
    )
    assert await tier_of(services, frank.id) == "pro"

    # Two screens open on the same payment: Yes is pressed on both.
    confirms = []
    for _ in range(2):
        card = reply(await boss.slash("admin person", query="@frank"))
        asked = reply(await boss.click(card.message, custom_id=one(card, "oneai:adm:rf:")))
        assert "Refund" in asked.content
        confirms.append(asked)
    first, second = [
        reply(await boss.click(asked.message, custom_id=one(asked, "oneai:adm:rfy:")), asked)
        for asked in confirms
    ]
    again = reply(await boss.slash("admin refund", payment="stars-charge-1"))

    assert calls == [(777, "stars-charge-1")]
    assert await tier_of(services, frank.id) == "free"
    assert not [i for i in ids(first) if i.startswith("oneai:adm:rf:")]  # nothing left to refund
    for told in (second, again):
        assert "already" in told.content.lower(), told.content
    async with services.db.read() as session:
        refunds = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.kind == "refund")
        )
    assert refunds == 1


async def test_models_off_and_on_and_the_audit_log_pages(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    listed = reply(await boss.slash("admin models"))
    assert listed.content.startswith("🤖")
    assert one(listed, "oneai:adm:rc:")
    second = services.catalog.all()[1]
    off = reply(await boss.slash("admin model_off", model="2", reason="too slow"))
    assert off.content.startswith("⛔") and second.id in off.content
    assert "⛔ 2." in reply(await boss.slash("admin models")).content
    on = reply(await boss.slash("admin model_on", model=second.id))
    assert on.content.startswith("✅") and second.id in on.content

    # Enough audit rows for three pages (two are the model's), written at a
    # shell: an admin pressing this fast would meet the flood guard.
    for number in range(2 * PER_PAGE - 1):
        person = await services.accounts.upsert(PlatformProfile("test", f"p{number}"))
        await actions.grant(services, CLI_ACTOR, person.id, "pro", 7)
    assert await audit_count(services) == 2 * PER_PAGE + 1
    first = reply(await boss.slash("admin audit"))
    assert "page 1/" in first.content
    assert not [i for i in ids(first) if i.endswith(":")]  # no "newer" on page 1
    older = reply(await boss.click(first.message, custom_id="oneai:adm:a:::2"))
    assert "page 2/" in older.content
    assert set(ids(older)) == {"oneai:adm:a:::1", "oneai:adm:a:::3"}
    newer = reply(await boss.click(older.message, custom_id="oneai:adm:a:::1"))
    assert "page 1/" in newer.content


async def test_a_broadcast_is_previewed_in_dms_sent_and_shows_its_progress(
    discord_bot: Harness,
) -> None:
    env, services = discord_bot.env, discord_bot.services
    broadcast.attach(services.broadcasts, env.bot, markup=progress_markup(services))
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    people = [env.create_user(f"reader{i}") for i in range(4)]
    for account in people:
        await user_of(services, account)
    # A Pro reader, who is left out when the audience is Free.
    pro = await user_of(services, people[3])
    await actions.grant(services, CLI_ACTOR, pro.id, "pro", 30)

    told = await boss.slash("admin broadcast", text="**News**: we have a new model")
    assert reply(told).content == t("en", "admin.broadcast.in_dm")
    sample, preview = [m for m in boss.dm_channel.history() if m.author.bot]
    assert sample.content == "**News**: we have a new model"
    assert preview.content.startswith(t("en", "admin.broadcast.sample"))
    assert "5 people" in preview.content
    audiences = [i for i in ids(preview) if i.startswith("oneai:adm:ba:")]
    assert len(audiences) == 5
    free = next(i for i in audiences if ".tier.free:" in i)
    chosen = reply(await boss.click(preview, custom_id=free))
    assert "4 people" in chosen.content
    assert chosen.id == preview.id  # the same message, changed

    # Send, as the button does, but from the test: simcord settles a press only
    # when the bot's work is done, and the engine's sending outlives the press.
    send_id = one(chosen, "oneai:adm:bs:")
    broadcast_id = int(send_id.split(":")[4])
    where = ProgressRef("discord", str(preview.channel.id), str(preview.id))
    running = await services.broadcasts.start(broadcast_id, report_to=where)
    view = await progress_markup(services)(running)
    assert view is not None
    assert [str(getattr(i, "custom_id", "")).split(":")[2] for i in view.children] == ["bp", "bx"]
    await services.broadcasts.wait(broadcast_id)
    await discord_bot.quiet()

    (message,) = [m for m in boss.dm_channel.history() if m.id == preview.id]
    assert message.content.startswith("✅ Done: 4/4")
    assert not ids(message)  # no buttons once it is over
    for account in people[:3]:
        got = [m.content for m in account.dm_channel.history() if m.author.bot]
        assert got == ["**News**: we have a new model"]
    assert not [m for m in people[3].dm_channel.history() if m.author.bot]


async def test_a_draft_is_changed_and_discarded(discord_bot: Harness) -> None:
    env, services = discord_bot.env, discord_bot.services
    broadcast.attach(services.broadcasts, env.bot, markup=progress_markup(services))
    boss = env.create_user("boss")
    make_admin(discord_bot, boss)
    await boss.slash("admin broadcast", text="first words")
    (preview,) = [m for m in boss.dm_channel.history() if m.author.bot and m.components]
    asked = await boss.click(preview, custom_id=one(preview, "oneai:adm:be:"))
    assert asked.modal is not None
    changed = reply(await boss.submit_modal(asked, {"text": "better words"}), None)
    assert changed.id == preview.id
    samples = [m.content for m in boss.dm_channel.history() if m.author.bot and not m.components]
    assert samples == ["first words", "better words"]
    discard = one(changed, "oneai:adm:bd:")
    discarded = reply(await boss.click(changed.message, custom_id=discard))
    assert discarded.content == t("en", "admin.broadcast.discarded")
    assert not ids(discarded)
    info = await services.broadcasts.get(int(discard.split(":")[4]))
    assert info.status is Status.CANCELLED
