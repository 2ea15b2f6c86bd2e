"""Chat modes (personas): a system prompt with a name, an emoji and an optional
preferred model, picked per conversation with /mode.

The shipped set is `modes.json`; the operator's CHAT_MODES_FILE (same format) changes
or adds modes, or with "replace": true is the whole set. Both are validated like the
model catalog: a broken file names itself, the entry and the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from core.entry_file import EntryFormat
from core.errors import OneAIError
from core.i18n import DEFAULT_LANGUAGE

# Telegram's callback data holds 64 bytes: the id travels in it with a conversation id.
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")
# A Discord select menu holds 25 options; one of them is "My prompt".
MAX_MODES = 24
NAME_CHARS = 60
EMOJI_CHARS = 16
PROMPT_CHARS = 4000  # as much as a prompt from /settings

_REQUIRED_FIELDS = ("id", "name", "emoji", "prompt")
_OPTIONAL_FIELDS = ("model",)
_ALL_FIELDS = frozenset(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)


@dataclass(frozen=True)
class Mode:
    id: str
    names: Mapping[str, str]  # per language code; "en" always
    emoji: str
    prompt: str  # "" for none: the model's own behaviour
    model: str | None = None  # preferred model id

    def name(self, lang: str | None) -> str:
        return self.names.get(lang or DEFAULT_LANGUAGE) or self.names[DEFAULT_LANGUAGE]

    def label(self, lang: str | None) -> str:
        """As menus show it: 🌐 Translator."""
        return f"{self.emoji} {self.name(lang)}"


class UnknownMode(OneAIError):
    code = "unknown_mode"

    def __init__(self, mode_id: str) -> None:
        super().__init__(f"I don't know the mode “{mode_id[:40]}”.", mode=mode_id[:40])


class ModeCatalog:
    """The modes in the order menus show them; the first is the default."""

    def __init__(self, modes: Iterable[Mode]) -> None:
        ordered = tuple(modes)
        if not ordered:
            raise ValueError("there are no modes")
        if len(ordered) > MAX_MODES:
            raise ValueError(f"{len(ordered)} modes; at most {MAX_MODES} fit in a menu")
        by_id: dict[str, Mode] = {}
        for mode in ordered:
            if mode.id in by_id:
                raise ValueError(f"mode {mode.id!r} is listed twice")
            by_id[mode.id] = mode
        self._ordered = ordered
        self._by_id = by_id

    def get(self, mode_id: str) -> Mode | None:
        return self._by_id.get(mode_id)

    def require(self, mode_id: str) -> Mode:
        mode = self.get(mode_id)
        if mode is None:
            raise UnknownMode(mode_id)
        return mode

    @property
    def default(self) -> Mode:
        """What a conversation without a mode (and without a prompt of the person's
        own) behaves as."""
        return self._ordered[0]

    def all(self) -> list[Mode]:
        return list(self._ordered)

    def __len__(self) -> int:
        return len(self._ordered)

    def __contains__(self, mode_id: object) -> bool:
        return mode_id in self._by_id

    @classmethod
    def load(cls, override_file: Path | None = None) -> ModeCatalog:
        """The shipped modes, then the operator's file. A broken file raises
        ValueError naming it."""
        text = resources.files("core").joinpath("modes.json").read_text("utf-8")
        entries, _ = _parse_document(json.loads(text), "shipped modes.json", complete=True)
        modes = [Mode(**_kwargs(fields)) for fields in entries]
        if override_file is not None:
            modes = _apply_override(modes, override_file)
        try:
            return cls(modes)
        except ValueError as exc:
            where = f"chat modes file {override_file}" if override_file else "shipped modes.json"
            raise ValueError(f"{where}: {exc}") from None


# --- the file format ------------------------------------------------------------------------


def _parse_document(
    raw: object, where: str, *, complete: bool
) -> tuple[list[dict[str, Any]], bool]:
    return _FORMAT.parse(raw, where, complete=complete)


def _kwargs(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The file's fields as Mode's arguments (a file says "name", Mode "names")."""
    return {("names" if key == "name" else key): value for key, value in fields.items()}


def _convert(name: str, value: object) -> object:
    if name == "id":
        if not isinstance(value, str) or _ID.fullmatch(value) is None:
            raise ValueError(
                "must be 1-24 lowercase letters, digits, _ or -, starting with a letter or digit"
            )
        return value
    if name == "name":
        return _names(value)
    if name == "emoji":
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > EMOJI_CHARS:
            raise ValueError(f"must be a non-empty string of at most {EMOJI_CHARS} characters")
        return value.strip()
    if name == "prompt":
        if not isinstance(value, str) or len(value) > PROMPT_CHARS:
            raise ValueError(f"must be a string of at most {PROMPT_CHARS} characters")
        return value.strip()
    # model: a model id, or null for none
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a model id or null")
    return value.strip()


def _names(value: object) -> dict[str, str]:
    """A name for every language ({"en": ..., "ru": ...}), or one for all."""
    if isinstance(value, str):
        value = {DEFAULT_LANGUAGE: value}
    if not isinstance(value, dict) or DEFAULT_LANGUAGE not in value:
        raise ValueError(f'must be a string or an object with at least "{DEFAULT_LANGUAGE}"')
    names: dict[str, str] = {}
    for lang, text in value.items():
        if not isinstance(text, str) or not text.strip() or len(text.strip()) > NAME_CHARS:
            raise ValueError(f"{lang!r} must be a non-empty string of at most {NAME_CHARS} chars")
        names[lang] = text.strip()
    return names


def _apply_override(modes: list[Mode], path: Path) -> list[Mode]:
    """Merge (or with "replace": true, swap in) the operator's file: a known id
    changes the fields given, a new one is added at the end."""
    where = f"chat modes file {path}"
    try:
        raw = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    replace = isinstance(raw, dict) and raw.get("replace") is True
    entries, _ = _parse_document(raw, where, complete=replace)
    merged = {} if replace else {mode.id: mode for mode in modes}
    for fields in entries:
        current = merged.get(fields["id"])
        if current is not None:
            merged[current.id] = dataclasses.replace(current, **_kwargs(fields))
            continue
        missing = [name for name in _REQUIRED_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"{where}: new mode {fields['id']!r} is missing {', '.join(missing)}")
        merged[fields["id"]] = Mode(**_kwargs(fields))
    return list(merged.values())


_FORMAT = EntryFormat("modes", "mode", _REQUIRED_FIELDS, _ALL_FIELDS, _convert)
