"""/settings: what it shows (system prompt, default model, language), its buttons,
and the changes they make."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.db.models import User
from core.i18n import LANGUAGES, t
from core.services import Services

PROMPT_SHOWN_CHARS = 300
PROMPT_MAX_CHARS = 4000


class SettingsOp(StrEnum):
    """What a settings button does. Short values: they travel in button ids."""

    PROMPT = "p"  # ask for a new system prompt
    CLEAR_PROMPT = "c"
    MODEL = "m"  # open the model menu for the default model
    LANGUAGE = "l"  # with the language code as the value
    WEB_SEARCH = "w"  # switch web search for the current conversation


@dataclass(frozen=True)
class SettingsButton:
    op: SettingsOp
    label: str  # localized
    value: str = ""
    selected: bool = False  # the language in use


@dataclass(frozen=True)
class SettingsView:
    language: str  # code
    language_name: str
    system_prompt: str | None
    default_model: str  # id
    default_model_name: str
    text: str  # localized: the /settings message
    # prompt, clear prompt, default model, web search (when offered), then each language
    buttons: list[SettingsButton]


def settings_view(
    services: Services, user: User, lang: str, web_search: bool | None = None
) -> SettingsView:
    """`web_search`: the current conversation's web search toggle (from
    `core.views.search.web_search_state`), None to show no toggle."""
    model = services.catalog.preferred(user.default_model)
    language_name = LANGUAGES.get(lang, lang)
    prompt = user.system_prompt or t(lang, "settings.none")
    text = t(
        lang,
        "settings.header",
        prompt=prompt[:PROMPT_SHOWN_CHARS],
        model=model.name,
        language=language_name,
    )
    buttons = [
        SettingsButton(SettingsOp.PROMPT, t(lang, "settings.prompt")),
        SettingsButton(SettingsOp.CLEAR_PROMPT, t(lang, "settings.prompt_clear")),
        SettingsButton(SettingsOp.MODEL, t(lang, "settings.model")),
        *(
            [
                SettingsButton(
                    SettingsOp.WEB_SEARCH,
                    t(lang, "settings.web_search_on" if web_search else "settings.web_search_off"),
                    selected=web_search,
                )
            ]
            if web_search is not None
            else []
        ),
        *(
            SettingsButton(SettingsOp.LANGUAGE, f"🌐 {name}", code, code == lang)
            for code, name in LANGUAGES.items()
        ),
    ]
    return SettingsView(
        lang, language_name, user.system_prompt, model.id, model.name, text, buttons
    )


async def save_system_prompt(services: Services, user_id: int, prompt: str, lang: str) -> str:
    """Use `prompt` (cut to PROMPT_MAX_CHARS) in the person's new messages; the reply."""
    await services.accounts.set_system_prompt(user_id, prompt[:PROMPT_MAX_CHARS])
    return t(lang, "settings.prompt_saved")


async def clear_system_prompt(services: Services, user: User, lang: str) -> str:
    await services.accounts.set_system_prompt(user.id, None)
    user.system_prompt = None
    return t(lang, "settings.prompt_cleared")


async def choose_language(services: Services, user: User, code: str) -> str | None:
    """Speak `code` to the person from now on; the confirmation in that language, or
    None when it is not one of LANGUAGES (a stale or forged button)."""
    if code not in LANGUAGES:
        return None
    await services.accounts.set_language(user.id, code)
    user.language = code
    return t(code, "settings.language_set")
