"""Models turned off for everyone: refused and hidden in this process at once, in
another (or after a restart) from the database; refreshing the catalog now."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.admin.access import CLI_ACTOR
from core.admin.errors import DefaultModel
from core.admin.models import disable_model, enable_model, models_page, refresh_catalog
from core.db.models import AuditLog, Conversation
from core.i18n import error_text
from core.llm.catalog import ModelDisabled, UnknownModel
from core.services import Services
from core.tiers import Tier
from core.views.models import ModelScope, model_menu, switch_model
from tests.admin.conftest import Build, person
from tests.fakes.llm_server import FakeLLM
from tests.support.chat import finish

MODEL = "openai/gpt-4.1-mini"


def _listed(services: Services) -> set[str]:
    menu = model_menu(
        services.catalog, Tier.ENTERPRISE, "openai/gpt-4o-mini", "en", ModelScope.DEFAULT
    )
    return {choice.id for group in menu.groups for choice in group.models}


async def test_a_model_turned_off_is_refused_and_left_out_of_the_menus(
    services: Services, fake_llm: FakeLLM
) -> None:
    user_id = await person(services, "telegram", 6000)
    user = await services.accounts.get(user_id)
    assert user is not None
    await switch_model(services, user, MODEL, "en", ModelScope.DEFAULT)
    await finish(await services.chat.send(user_id, "hello"))  # a conversation on MODEL
    calls = fake_llm.requests_count
    assert MODEL in _listed(services)

    result = await disable_model(services, CLI_ACTOR, MODEL, "provider outage")
    assert result.changed
    assert result.text == "⛔ GPT-4.1 mini (openai/gpt-4.1-mini) is turned off for everyone."
    with pytest.raises(ModelDisabled) as refused:
        services.catalog.check_access(MODEL, Tier.ENTERPRISE)
    assert refused.value.user_message == (
        "GPT-4.1 mini is turned off for now. Pick another model with /model."
    )
    assert MODEL not in _listed(services)
    # The conversation on it asks for another model; nothing reaches the LLM.
    with pytest.raises(ModelDisabled):
        await services.chat.send(user_id, "and again")
    assert fake_llm.requests_count == calls
    with pytest.raises(ModelDisabled):
        await switch_model(services, user, MODEL, "en", ModelScope.CONVERSATION)
    # New conversations of a person whose default it was start on the catalog's default.
    assert services.catalog.preferred(MODEL).id == "openai/gpt-4o-mini"
    fresh = await services.chat.send(user_id, "a new one", new_conversation=True)
    assert fresh.turn.model.id == "openai/gpt-4o-mini"
    await finish(fresh)

    back = await enable_model(services, CLI_ACTOR, MODEL)
    assert back.changed and MODEL in _listed(services)
    async with services.db.read() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.model_id == MODEL)
        )
    assert conversation is not None
    await finish(await services.chat.send(user_id, "works again", conversation_id=conversation.id))

    async with services.db.read() as session:
        rows = (await session.scalars(select(AuditLog).order_by(AuditLog.id))).all()
    assert [(r.action, r.details["model"], r.details["after"]) for r in rows] == [
        ("model_disable", MODEL, {"enabled": False, "reason": "provider outage"}),
        ("model_enable", MODEL, {"enabled": True, "reason": None}),
    ]
    assert all(r.details["actor"] == "cli" and r.target_user_id is None for r in rows)


async def test_the_switch_reaches_other_processes_and_survives_a_restart(build: Build) -> None:
    here = await build()
    elsewhere = await build(own_db=True)
    await disable_model(here, CLI_ACTOR, MODEL)
    # Another process still has it until its next admin sync reads the database.
    assert elsewhere.catalog.is_enabled(MODEL)
    await elsewhere.admin_sync.once()
    assert not elsewhere.catalog.is_enabled(MODEL)
    with pytest.raises(ModelDisabled):
        elsewhere.catalog.check_access(MODEL, Tier.PRO)
    # A process that starts reads it before serving anyone (Services.go_live).
    restarted = await build(own_db=True)
    try:
        await restarted.go_live()
        assert MODEL in restarted.catalog.disabled
        await enable_model(elsewhere, CLI_ACTOR, MODEL)
        await restarted.admin_sync.once()
        assert restarted.catalog.is_enabled(MODEL)
    finally:
        await restarted.close()


async def test_turning_off_twice_or_on_twice_writes_nothing_more(services: Services) -> None:
    await disable_model(services, CLI_ACTOR, MODEL, "why")
    assert not (await disable_model(services, CLI_ACTOR, MODEL, "why")).changed
    assert (await disable_model(services, CLI_ACTOR, MODEL, "another reason")).changed
    await enable_model(services, CLI_ACTOR, MODEL)
    assert not (await enable_model(services, CLI_ACTOR, MODEL)).changed
    async with services.db.read() as session:
        actions = (await session.scalars(select(AuditLog.action).order_by(AuditLog.id))).all()
    assert actions == ["model_disable", "model_disable", "model_enable"]


async def test_the_default_model_and_unknown_models_are_refused(services: Services) -> None:
    with pytest.raises(DefaultModel):
        await disable_model(services, CLI_ACTOR, "openai/gpt-4o-mini")
    with pytest.raises(UnknownModel):
        await disable_model(services, CLI_ACTOR, "no/such-model")
    for index in (999, -1):
        with pytest.raises(UnknownModel):
            await disable_model(services, CLI_ACTOR, index)


async def test_the_models_page_lists_every_model_with_its_state(services: Services) -> None:
    await disable_model(services, CLI_ACTOR, MODEL, "too slow")
    page = await models_page(services)
    assert len(page.models) == len(services.catalog)
    assert [m.id for m in page.disabled] == [MODEL]
    line = page.disabled[0]
    assert line.reason == "too slow" and not line.enabled
    assert f"⛔ {line.index + 1}. GPT-4.1 mini · {MODEL} · Free+ · too slow" in page.text
    assert page.text.splitlines()[0] == f"🤖 Models: {len(page.models)}, turned off: 1"
    # By its place in the list, too (what a button carries).
    await enable_model(services, CLI_ACTOR, line.index)
    assert services.catalog.is_enabled(MODEL)


async def test_refresh_now_fetches_even_when_refreshing_is_off(
    services: Services, fake_llm: FakeLLM
) -> None:
    assert services.settings.llm.catalog_refresh_hours == 0
    before = services.catalog.require("anthropic/claude-3.5-haiku").context_length
    result = await refresh_catalog(services, CLI_ACTOR)
    assert result.after["ok"]
    assert result.text.startswith("🔄 Catalog refreshed:")
    assert services.catalog.require("anthropic/claude-3.5-haiku").context_length == 200_000
    assert before == 200_000 or "anthropic/claude-3.5-haiku" in result.after["changed"]
    # Offline: the catalog stays, and the admin is told.
    fake_llm.models_status = 500
    failed = await refresh_catalog(services, CLI_ACTOR)
    assert not failed.after["ok"] and failed.text.startswith("⚠️")
    async with services.db.read() as session:
        rows = (await session.scalars(select(AuditLog).order_by(AuditLog.id))).all()
    assert [(r.action, r.details["after"]["ok"]) for r in rows] == [
        ("catalog_refresh", True),
        ("catalog_refresh", False),
    ]


def test_a_model_turned_off_reads_in_the_persons_language(services: Services) -> None:
    services.catalog.set_disabled({MODEL})
    with pytest.raises(ModelDisabled) as refused:
        services.catalog.check_access(MODEL, Tier.FREE)
    assert (
        error_text("ru", refused.value) == "Эта модель сейчас выключена. Выберите другую в /model."
    )
