"""The shipped chat modes, the operator's CHAT_MODES_FILE, and /mode in the terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bot.console.app import ConsoleChat
from core.llm.catalog import ModelCatalog
from core.modes import MAX_MODES, ModeCatalog, UnknownMode
from core.services import Services
from tests.fakes.llm_server import FakeLLM

SHIPPED = ("assistant", "translator", "coder", "editor", "tutor", "summarizer", "brainstormer")


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def _mode(mode_id: str, **fields: object) -> dict[str, object]:
    return {"id": mode_id, "name": mode_id.title(), "emoji": "🧪", "prompt": "Be terse.", **fields}


def test_the_shipped_modes() -> None:
    modes = ModeCatalog.load()
    assert tuple(mode.id for mode in modes.all())[: len(SHIPPED)] == SHIPPED
    assert modes.default.id == "assistant" and modes.default.prompt == ""
    for mode in modes.all():
        assert mode.emoji and mode.name("en") and mode.name("ru")
        assert mode.name("ru") != mode.name("en")
        if mode.id != "assistant":
            assert len(mode.prompt) > 40
    assert modes.require("translator").label("ru") == "🌐 Переводчик"
    # Preferred models are ones the shipped catalog lists, and free.
    catalog = ModelCatalog.load("openai/gpt-4o-mini")
    preferred = [mode.model for mode in modes.all() if mode.model]
    assert preferred
    for model_id in preferred:
        assert catalog.require(model_id).min_tier == "free"
    with pytest.raises(UnknownMode):
        modes.require("pirate")


def test_an_override_changes_a_mode_and_adds_one(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "modes.json",
        {
            "_comment": "ours",
            "modes": [
                {"id": "coder", "model": "anthropic/claude-sonnet-4"},
                {"id": "translator", "model": None, "name": {"en": "Interpreter"}},
                _mode("pirate", name={"en": "Pirate", "ru": "Пират"}, emoji="🏴‍☠️"),
            ],
        },
    )
    modes = ModeCatalog.load(path)
    assert [mode.id for mode in modes.all()] == [*SHIPPED, "pirate"]
    coder = modes.require("coder")
    assert coder.model == "anthropic/claude-sonnet-4"
    assert coder.prompt == ModeCatalog.load().require("coder").prompt  # untouched fields stay
    translator = modes.require("translator")
    assert translator.model is None
    # A name without Russian is shown in English to everyone.
    assert translator.name("ru") == "Interpreter"
    assert modes.require("pirate").label("ru") == "🏴‍☠️ Пират"


def test_replace_is_the_whole_list(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "modes.json",
        {"replace": True, "modes": [_mode("plain", prompt=""), _mode("poet")]},
    )
    modes = ModeCatalog.load(path)
    assert [mode.id for mode in modes.all()] == ["plain", "poet"]
    assert modes.default.id == "plain"
    assert "assistant" not in modes


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "invalid JSON at line 1"),
        ([], "expected a JSON object with a 'modes' list"),
        ({"modes": {}}, "'modes' must be a list"),
        ({"modes": [], "extra": 1}, "unknown top-level keys ['extra']"),
        ({"modes": [], "replace": "yes"}, "'replace' must be true or false"),
        ({"modes": [_mode("pirate", colour="red")]}, "unknown fields ['colour']"),
        ({"modes": [{"id": "pirate", "name": "Pirate"}]}, "new mode 'pirate' is missing"),
        ({"modes": [_mode("Pirate!")]}, "id must be 1-24 lowercase letters"),
        ({"modes": [_mode("p" * 25)]}, "id must be 1-24"),
        ({"modes": [_mode("pirate", name={"ru": "Пират"})]}, 'at least "en"'),
        ({"modes": [_mode("pirate", name="")]}, "'en' must be a non-empty string"),
        ({"modes": [_mode("pirate", emoji="")]}, "emoji must be a non-empty string"),
        ({"modes": [_mode("pirate", prompt=7)]}, "prompt must be a string"),
        ({"modes": [_mode("pirate", prompt="x" * 4001)]}, "at most 4000 characters"),
        ({"modes": [_mode("pirate", model=3)]}, "model must be a model id or null"),
        ({"modes": [_mode("pirate"), _mode("pirate")]}, "mode 'pirate' is listed twice"),
        ({"replace": True, "modes": []}, "there are no modes"),
        ({"replace": True, "modes": [{"id": "plain"}]}, "modes[0] is missing name, emoji"),
        (
            {"replace": True, "modes": [_mode(f"m{i}") for i in range(MAX_MODES + 1)]},
            f"at most {MAX_MODES} fit in a menu",
        ),
    ],
)
def test_a_bad_file_names_itself_and_what_is_wrong(
    tmp_path: Path, document: object, message: str
) -> None:
    path = tmp_path / "modes.json"
    if isinstance(document, str):
        path.write_text(document, encoding="utf-8")
    else:
        _write(path, document)
    with pytest.raises(ValueError) as caught:
        ModeCatalog.load(path)
    text = str(caught.value)
    assert text.startswith(f"chat modes file {path}"), text
    assert message in text, text
    assert "\n" not in text


def test_a_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        ModeCatalog.load(tmp_path / "absent.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        ModeCatalog.load(binary)


async def test_the_terminal_lists_and_picks_modes(services: Services, fake_llm: FakeLLM) -> None:
    script = "\n".join(
        [
            "/modes",
            "/mode",
            "/mode pirate",
            "/mode Translator",
            "Bonjour",
            "/mode coder",
            "/regen",
            "/mode -",
            "hello",
            "/mode",
        ]
    )
    out = io.StringIO()
    chat = ConsoleChat(
        services,
        user_name="modes",
        stdin=io.BytesIO(script.encode() + b"\n"),
        stdout=out,
        interactive=False,
    )
    assert await chat.run() == 0
    text = out.getvalue()
    assert "Traceback" not in text
    assert " * assistant      🤖 Assistant\n   translator     🌐 Translator\n" in text
    assert "Mode: 🤖 Assistant. /mode ID switches, /modes lists." in text
    assert "! I don't know the mode “pirate”." in text
    assert "✅ Mode: 🌐 Translator\n" in text
    assert "✅ Mode: 👨‍💻 Coder\n🤖 Model: Qwen3 Coder\n" in text
    assert "✅ Mode: ✍️ My prompt (your prompt from /settings)" in text
    assert text.rstrip().endswith("Mode: 🤖 Assistant. /mode ID switches, /modes lists.")
    modes = services.modes
    bonjour, regen, hello = (request.body for request in fake_llm.requests)
    assert bonjour["messages"][0] == {
        "role": "system",
        "content": modes.require("translator").prompt,
    }
    assert (regen["model"], regen["messages"][0]["content"]) == (
        "qwen/qwen3-coder",
        modes.require("coder").prompt,
    )
    assert [m["role"] for m in hello["messages"]] == ["user", "assistant", "user"]
