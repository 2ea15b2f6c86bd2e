"""/mode: the chat modes menu and the one way to pick a mode that every platform uses.

A mode belongs to a conversation: its prompt becomes the conversation's system prompt
and, when the person's plan allows it, its preferred model the conversation's model.
The prompt from /settings stays the person's default for conversations without a
mode, and "✍️ My prompt" goes back to it. Picking a mode costs nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.db.models import Conversation, User
from core.i18n import t
from core.llm.catalog import ModelDisabled, ModelInfo, ModelLocked, UnknownModel
from core.modes import Mode, ModeCatalog
from core.services import Services
from core.tiers import TIERS, Tier

# The choice "✍️ My prompt": no mode. Not a valid mode id, so no mode can take it.
MY_PROMPT = "-"


@dataclass(frozen=True)
class ModeChoice:
    id: str  # a mode id, or MY_PROMPT
    label: str  # localized: "🌐 Translator"
    current: bool


@dataclass(frozen=True)
class ModeMenu:
    conversation_id: uuid.UUID | None  # what a pick changes; None: the current one (or new)
    current: str  # id of the choice in use
    current_label: str
    header: str  # localized: "Current mode: …\nPick one for this conversation:"
    choices: list[ModeChoice]  # every mode, then "My prompt" when the person has one


@dataclass(frozen=True)
class ModeSwitch:
    mode: Mode | None  # None: the person's own prompt
    conversation_id: uuid.UUID
    model: ModelInfo | None  # the conversation's model now (None: not in the catalog)
    model_changed: bool
    refused_model: bool  # the mode prefers a model the person cannot use now
    notice: str  # localized, one line per change: "✅ Mode: …\n🤖 Model: …"


def _in_use(modes: ModeCatalog, user: User, conversation: Conversation | None) -> str:
    if conversation is not None and conversation.mode is not None:
        return conversation.mode
    return MY_PROMPT if user.system_prompt else modes.default.id


def _label(modes: ModeCatalog, choice: str, lang: str) -> str:
    if choice == MY_PROMPT:
        return t(lang, "mode.mine")
    mode = modes.get(choice)
    return mode.label(lang) if mode else choice  # a mode the operator has since removed


async def mode_menu(
    services: Services, user: User, lang: str, conversation_id: uuid.UUID | None = None
) -> ModeMenu:
    """The modes, the one in use marked. `conversation_id`: a conversation of the
    person's other than the current one (a Discord thread's); ConversationNotFound
    when it is not theirs."""
    if conversation_id is not None:
        conversation: Conversation | None = await services.conversations.get(
            user.id, conversation_id
        )
    else:
        conversation = await services.conversations.current(user.id)
    modes = services.modes
    current = _in_use(modes, user, conversation)
    choices = [ModeChoice(mode.id, mode.label(lang), mode.id == current) for mode in modes.all()]
    if user.system_prompt or current == MY_PROMPT:
        choices.append(ModeChoice(MY_PROMPT, t(lang, "mode.mine"), current == MY_PROMPT))
    label = _label(modes, current, lang)
    return ModeMenu(
        conversation.id if conversation is not None else None,
        current,
        label,
        t(lang, "mode.header", mode=label),
        choices,
    )


async def switch_mode(
    services: Services,
    user: User,
    choice: str,
    lang: str,
    conversation_id: uuid.UUID | None = None,
    *,
    platform: str | None = None,
) -> ModeSwitch:
    """Use mode `choice` (or MY_PROMPT) in the conversation: `conversation_id`, else
    the person's current one, else a new one. The mode's preferred model comes along
    when the person's plan includes it and it is on; otherwise the model stays and the
    notice says why. `platform`: where a new conversation is made. Raises UnknownMode
    (nothing changes), or ConversationNotFound for a conversation that is not theirs."""
    mode = None if choice == MY_PROMPT else services.modes.require(choice)
    catalog, tier = services.catalog, Tier(user.tier)
    preferred: ModelInfo | None = None
    refusal: str | None = None
    if mode is not None and mode.model is not None:
        try:
            preferred = catalog.check_access(mode.model, tier)
        except ModelLocked as exc:
            plan = TIERS[exc.model.min_tier].name
            refusal = t(lang, "mode.model_locked", model=exc.model.name, plan=plan)
        except ModelDisabled as exc:
            refusal = t(lang, "mode.model_off", model=exc.model.name)
        except UnknownModel:
            pass  # a server without that model: the mode is its prompt alone
    before = await _model_before(services, user, conversation_id)
    conversation = await services.conversations.set_mode(
        user.id,
        conversation_id,
        mode.id if mode else None,
        mode.prompt if mode else None,
        model_id=preferred.id if preferred else None,
        new_model_id=catalog.preferred(user.default_model).id,
        platform=platform,
    )
    model = catalog.get(conversation.model_id)
    changed = preferred is not None and before != preferred.id
    lines = [
        t(lang, "mode.set", mode=mode.label(lang))
        if mode
        else t(lang, "mode.mine_set", mode=t(lang, "mode.mine"))
    ]
    if changed and model is not None:
        lines.append(t(lang, "mode.model_set", model=model.name))
    if refusal is not None:
        current = model.name if model else conversation.model_id
        lines.append(refusal + " " + t(lang, "mode.model_kept", model=current))
    return ModeSwitch(mode, conversation.id, model, changed, refusal is not None, "\n".join(lines))


async def _model_before(
    services: Services, user: User, conversation_id: uuid.UUID | None
) -> str | None:
    """The model of the conversation a pick changes, before it (None: a new one)."""
    if conversation_id is not None:
        return (await services.conversations.get(user.id, conversation_id)).model_id
    current = await services.conversations.current(user.id)
    return current.model_id if current else None
