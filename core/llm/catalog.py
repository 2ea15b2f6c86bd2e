"""The models people can pick: a curated list shipped with the bot, kept current from OpenRouter.

Three layers, later ones winning: the shipped `models.json`, provider data from
OpenRouter's `/models` (context length, prices, output limit, image and audio input), and the
operator's override file. Provider data only updates models we already list; it
never adds any, because the shipped list is curated.

Any other OpenAI-compatible server (OpenAI, vLLM, Ollama, a gateway) gets no shipped
list: its catalog is what its own `/models` lists (`from_server`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from core.clock import utcnow
from core.entry_file import EntryFormat
from core.errors import OneAIError
from core.tiers import MODEL_QUOTA_KEYS, TIERS, QuotaKey, Tier

logger = logging.getLogger(__name__)

_E = TypeVar("_E", QuotaKey, Tier)

_PER_MILLION = Decimal(1_000_000)
_QUOTA_ORDER = {key: index for index, key in enumerate(QuotaKey)}
_REQUIRED_FIELDS = (
    "id",
    "name",
    "provider",
    "context_length",
    "max_output_tokens",
    "prompt_price",
    "completion_price",
    "quota_key",
    "min_tier",
)
_OPTIONAL_FIELDS = ("vision", "audio", "image_output", "description")
_ALL_FIELDS = frozenset(_REQUIRED_FIELDS + _OPTIONAL_FIELDS)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    name: str
    provider: str
    context_length: int
    max_output_tokens: int
    prompt_price: Decimal  # USD per 1M prompt tokens
    completion_price: Decimal  # USD per 1M completion tokens
    quota_key: QuotaKey
    min_tier: Tier
    vision: bool = False  # accepts image input
    audio: bool = False  # accepts audio input (`input_audio` content parts)
    image_output: bool = False  # generates images
    description: str = ""

    def available_to(self, tier: Tier) -> bool:
        return tier.rank >= self.min_tier.rank


# How the chat platforms name their model list (Telegram's /model). The terminal has
# its own name for it: see `ModelChoiceError.pointing_to`.
MODELS_COMMAND = "/model"


class ModelChoiceError(OneAIError):
    """A model that cannot be picked. The message ends by pointing to the model list,
    which each platform names its own way."""

    def __init__(self, reason: str, hint: str, **details: object) -> None:
        self._reason, self._hint = reason, hint
        super().__init__(self.pointing_to(MODELS_COMMAND), **details)

    def pointing_to(self, models_command: str) -> str:
        """The message, naming `models_command` as the place to see the models."""
        return f"{self._reason} {self._hint.format(models=models_command)}"


class UnknownModel(ModelChoiceError):
    code = "unknown_model"

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"I don't know the model “{model_id}”.",
            "Use {models} to see the ones you can pick.",
            model=model_id,
        )


class ModelLocked(ModelChoiceError):
    code = "model_locked"

    def __init__(self, model: ModelInfo) -> None:
        plan = TIERS[model.min_tier].name
        super().__init__(
            f"{model.name} is available on the {plan} plan and above.",
            "Upgrade your plan, or pick another model with {models}.",
            model=model.id,
            required_tier=model.min_tier,
        )
        self.model = model


class ModelDisabled(ModelChoiceError):
    """An administrator turned the model off for everyone."""

    code = "model_disabled"

    def __init__(self, model: ModelInfo) -> None:
        super().__init__(
            f"{model.name} is turned off for now.",
            "Pick another model with {models}.",
            model=model.id,
        )
        self.model = model


@dataclass(frozen=True)
class _State:
    """One consistent snapshot; swapped as a whole so readers never see half an update."""

    by_id: Mapping[str, ModelInfo]
    ordered: tuple[ModelInfo, ...]


def _sort_key(model: ModelInfo) -> tuple[int, str, str]:
    return (_QUOTA_ORDER[model.quota_key], model.name.casefold(), model.id)


def _snapshot(models: Iterable[ModelInfo]) -> _State:
    by_id: dict[str, ModelInfo] = {}
    for model in models:
        if model.id in by_id:
            raise ValueError(f"model {model.id!r} is listed twice")
        by_id[model.id] = model
    return _State(by_id, tuple(sorted(by_id.values(), key=_sort_key)))


class ModelCatalog:
    def __init__(
        self,
        models: Iterable[ModelInfo],
        default_model: str,
        *,
        pinned: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        """`pinned`: per model id, fields the operator set; provider data leaves them alone."""
        state = _snapshot(models)
        if default_model not in state.by_id:
            raise ValueError(
                f"default model {default_model!r} is not in the model catalog; "
                "set DEFAULT_MODEL to a listed id or add the model with MODEL_CATALOG_FILE"
            )
        self._state = state
        self._default_id = default_model
        self._pinned = {key: frozenset(value) for key, value in (pinned or {}).items()}
        self._refresh_lock = asyncio.Lock()
        # Turned off for everyone by an administrator (kept in the database; see
        # core/admin/models.py): refused by check_access, left out of the menus.
        self._disabled: frozenset[str] = frozenset()

    # --- lookups -------------------------------------------------------------------------

    def get(self, model_id: str) -> ModelInfo | None:
        return self._state.by_id.get(model_id)

    def preferred(self, model_id: str | None) -> ModelInfo:
        """The model a person picked as their default, or the catalog's default when
        they picked none, it is no longer listed or it is turned off (and while the
        default is off too, the first model every plan may use that is on)."""
        model = self.get(model_id) if model_id else None
        if model is not None and model.id not in self._disabled:
            return model
        if self._default_id not in self._disabled:
            return self.default
        return next(
            (m for m in self._state.ordered if m.id not in self._disabled and m.min_tier.rank == 0),
            self.default,
        )

    def require(self, model_id: str) -> ModelInfo:
        model = self.get(model_id)
        if model is None:
            raise UnknownModel(model_id)
        return model

    def check_access(self, model_id: str, tier: Tier) -> ModelInfo:
        """The model, if it is on and `tier` may use it; else UnknownModel,
        ModelDisabled or ModelLocked."""
        model = self.require(model_id)
        if model.id in self._disabled:
            raise ModelDisabled(model)
        if not model.available_to(tier):
            raise ModelLocked(model)
        return model

    # --- turned off by an administrator ------------------------------------------------

    @property
    def disabled(self) -> frozenset[str]:
        """Ids of the models turned off for everyone."""
        return self._disabled

    def is_enabled(self, model_id: str) -> bool:
        return model_id in self._state.by_id and model_id not in self._disabled

    def set_disabled(self, model_ids: Iterable[str]) -> None:
        """The models turned off for everyone from now on (ids not listed are kept
        too: a model may come back with a later catalog)."""
        self._disabled = frozenset(model_ids)

    @property
    def default(self) -> ModelInfo:
        return self._state.by_id[self._default_id]

    def all(self) -> list[ModelInfo]:
        """Every model, turned off or not, by quota key (small, large, image) then
        name: positions stay put when a model is turned off (buttons carry them)."""
        return list(self._state.ordered)

    def grouped(self) -> dict[QuotaKey, list[ModelInfo]]:
        """The models people may pick (not turned off), in non-empty groups in quota
        key order, each sorted by name."""
        groups: dict[QuotaKey, list[ModelInfo]] = {}
        for model in self._state.ordered:
            if model.id not in self._disabled:
                groups.setdefault(model.quota_key, []).append(model)
        return groups

    def __len__(self) -> int:
        return len(self._state.by_id)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._state.by_id

    # --- loading -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        default_model: str,
        override_file: Path | None = None,
        cache_file: Path | None = None,
    ) -> ModelCatalog:
        """Shipped list, then cached provider data (any age), then the operator's override.

        A broken override file raises ValueError naming the file; a broken cache is ignored.
        """
        models = _load_shipped()
        if cache_file is not None:
            cached = _read_cache(cache_file)
            if cached is not None:
                models = _apply_provider_data(models, cached[1], {})
        pinned: dict[str, frozenset[str]] = {}
        if override_file is not None:
            models, pinned = _apply_override(models, override_file)
        return cls(models, default_model, pinned=pinned)

    @classmethod
    def from_server(
        cls,
        data: object,
        default_model: str | None,
        *,
        large: Collection[str] = (),
        context_length: int,
    ) -> ModelCatalog:
        """The catalog of an OpenAI-compatible server from its `/models` `data` list:
        free for every plan, in the small-message class unless in `large`, no prices,
        no image generation. The default is `default_model`, else the first model
        listed. ValueError when the list is empty."""
        models = server_models(data, large=large, context_length=context_length)
        if not models:
            raise ValueError("the server lists no models")
        return cls(models, default_model or models[0].id)

    async def refresh(
        self,
        fetch_models: Callable[[], Awaitable[list[dict[str, Any]]]],
        cache_file: Path,
        max_age: timedelta,
        *,
        base_url: str | None = None,
    ) -> bool:
        """Bring provider data up to date; True if the catalog now holds current data.

        A cache younger than `max_age` is used without fetching. Any failure keeps the
        current list and returns False: a missing price update must never stop the bot.
        Models are never added or dropped here. `base_url`: the server the cache is
        for, when its list is the catalog (`from_server`): the next start reads it.
        """
        async with self._refresh_lock:
            try:
                cached = await asyncio.to_thread(_read_cache, cache_file)
                if cached is not None and _is_fresh(cached[0], max_age):
                    self._use_provider_data(cached[1])
                    return True
                data = _validated_provider_list(await fetch_models())
                self._use_provider_data(data)
            except Exception as exc:
                logger.warning("model catalog refresh failed, keeping current list: %r", exc)
                return False
            try:
                await asyncio.to_thread(_write_cache, cache_file, data, base_url=base_url)
            except OSError as exc:
                # The catalog is current anyway; the next start just fetches again.
                logger.warning("could not write model catalog cache %s: %r", cache_file, exc)
            return True

    def _use_provider_data(self, data: list[dict[str, Any]]) -> None:
        models = _apply_provider_data(self._state.ordered, data, self._pinned)
        self._state = _snapshot(models)


# --- the catalog file format ---------------------------------------------------------------


def _parse_document(
    raw: object, where: str, *, complete: bool
) -> tuple[list[dict[str, Any]], bool]:
    return _FORMAT.parse(raw, where, complete=complete)


def _convert(name: str, value: object) -> object:
    if name in ("id", "name", "provider"):
        if not isinstance(value, str) or not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip()
    if name == "description":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    if name in ("context_length", "max_output_tokens"):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError("must be a positive integer")
        return value
    if name in ("prompt_price", "completion_price"):
        return _price(value)
    if name == "quota_key":
        key = _enum(QuotaKey, value)
        if key not in MODEL_QUOTA_KEYS:
            raise ValueError(f"must be one of {', '.join(MODEL_QUOTA_KEYS)}, not {value!r}")
        return key
    if name == "min_tier":
        return _enum(Tier, value)
    if not isinstance(value, bool):  # vision, audio, image_output
        raise ValueError("must be true or false")
    return value


def _price(value: object) -> Decimal:
    # Strings keep exact decimals; plain numbers are accepted for hand-written overrides.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('must be a price string such as "0.15"')
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"is not a number: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ValueError("must be a finite, non-negative number")
    return price


def _enum(kind: type[_E], value: object) -> _E:
    if isinstance(value, str) and value in {member.value for member in kind}:
        return kind(value)
    raise ValueError(f"must be one of {', '.join(kind)}, not {value!r}")


def _load_shipped() -> list[ModelInfo]:
    text = resources.files("core.llm").joinpath("models.json").read_text("utf-8")
    entries, _ = _parse_document(json.loads(text), "shipped models.json", complete=True)
    return [ModelInfo(**fields) for fields in entries]


def _apply_override(
    models: list[ModelInfo], path: Path
) -> tuple[list[ModelInfo], dict[str, frozenset[str]]]:
    """Merge (or with "replace": true, swap in) the operator's file; returns models and
    the fields it set per id, which later provider data must not overwrite."""
    where = f"model catalog file {path}"
    try:
        raw = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    replace = isinstance(raw, dict) and raw.get("replace") is True
    entries, _ = _parse_document(raw, where, complete=replace)
    merged = {} if replace else {model.id: model for model in models}
    for fields in entries:
        current = merged.get(fields["id"])
        if current is not None:
            merged[current.id] = dataclasses.replace(current, **fields)
            continue
        missing = [name for name in _REQUIRED_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"{where}: new model {fields['id']!r} is missing {', '.join(missing)}")
        merged[fields["id"]] = ModelInfo(**fields)
    pinned = {fields["id"]: frozenset(fields) for fields in entries}
    return list(merged.values()), pinned


# --- provider data (OpenRouter /models) ----------------------------------------------------


def _validated_provider_list(data: object) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("provider model list is not a list of objects")
    return data


def _per_million(per_token: object) -> Decimal | None:
    """OpenRouter quotes USD per token as a string; negative means 'varies' (routers)."""
    try:
        price = Decimal(str(per_token)) * _PER_MILLION
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return price.quantize(Decimal(1)) if price == price.to_integral_value() else price.normalize()


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _provider_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of one OpenRouter entry we trust; anything odd is skipped, not fatal."""
    fields: dict[str, Any] = {}
    if (context := _positive_int(item.get("context_length"))) is not None:
        fields["context_length"] = context
    pricing = item.get("pricing")
    if isinstance(pricing, dict):
        for source, target in (("prompt", "prompt_price"), ("completion", "completion_price")):
            if source in pricing and (price := _per_million(pricing[source])) is not None:
                fields[target] = price
    top = item.get("top_provider")
    limit = _positive_int(top.get("max_completion_tokens")) if isinstance(top, dict) else None
    if limit is not None:
        fields["max_output_tokens"] = limit
    architecture = item.get("architecture")
    if isinstance(architecture, dict) and isinstance(architecture.get("input_modalities"), list):
        fields["vision"] = "image" in architecture["input_modalities"]
        fields["audio"] = "audio" in architecture["input_modalities"]
    return fields


