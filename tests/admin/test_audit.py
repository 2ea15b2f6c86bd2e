"""The audit log as admins page through it."""

from __future__ import annotations

from datetime import UTC, datetime

from core.admin import actions
from core.admin.access import CLI_ACTOR, Actor
from core.admin.audit import PER_PAGE, audit_page, jsonable, write_audit
from core.db.models import AuditLog
from core.services import Services
from tests.admin.conftest import person


async def test_pages_of_the_latest_entries(services: Services) -> None:
    empty = await audit_page(services)
    assert (empty.entries, empty.pages, empty.text) == ([], 1, "📜 The audit log is empty.")
    target = await person(services, "telegram", 7001)
    admin = Actor(await person(services, "telegram", 7002), "telegram:7002")
    for number in range(PER_PAGE * 2 + 3):
        async with services.db.write() as session:
            await write_audit(
                session,
                admin if number % 2 else CLI_ACTOR,
                "note",
                target_user_id=target,
                before={"n": number},
                after={"n": number + 1},
            )
    first = await audit_page(services)
    assert (first.page, first.pages, first.total) == (1, 3, 23)
    assert not first.has_previous and first.has_next
    assert [e.details["after"]["n"] for e in first.entries] == list(range(23, 13, -1))
    assert first.text.splitlines()[0] == "📜 Audit log, newest first · page 1/3 · 23 in all"
    line = first.entries[0].text
    assert line.endswith(f" · cli · note #{target} · n: 22 → 23"), line
    assert first.entries[1].actor == "telegram:7002"
    last = await audit_page(services, 3)
    assert [e.details["after"]["n"] for e in last.entries] == [3, 2, 1]
    assert last.has_previous and not last.has_next
    assert (await audit_page(services, 99)).page == 3  # past the end: the last page
    assert (await audit_page(services, -5)).page == 1
    russian = await audit_page(services, 2, "ru")
    assert russian.text.splitlines()[0] == "📜 Журнал действий, сначала новые · стр. 2/3 · всего 23"


async def test_actions_and_rows_of_other_code_read_as_lines(services: Services) -> None:
    target = await person(services, "telegram", 7003)
    await actions.ban(services, CLI_ACTOR, target, "flooding")
    async with services.db.write() as session:
        # A row written elsewhere (linking, `oneai grant`): no actor in its details.
        session.add(
            AuditLog(
                actor_user_id=target,
                action="link",
                target_user_id=target,
                details={"redeemed_on": "discord"},
                created_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
            )
        )
    page = await audit_page(services)
    link, ban = page.entries
    assert link.text == f"2026-01-02 03:04 · #{target} · link #{target} · redeemed_on=discord"
    assert ban.text.endswith(f" · cli · ban #{target} · banned: false → true; reason: — → flooding")


def test_values_are_made_fit_for_a_json_column() -> None:
    moment = datetime(2026, 5, 6, 7, 8, tzinfo=UTC)
    assert jsonable({"at": moment, "list": (1, moment), 3: {"x"}}) == {
        "at": "2026-05-06T07:08:00+00:00",
        "list": [1, "2026-05-06T07:08:00+00:00"],
        "3": ["x"],
    }
