"""The model menu (/model, and the default model in /settings) and the one way to
switch models that every platform uses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from core.db.models import User
from core.i18n import t
from core.llm.catalog import ModelCatalog, ModelInfo
from core.services import Services
from core.tiers import TIERS, QuotaKey, Tier

# Beside a model that listens to voice notes (VOICE_MODE=model).
AUDIO_MARK = "🎧"


class ModelScope(StrEnum):
    """What a pick changes. Short values: they travel in button ids."""

    CONVERSATION = "c"  # the current conversation, and the default for new ones
    DEFAULT = "d"  # only the default for new conversations (/settings)


@dataclass(frozen=True)
class ModelChoice:
    index: int  # position in the catalog: a compact id for buttons (see `model_at`)
    id: str
    name: str
    current: bool
    locked: bool  # the person's plan does not include it
    required_tier: Tier | None  # the smallest plan that does, when locked
    required_plan: str | None  # that plan's name, when locked


@dataclass(frozen=True)
class ModelGroup:
    key: QuotaKey
    label: str  # localized quota name: "Small messages"
    models: list[ModelChoice]


@dataclass(frozen=True)
class ModelMenu:
    scope: ModelScope
    current: str  # model id
    current_name: str  # its name (the id when the catalog no longer has it)
    groups: list[ModelGroup]  # by quota key, each by name
    header: str  # localized: "Current model: …\nPick one (🔒 needs a bigger plan):"


@dataclass(frozen=True)
class ModelSwitch:
    model: ModelInfo
    scope: ModelScope
    conversation_id: uuid.UUID | None  # the conversation now on it, if one was
    notice: str  # localized: "✅ Model: …"


def model_menu(
    catalog: ModelCatalog,
    tier: Tier,
    current: str,
    lang: str,
    scope: ModelScope,
    *,
    mark_audio: bool = False,
) -> ModelMenu:
    """The catalog grouped by quota class; `current` marked; models above `tier` locked;
    with `mark_audio` (VOICE_MODE=model), the models that listen to voice notes get 🎧."""
    index = {model.id: number for number, model in enumerate(catalog.all())}
    groups = [
        ModelGroup(
            key,
            t(lang, f"quota.{key.value}"),
            [
                _choice(model, index[model.id], model.id == current, tier, mark_audio)
                for model in models
            ],
        )
        for key, models in catalog.grouped().items()
    ]
    known = catalog.get(current)
    name = known.name if known else current
    return ModelMenu(scope, current, name, groups, t(lang, "model.header", model=name))


def _choice(
    model: ModelInfo, index: int, current: bool, tier: Tier, mark_audio: bool
) -> ModelChoice:
    locked = not model.available_to(tier)
    return ModelChoice(
        index,
        model.id,
        f"{model.name} {AUDIO_MARK}" if mark_audio and model.audio else model.name,
        current,
        locked,
        model.min_tier if locked else None,
        TIERS[model.min_tier].name if locked else None,
    )


def model_at(catalog: ModelCatalog, index: int) -> ModelInfo | None:
    """The model behind a `ModelChoice.index` from a button; None for a stale one."""
    models = catalog.all()
    return models[index] if 0 <= index < len(models) else None


async def selected_model(services: Services, user: User, scope: ModelScope) -> str:
    """The model a menu of `scope` marks: the one the next message goes to, or the
    default of new conversations."""
    if scope is ModelScope.CONVERSATION:
        return await services.current_model_id(user)
    return services.catalog.preferred(user.default_model).id


async def menu_for(services: Services, user: User, lang: str, scope: ModelScope) -> ModelMenu:
    """The person's model menu."""
    current = await selected_model(services, user, scope)
    return model_menu(
        services.catalog,
        Tier(user.tier),
        current,
        lang,
        scope,
        mark_audio=services.voice.mode == "model",
    )


def locked_notice(lang: str, model: ModelInfo) -> str:
    """What a chat says when someone picks a model their plan does not include."""
    return t(lang, "model.locked", model=model.name, plan=TIERS[model.min_tier].name)


async def switch_model(
    services: Services, user: User, model_id: str, lang: str, scope: ModelScope
) -> ModelSwitch:
    """Make `model_id` the person's default and, for CONVERSATION, the model of their
    current conversation. Raises UnknownModel, or ModelLocked when their plan does not
    include it (then nothing changes). `user` is updated to match."""
    model = services.catalog.check_access(model_id, Tier(user.tier))
    await services.accounts.set_default_model(user.id, model.id)
    user.default_model = model.id
    conversation_id = None
    if scope is ModelScope.CONVERSATION:
        conversation = await services.conversations.current(user.id)
        if conversation is not None:
            await services.conversations.set_model(user.id, conversation.id, model.id)
            conversation_id = conversation.id
    return ModelSwitch(model, scope, conversation_id, t(lang, "model.set", model=model.name))