def _apply_provider_data(
    models: Iterable[ModelInfo],
    data: Iterable[Mapping[str, Any]],
    pinned: Mapping[str, frozenset[str]],
) -> list[ModelInfo]:
    by_id = {item["id"]: item for item in data if isinstance(item.get("id"), str)}
    updated = []
    for model in models:
        item = by_id.get(model.id)
        if item is None:
            updated.append(model)
            continue
        keep = pinned.get(model.id, frozenset())
        fields = {key: value for key, value in _provider_fields(item).items() if key not in keep}
        if "context_length" in fields or "max_output_tokens" in fields:
            # Some providers report an output limit equal to the whole context; cap it.
            context = fields.get("context_length", model.context_length)
            output = fields.get("max_output_tokens", model.max_output_tokens)
            fields["max_output_tokens"] = min(output, context)
        updated.append(dataclasses.replace(model, **fields))
    return updated


# --- any other OpenAI-compatible server (GET /models in OpenAI's format) ------------------


def server_models(
    data: object,
    *,
    large: Collection[str] = (),
    context_length: int,
) -> list[ModelInfo]:
    """Models in the order the server lists them (an id listed twice counts once)."""
    items = _validated_provider_list(data)
    by_id = {item["id"].strip(): item for item in items if _nonblank(item.get("id"))}
    large_ids = frozenset(large)
    models = []
    for model_id, item in by_id.items():
        # vLLM says `max_model_len`; OpenAI and Ollama say nothing.
        context = (
            _positive_int(item.get("context_length"))
            or _positive_int(item.get("max_model_len"))
            or context_length
        )
        owner = item.get("owned_by")
        models.append(
            ModelInfo(
                id=model_id,
                name=model_id,
                provider=owner.strip() if isinstance(owner, str) else "",
                context_length=context,
                # A quarter for the answer keeps prompt + max_tokens inside the window,
                # which servers such as vLLM enforce.
                max_output_tokens=max(1, context // 4),
                prompt_price=Decimal(0),
                completion_price=Decimal(0),
                quota_key=QuotaKey.LARGE if model_id in large_ids else QuotaKey.SMALL,
                min_tier=Tier.FREE,
            )
        )
    return models


def is_openrouter_list(data: object) -> bool:
    """A model list in OpenRouter's format (with prices): a gateway in front of
    OpenRouter, whose ids the shipped catalog names."""
    return isinstance(data, list) and any(
        isinstance(item, dict) and isinstance(item.get("pricing"), dict) for item in data
    )


def _nonblank(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def read_server_cache(path: Path, base_url: str) -> list[dict[str, Any]] | None:
    """The model list last fetched from `base_url` (any age), or None: a cache written
    for another server (OpenRouter before a switch) is not that server's list."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("base_url") != base_url:
        return None
    cached = _read_cache(path)
    return cached[1] if cached is not None else None


def write_server_cache(path: Path, base_url: str, data: list[dict[str, Any]]) -> None:
    _write_cache(path, data, base_url=base_url)


# --- the cache file ------------------------------------------------------------------------


def _is_fresh(fetched_at: datetime, max_age: timedelta) -> bool:
    # A timestamp from the future (clock change, copied file) counts as stale.
    return timedelta(0) <= utcnow() - fetched_at < max_age


def _read_cache(path: Path) -> tuple[datetime, list[dict[str, Any]]] | None:
    """(fetched_at, provider data) or None when missing or unusable."""
    try:
        raw = json.loads(path.read_text("utf-8"))
        fetched_at = datetime.fromisoformat(raw["fetched_at"])
        if fetched_at.tzinfo is None:
            raise ValueError("fetched_at has no time zone")
        return fetched_at, _validated_provider_list(raw["data"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        logger.warning("ignoring unreadable model catalog cache %s: %r", path, exc)
        return None


def _trim(item: Mapping[str, Any]) -> dict[str, Any]:
    """Only what `_provider_fields` and `server_models` read, so the cache stays small."""
    keep = ("id", "context_length", "pricing", "top_provider", "architecture")
    keep_too = ("owned_by", "max_model_len")
    return {key: item[key] for key in keep + keep_too if key in item}


def _write_cache(path: Path, data: list[dict[str, Any]], *, base_url: str | None = None) -> None:
    payload: dict[str, Any] = {"fetched_at": utcnow().isoformat()}
    if base_url is not None:
        payload["base_url"] = base_url
    payload["data"] = [_trim(item) for item in data]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: readers see the old file or the new one, never half.
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


_FORMAT = EntryFormat("models", "model", _REQUIRED_FIELDS, _ALL_FIELDS, _convert)
