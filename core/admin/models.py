"""Models for everyone: turning one off or on again, and refreshing the catalog now.

A model turned off is a row in `disabled_models`, so it stays off across restarts
and in every process: this one at once, the others at their next admin sync (a
worker heartbeat, core/admin/sync.py). The catalog then refuses it
(`ModelDisabled`, "… is turned off for now. Pick another model with /model") and
leaves it out of the model menus; a conversation on it asks for another model at
its next message. The default model (DEFAULT_MODEL) stays on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete

from core.admin.access import Actor
from core.admin.actions import ActionResult
from core.admin.audit import write_audit
from core.admin.errors import DefaultModel
from core.admin.sync import load_disabled
from core.clock import utcnow
from core.db.models import DisabledModel
from core.i18n import t
from core.llm.catalog import ModelInfo, UnknownModel
from core.text import storable
from core.tiers import TIERS

if TYPE_CHECKING:
    from core.services import Services

REASON_LIMIT = 500


@dataclass(frozen=True)
class ModelLine:
    index: int  # the model's position in the catalog: a compact id for buttons
    id: str
    name: str
    quota: str  # localized quota name
    min_plan: str  # the smallest plan that may use it
    enabled: bool
    reason: str | None  # why it was turned off
    text: str


@dataclass(frozen=True)
class ModelsPage:
    models: list[ModelLine]  # the whole catalog, in catalog order
    text: str  # a line per model, ⛔ marking those turned off

    @property
    def disabled(self) -> list[ModelLine]:
        return [model for model in self.models if not model.enabled]


async def models_page(services: Services, lang: str = "en") -> ModelsPage:
    """Every model of the catalog, on or off (as the database says now)."""
    async with services.db.read() as session:
        disabled = await load_disabled(session)
    services.catalog.set_disabled(disabled)
    lines = []
    for index, model in enumerate(services.catalog.all()):
        enabled = model.id not in disabled
        reason = disabled.get(model.id)
        mark = "✅" if enabled else "⛔"
        text = f"{mark} {index + 1}. {model.name} · {model.id} · {TIERS[model.min_tier].name}+"
        if not enabled and reason:
            text += f" · {reason}"
        lines.append(
            ModelLine(
                index,
                model.id,
                model.name,
                t(lang, f"quota.{model.quota_key.value}"),
                TIERS[model.min_tier].name,
                enabled,
                reason,
                text,
            )
        )
    header = t(lang, "admin.models.header", total=len(lines), off=len(disabled))
    return ModelsPage(lines, "\n".join([header, *(line.text for line in lines)]))


def resolve_model(services: Services, model: str | int) -> ModelInfo:
    """A model by its id, or by its `ModelLine.index` (what a button carries)."""
    if isinstance(model, int):
        models = services.catalog.all()
        if 0 <= model < len(models):
            return models[model]
        raise UnknownModel(str(model))
    return services.catalog.require(model.strip())


async def disable_model(
    services: Services,
    actor: Actor,
    model: str | int,
    reason: str | None = None,
    *,
    lang: str = "en",
) -> ActionResult:
    """Turn a model off for everyone (kept across restarts and processes)."""
    info = resolve_model(services, model)
    if info.id == services.catalog.default.id:
        raise DefaultModel(info.id)
    why = storable(reason.strip())[:REASON_LIMIT] if reason and reason.strip() else None
    async with services.db.write() as session:
        row = await session.get(DisabledModel, info.id, with_for_update=True)
        before = {"enabled": row is None, "reason": row.reason if row else None}
        after = {"enabled": False, "reason": why}
        audit_id = None
        if before != after:
            if row is None:
                session.add(DisabledModel(model_id=info.id, reason=why, disabled_at=utcnow()))
            else:
                row.reason = why
            audit_id = await write_audit(
                session, actor, "model_disable", before=before, after=after, model=info.id
            )
        disabled = await load_disabled(session)
    services.catalog.set_disabled(disabled)
    text = t(lang, "admin.done.model_disable", model=info.name, id=info.id)
    return ActionResult("model_disable", None, audit_id is not None, before, after, audit_id, text)


async def enable_model(
    services: Services, actor: Actor, model: str | int, *, lang: str = "en"
) -> ActionResult:
    """Turn a model on again for everyone."""
    info = resolve_model(services, model)
    async with services.db.write() as session:
        row = await session.get(DisabledModel, info.id, with_for_update=True)
        before = {"enabled": row is None, "reason": row.reason if row else None}
        after = {"enabled": True, "reason": None}
        audit_id = None
        if row is not None:
            await session.execute(delete(DisabledModel).where(DisabledModel.model_id == info.id))
            audit_id = await write_audit(
                session, actor, "model_enable", before=before, after=after, model=info.id
            )
        disabled = await load_disabled(session)
    services.catalog.set_disabled(disabled)
    text = t(lang, "admin.done.model_enable", model=info.name, id=info.id)
    return ActionResult("model_enable", None, audit_id is not None, before, after, audit_id, text)


async def refresh_catalog(services: Services, actor: Actor, *, lang: str = "en") -> ActionResult:
    """Fetch prices and limits from the provider now (the list itself is curated:
    a refresh never adds a model). Offline keeps what the catalog has."""
    before = _prices(services)
    ok = await services.refresh_catalog(force=True)
    after = _prices(services)
    changed = sorted(model for model, price in after.items() if before.get(model) != price)
    async with services.db.write() as session:
        audit_id = await write_audit(
            session,
            actor,
            "catalog_refresh",
            before={"models": len(before)},
            after={"models": len(after), "ok": ok},
            changed=changed,
        )
    key = "admin.done.refresh" if ok else "admin.done.refresh_failed"
    text = t(lang, key, models=len(after), changed=len(changed))
    return ActionResult(
        "catalog_refresh",
        None,
        bool(changed),
        {"models": len(before)},
        {"models": len(after), "ok": ok, "changed": changed},
        audit_id,
        text,
    )


def _prices(services: Services) -> dict[str, tuple[object, ...]]:
    return {
        model.id: (
            model.context_length,
            model.max_output_tokens,
            model.prompt_price,
            model.completion_price,
            model.vision,
        )
        for model in services.catalog.all()
    }
