"""/mode on Telegram, end to end: the mode menu, the system prompt the model receives
(first message of the request body), preferred models and the plan, the person's own
prompt, and forged buttons."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from core.accounts import PlatformProfile
from core.db.models import Conversation
from core.i18n import t
from core.modes import ModeCatalog
from core.tiers import Tier
from tests.fakes.telegram_server import StoredMessage
from tests.telegram.conftest import USER, Harness, until
from tests.telegram.test_commands_e2e import (
    GAP,
    chat,
    failed_calls,
    labelled,
    me,
    press,
    pressed_edit,
    say,
    sent_model,
)

MALLORY = 2002


def system_of(body: dict[str, Any]) -> str | None:
    """The system prompt of a request: its first message, when that is one."""
    first = body["messages"][0]
    return str(first["content"]) if first["role"] == "system" else None


def sent_system(app: Harness) -> str | None:
    return system_of(app.llm.requests[-1].body)


def prompt_of(app: Harness, mode_id: str) -> str:
    return app.services.modes.require(mode_id).prompt


def labels(message: StoredMessage) -> list[str]:
    return [str(b["text"]) for b in message.buttons]


async def current_conversation(app: Harness) -> Conversation:
    conversation = await app.services.conversations.current((await me(app)).id)
    assert conversation is not None
    return conversation


async def regenerate(app: Harness, answer: StoredMessage) -> None:
    """Press 🔄 under `answer`; returns once the new version is complete."""
    count = app.llm.requests_count
    await press(app, answer, app.button(app.tg.message(USER, answer.message_id), "a:r:"))
    await until(lambda: app.llm.requests_count > count)
    await app.answered()


async def test_a_mode_sets_the_prompt_the_model_receives(app: Harness) -> None:
    first = await chat(app, "hi")
    assert sent_system(app) is None  # no mode, no prompt of their own
    menu = await say(app, "/mode")
    assert menu.text == "Current mode: 🤖 Assistant\nPick a mode for this conversation:"
    assert labels(menu) == [
        "✅ 🤖 Assistant",
        "🌐 Translator",
        "👨‍💻 Coder",
        "✏️ Editor",
        "🎓 Tutor",
        "📝 Summarizer",
        "💡 Brainstormer",
    ]
    menu = await pressed_edit(app, menu, labelled(menu, "🌐 Translator"))
    assert list(app.tg.callback_queries.values())[-1].text == "✅ Mode: 🌐 Translator"
    assert menu.text == (
        "✅ Mode: 🌐 Translator\n\nCurrent mode: 🌐 Translator\nPick a mode for this conversation:"
    )
    assert "✅ 🌐 Translator" in labels(menu) and "🤖 Assistant" in labels(menu)
    conversation = await current_conversation(app)
    assert (conversation.mode, conversation.system_prompt) == (
        "translator",
        prompt_of(app, "translator"),
    )
    second = await chat(app, "Bonjour tout le monde")
    body = app.llm.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": prompt_of(app, "translator")}
    # The same conversation goes on: its history, and its model (Translator has none).
    assert [m["content"] for m in body["messages"][1:]] == [
        "hi",
        "Echo: hi",
        "Bonjour tout le monde",
    ]
    assert sent_model(app) == "openai/gpt-4o-mini"

    # After a switch, 🔄 regenerates with the conversation's prompt as it is now:
    # the last answer and an older one alike.
    menu = await pressed_edit(app, menu, labelled(menu, "✏️ Editor"))
    await regenerate(app, second)
    assert sent_system(app) == prompt_of(app, "editor")
    await regenerate(app, first)
    assert sent_system(app) == prompt_of(app, "editor")
    assert app.llm.requests[-1].body["messages"][1:] == [{"role": "user", "content": "hi"}]

    # A mode belongs to its conversation: a new one starts without it.
    await say(app, "/new")
    await chat(app, "a new topic")
    assert sent_system(app) is None
    assert failed_calls(app) == []


async def test_a_mode_picked_before_the_first_message(app: Harness) -> None:
    menu = await say(app, "/mode")
    assert labels(menu)[0] == "✅ 🤖 Assistant"
    assert (await me(app)).current_conversation_id is None
    await pressed_edit(app, menu, labelled(menu, "💡 Brainstormer"))
    # The pick made the conversation its first message goes to, named after it.
    await chat(app, "Names for a coffee shop")
    assert sent_system(app) == prompt_of(app, "brainstormer")
    conversation = await current_conversation(app)
    assert (conversation.title, conversation.mode) == ("Names for a coffee shop", "brainstormer")
    assert conversation.message_count == 2
    # Picking costs nothing: one unit, for the one answer.
    report = await app.services.quotas.report(conversation.user_id, Tier.FREE)
    assert sum(quota.used for quota in report) == 1


async def test_my_prompt_stays_and_the_list_goes_back_to_it(app: Harness) -> None:
    pirate = "Answer like a pirate."
    await chat(app, "hi")
    await app.services.accounts.set_system_prompt((await me(app)).id, pirate)
    await chat(app, "ahoy")
    assert sent_system(app) == pirate
    menu = await say(app, "/mode")
    assert menu.text == "Current mode: ✍️ My prompt\nPick a mode for this conversation:"
    assert labels(menu)[-1] == "✅ ✍️ My prompt"
    # The Assistant mode is the model without a prompt, the person's own included.
    menu = await pressed_edit(app, menu, labelled(menu, "🤖 Assistant"))
    await chat(app, "plain now")
    assert sent_system(app) is None
    menu = await pressed_edit(app, menu, labelled(menu, "✍️ My prompt"))
    assert menu.text is not None
    assert menu.text.startswith("✅ Mode: ✍️ My prompt (your prompt from /settings)")
    await chat(app, "and back")
    assert sent_system(app) == pirate
    # A mode does not touch the person's own prompt: new conversations get it.
    menu = await pressed_edit(app, menu, labelled(menu, "🎓 Tutor"))
    assert (await me(app)).system_prompt == pirate
    await say(app, "/new")
    await chat(app, "new one")
    assert sent_system(app) == pirate


async def test_a_preferred_model_the_plan_includes_is_switched_to(app: Harness) -> None:
    await chat(app, "hi")
    assert sent_model(app) == "openai/gpt-4o-mini"
    menu = await say(app, "/mode")
    menu = await pressed_edit(app, menu, labelled(menu, "👨‍💻 Coder"))
    query = list(app.tg.callback_queries.values())[-1]
    assert query.text == "✅ Mode: 👨‍💻 Coder\n🤖 Model: Qwen3 Coder"
    assert not query.show_alert
    await chat(app, "reverse a list in Python")
    assert sent_model(app) == "qwen/qwen3-coder"
    assert sent_system(app) == prompt_of(app, "coder")
    # The conversation's model, not the person's default.
    assert (await me(app)).default_model is None
    # Leaving the mode keeps the model: only a mode that prefers one changes it.
    menu = await pressed_edit(app, menu, labelled(menu, "🤖 Assistant"))
    await chat(app, "thanks")
    assert sent_model(app) == "qwen/qwen3-coder"


async def test_a_preferred_model_the_plan_lacks_is_refused_and_the_model_stays(
    app: Harness, tmp_path: Path
) -> None:
    override = tmp_path / "modes.json"
    override.write_text(
        json.dumps({"modes": [{"id": "coder", "model": "anthropic/claude-sonnet-4"}]}), "utf-8"
    )
    app.services.modes = ModeCatalog.load(override)
    await chat(app, "hi")
    menu = await say(app, "/mode")
    menu = await pressed_edit(app, menu, labelled(menu, "👨‍💻 Coder"))
    query = list(app.tg.callback_queries.values())[-1]
    assert query.show_alert
    assert query.text == (
        "✅ Mode: 👨‍💻 Coder\n🔒 This mode prefers Claude Sonnet 4, which needs the Pro "
        "plan. Staying on GPT-4o mini."
    )
    assert (menu.text or "").startswith(query.text)
    await chat(app, "reverse a list in Python")
    # The prompt changed; the model did not.
    assert sent_model(app) == "openai/gpt-4o-mini"
    assert sent_system(app) == prompt_of(app, "coder")


async def test_forged_mode_buttons_get_the_stale_alert_and_change_nothing(app: Harness) -> None:
    await chat(app, "hi")
    before = await current_conversation(app)
    mallory = await app.services.accounts.upsert(PlatformProfile("telegram", str(MALLORY)))
    theirs = await app.services.conversations.set_mode(
        mallory.id,
        None,
        None,
        None,
        model_id=None,
        new_model_id="openai/gpt-4o-mini",
        platform=None,
    )
    menu = await say(app, "/mode")
    translator = labelled(menu, "🌐 Translator")
    assert translator == f"md:translator:{before.id.hex}"
    forged = [
        "md:pirate:",  # a mode that does not exist
        f"md:pirate:{before.id.hex}",
        f"md:translator:{uuid.uuid4().hex}",  # a conversation that does not exist
        f"md:translator:{theirs.id.hex}",  # someone else's conversation
        "md:translator:not-a-uuid",
        "md:" + "x" * 40,
    ]
    await asyncio.sleep(GAP)
    ids = [app.tg.press(USER, menu.message_id, data, chat_id=USER, forge=True) for data in forged]
    # Someone else pressing the real button (a forged press into this chat).
    app.tg.user(MALLORY, first_name="Mallory")
    ids.append(app.tg.press(MALLORY, menu.message_id, translator, chat_id=USER, forge=True))
    await until(lambda: all(app.tg.callback_queries[i].answered for i in ids))
    for query_id in ids:
        query = app.tg.callback_queries[query_id]
        assert (query.text, query.show_alert) == (t("en", "stale_button"), True), query.data
    after = await current_conversation(app)
    assert (after.mode, after.system_prompt, after.model_id) == (None, None, "openai/gpt-4o-mini")
    mallory_conversation = await app.services.conversations.get(mallory.id, theirs.id)
    assert mallory_conversation.mode is None
    assert app.tg.message(USER, menu.message_id).edits == 0
    assert app.llm.requests_count == 1
    await chat(app, "still plain")
    assert sent_system(app) is None


async def test_help_and_the_command_menu_name_mode(app: Harness) -> None:
    from bot.telegram.factory import COMMANDS, register_commands

    assert "/mode" in ((await say(app, "/help")).text or "")
    await register_commands(app.bot)
    english = {c["command"]: c["description"] for c in app.tg.my_commands()}
    russian = {c["command"]: c["description"] for c in app.tg.my_commands(language_code="ru")}
    assert "mode" in COMMANDS
    assert english["mode"] == "Chat mode: translator, coder, …"
    assert russian["mode"] == "Режим чата: переводчик, программист, …"


async def test_a_preferred_model_turned_off_is_refused_and_the_model_stays(app: Harness) -> None:
    app.services.catalog.set_disabled({"qwen/qwen3-coder"})
    await chat(app, "hi")
    menu = await say(app, "/mode")
    await pressed_edit(app, menu, labelled(menu, "👨‍💻 Coder"))
    query = list(app.tg.callback_queries.values())[-1]
    assert query.show_alert
    assert query.text == (
        "✅ Mode: 👨‍💻 Coder\nThis mode prefers Qwen3 Coder, which is turned off for now. "
        "Staying on GPT-4o mini."
    )
    await chat(app, "reverse a list")
    assert (sent_model(app), sent_system(app)) == ("openai/gpt-4o-mini", prompt_of(app, "coder"))
