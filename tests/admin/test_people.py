"""Finding a person by any of their names, and the card an admin sees."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.admin import actions
from core.admin.access import CLI_ACTOR
from core.admin.errors import PersonAmbiguous, PersonNotFound
from core.admin.people import find_person, person_card
from core.clock import utcnow
from core.db.models import Payment
from core.i18n import error_text
from core.services import Services
from core.tiers import QuotaKey, Tier
from tests.admin.conftest import TELEGRAM_ADMIN, person
from tests.support.chat import finish


async def test_a_person_is_found_by_every_name_they_have(services: Services) -> None:
    ann = await person(services, "telegram", 123456789, username="AnnTG")
    bob = await person(services, "discord", 555000111, username="bob")
    code = await services.linking.issue_code(ann, "telegram")
    await services.linking.redeem(bob, "discord", code.code)  # Bob's Discord joins Ann
    for query in (
        str(ann),
        f"#{ann}",
        "telegram:123456789",
        "tg:123456789",
        " Telegram:123456789 ",
        "123456789",  # no user has this id of ours: a platform id
        "@AnnTG",
        "@anntg",  # usernames ignore case
        "AnnTG",
        "discord:555000111",  # a linked account finds the same person
        "dc:555000111",
        "<@555000111>",  # a Discord mention
        "<@!555000111>",
        "@bob",
    ):
        assert await find_person(services, query) == ann, query


async def test_nobody_and_several_people(services: Services) -> None:
    first = await person(services, "telegram", 1001, username="twin")
    second = await person(services, "discord", 2002, username="twin")
    with pytest.raises(PersonAmbiguous) as several:
        await find_person(services, "@twin")
    assert several.value.user_ids == sorted([first, second])
    assert f"#{first}, #{second}" in several.value.user_message
    for query in ("#999999", "telegram:42", "@nobody", "", "@", "77777777"):
        with pytest.raises(PersonNotFound):
            await find_person(services, query)


async def test_the_card_shows_plan_quotas_activity_conversations_and_payments(
    services: Services,
) -> None:
    user_id = await person(services, "telegram", 3003, username="carol", display_name="Carol")
    for text in ("one", "two"):
        await finish(await services.chat.send(user_id, text, new_conversation=True))
    await actions.grant(services, CLI_ACTOR, user_id, "pro", 30)
    now = utcnow()
    async with services.db.write() as session:
        for number, (kind, status, amount) in enumerate(
            [("payment", "succeeded", 250), ("refund", "succeeded", 250), ("payment", "pending", 9)]
        ):
            session.add(
                Payment(
                    user_id=user_id,
                    provider="telegram_stars",
                    provider_charge_id=f"charge-{number}",
                    kind=kind,
                    status=status,
                    tier="pro",
                    amount_minor=amount,
                    currency="XTR",
                    payload={},
                    created_at=now - timedelta(days=3 - number),
                )
            )
    card = await person_card(services, user_id)
    assert card.name == "Carol" and not card.banned and not card.is_admin
    assert card.plan.tier is Tier.PRO and card.plan.period_end is not None
    assert card.conversations == 2
    quotas = {line.key: line for line in card.usage.quotas}
    assert quotas[QuotaKey.SMALL].limit == 500  # Pro's limits; the grant reset the counters
    assert quotas[QuotaKey.SMALL].used == 0
    assert card.last_seen_at is not None
    assert [(p.kind, p.status, p.charge_id) for p in card.payments] == [
        ("payment", "pending", "charge-2"),
        ("refund", "succeeded", "charge-1"),
        ("payment", "succeeded", "charge-0"),
    ]
    assert card.payments_total == 3
    assert card.actions == ("grant", "revoke", "reset", "ban")
    lines = card.text.splitlines()
    assert lines[0] == f"👤 #{user_id} Carol"
    assert lines[1].startswith("• Telegram 3003 @carol · seen ")
    assert lines[2].startswith("💳 Pro (active) until ") and lines[2].endswith(" · via grant")
    assert lines[3].startswith("Small messages: ▱▱▱▱▱▱▱▱▱▱ 0/500 · 500 left · resets ")
    assert any(line.endswith("· 2 conversations") for line in lines)
    assert "💰 Payments (3 of 3):" in lines
    assert any(line.endswith("refund 250 XTR · telegram_stars · succeeded · Pro") for line in lines)


async def test_the_card_of_a_banned_admin_less_person_and_of_an_admin(
    services: Services,
) -> None:
    user_id = await person(services, "discord", 4004)
    await actions.ban(services, CLI_ACTOR, user_id, "spam")
    card = await person_card(services, user_id, "ru")
    assert card.banned and card.ban_reason == "spam"
    assert card.actions == ("grant", "reset", "unban")
    assert "🚫 Заблокирован(а): spam" in card.text
    assert "💰 Платежей нет." in card.text
    admin = await person(services, "telegram", TELEGRAM_ADMIN)
    admin_card = await person_card(services, admin)
    assert admin_card.is_admin
    assert admin_card.text.splitlines()[0].endswith(" · admin")
    with pytest.raises(PersonNotFound):
        await person_card(services, 999_999)


def test_refusals_read_in_the_admins_language() -> None:
    assert error_text("ru", PersonNotFound("@x")).startswith("Никто не найден по «@x».")
    twins = PersonAmbiguous("@twin", [3, 4])
    assert (
        error_text("en", twins) == "“@twin” matches several people: #3, #4. Use one of these ids."
    )
    assert error_text("ru", twins) == (
        "«@twin» подходит нескольким людям: #3, #4. Укажите один из этих id."
    )
