"""The shipped model catalog, operator overrides and the OpenRouter refresh."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.clock import utcnow
from core.llm.catalog import ModelCatalog, ModelInfo, ModelLocked, UnknownModel
from core.tiers import MODEL_QUOTA_KEYS, QuotaKey, Tier

DEFAULT = "openai/gpt-4o-mini"


@pytest.fixture
def catalog() -> ModelCatalog:
    return ModelCatalog.load(DEFAULT)


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _provider_item(
    model_id: str,
    *,
    prompt: str = "0.0000002",
    completion: str = "0.0000008",
    context: int | None = 200_000,
    max_completion: int | None = 20_000,
    inputs: tuple[str, ...] = ("text", "image"),
) -> dict[str, Any]:
    """One entry shaped like OpenRouter's GET /models `data` items."""
    return {
        "id": model_id,
        "name": model_id,
        "context_length": context,
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0"},
        "top_provider": {"max_completion_tokens": max_completion, "is_moderated": True},
        "architecture": {"input_modalities": list(inputs), "output_modalities": ["text"]},
        "description": "ignored",
    }


class FakeFetch:
    def __init__(self, data: list[dict[str, Any]] | None = None, error: Exception | None = None):
        self.data = data if data is not None else []
        self.error = error
        self.calls = 0

    async def __call__(self) -> list[dict[str, Any]]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.data


# --- shipped list ------------------------------------------------------------------------


def test_shipped_catalog_is_large_and_valid(catalog: ModelCatalog) -> None:
    raw = json.loads(resources.files("core.llm").joinpath("models.json").read_text("utf-8"))
    ids = [entry["id"] for entry in raw["models"]]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)
    assert len(catalog) == len(ids)
    for model in catalog.all():
        assert model.id.count("/") == 1 and model.id == model.id.strip()
        assert model.name and model.provider and model.description
        assert model.context_length > 0
        assert 0 < model.max_output_tokens <= model.context_length
        assert isinstance(model.prompt_price, Decimal) and model.prompt_price >= 0
        assert isinstance(model.completion_price, Decimal) and model.completion_price >= 0
        assert isinstance(model.quota_key, QuotaKey)
        assert isinstance(model.min_tier, Tier)
        assert model.image_output == (model.quota_key is QuotaKey.IMAGE)


def test_default_model_is_free_and_small(catalog: ModelCatalog) -> None:
    assert DEFAULT in catalog
    default = catalog.default
    assert default.id == DEFAULT
    assert default.min_tier is Tier.FREE
    assert default.quota_key is QuotaKey.SMALL
    assert default.prompt_price == Decimal("0.15")


def test_every_quota_key_and_tier_is_represented(catalog: ModelCatalog) -> None:
    assert {model.quota_key for model in catalog.all()} == set(MODEL_QUOTA_KEYS)
    assert {model.min_tier for model in catalog.all()} == set(Tier)
    free = [model for model in catalog.all() if model.available_to(Tier.FREE)]
    assert {model.quota_key for model in free} == set(MODEL_QUOTA_KEYS)


def test_all_is_ordered_by_quota_key_then_name(catalog: ModelCatalog) -> None:
    order = list(MODEL_QUOTA_KEYS)
    models = catalog.all()
    keys = [(order.index(m.quota_key), m.name.casefold()) for m in models]
    assert keys == sorted(keys)
    grouped = catalog.grouped()
    assert list(grouped) == order
    assert [model for group in grouped.values() for model in group] == models
    assert all(model.quota_key is key for key, group in grouped.items() for model in group)


def test_grouped_leaves_out_empty_groups(catalog: ModelCatalog) -> None:
    small = [model for model in catalog.all() if model.quota_key is QuotaKey.SMALL]
    only_small = ModelCatalog(small, DEFAULT)
    assert list(only_small.grouped()) == [QuotaKey.SMALL]


def test_lookups(catalog: ModelCatalog) -> None:
    assert catalog.get("no/such-model") is None
    assert "no/such-model" not in catalog
    assert catalog.require(DEFAULT) is catalog.get(DEFAULT)
    with pytest.raises(UnknownModel) as info:
        catalog.require("no/such-model")
    assert info.value.code == "unknown_model"
    assert "no/such-model" in info.value.user_message
    # Chat platforms point to their /model command; the terminal names its own.
    assert "Use /model to see" in info.value.user_message
    assert "Use `oneai models` to see" in info.value.pointing_to("`oneai models`")
    assert info.value.details == {"model": "no/such-model"}


def test_check_access_by_tier(catalog: ModelCatalog) -> None:
    opus = catalog.require("anthropic/claude-opus-4")
    assert opus.min_tier is Tier.ENTERPRISE
    assert catalog.check_access(opus.id, Tier.ENTERPRISE) is opus
    for tier in (Tier.FREE, Tier.PRO):
        with pytest.raises(ModelLocked) as info:
            catalog.check_access(opus.id, tier)
        assert info.value.code == "model_locked"
        assert "Enterprise" in info.value.user_message
        assert info.value.user_message.endswith("pick another model with /model.")
        assert info.value.details == {"model": opus.id, "required_tier": Tier.ENTERPRISE}

    pro_model = next(m for m in catalog.all() if m.min_tier is Tier.PRO)
    assert catalog.check_access(pro_model.id, Tier.PRO) is pro_model
    assert catalog.check_access(pro_model.id, Tier.ENTERPRISE) is pro_model
    with pytest.raises(ModelLocked, match="Pro plan"):
        catalog.check_access(pro_model.id, Tier.FREE)
    with pytest.raises(UnknownModel):
        catalog.check_access("no/such-model", Tier.ENTERPRISE)


def test_constructor_rejects_missing_default_and_duplicates(catalog: ModelCatalog) -> None:
    with pytest.raises(ValueError, match="no/such-model"):
        ModelCatalog(catalog.all(), "no/such-model")
    with pytest.raises(ValueError, match="twice"):
        ModelCatalog([catalog.default, catalog.default], DEFAULT)
    with pytest.raises(ValueError, match="DEFAULT_MODEL"):
        ModelCatalog.load("no/such-model")


# --- operator override -------------------------------------------------------------------

NEW_MODEL = {
    "id": "acme/rocket-1",
    "name": "Rocket 1",
    "provider": "Acme",
    "context_length": 32000,
    "max_output_tokens": 4000,
    "prompt_price": "1.5",
    "completion_price": "3",
    "quota_key": "large_messages",
    "min_tier": "pro",
    "description": "In-house model.",
}


def test_override_merges_by_id(tmp_path: Path, catalog: ModelCatalog) -> None:
    override = _write(
        tmp_path / "models.json",
        {
            "_comment": "ours",
            "models": [{"id": DEFAULT, "prompt_price": "0.2", "description": "Ours."}, NEW_MODEL],
        },
    )
    merged = ModelCatalog.load(DEFAULT, override_file=override)
    assert len(merged) == len(catalog) + 1
    default = merged.default
    assert default.prompt_price == Decimal("0.2")
    assert default.description == "Ours."
    assert default.completion_price == catalog.default.completion_price  # untouched fields
    rocket = merged.require("acme/rocket-1")
    assert rocket.prompt_price == Decimal("1.5")
    assert rocket.vision is False and rocket.image_output is False
    assert rocket.min_tier is Tier.PRO
    for model in catalog.all():
        if model.id != DEFAULT:
            assert merged.get(model.id) == model


def test_override_can_replace_the_list(tmp_path: Path) -> None:
    mini = {**NEW_MODEL, "id": DEFAULT, "name": "Mini", "quota_key": "small_messages"}
    override = _write(tmp_path / "m.json", {"replace": True, "models": [mini, NEW_MODEL]})
    replaced = ModelCatalog.load(DEFAULT, override_file=override)
    assert [model.id for model in replaced.all()] == [DEFAULT, "acme/rocket-1"]
    assert replaced.default.name == "Mini"

    no_default = _write(tmp_path / "n.json", {"replace": True, "models": [NEW_MODEL]})
    with pytest.raises(ValueError, match="DEFAULT_MODEL"):
        ModelCatalog.load(DEFAULT, override_file=no_default)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"models": [', "invalid JSON at line 1"),
        ("[]", "expected a JSON object"),
        ('{"models": {}}', "'models' must be a list"),
        ('{"models": [], "extra": 1}', "unknown top-level keys ['extra']"),
        ('{"models": [{"name": "x"}]}', "models[0] is missing id"),
        ('{"models": [{"id": "openai/gpt-4o", "context_length": -5}]}', "context_length must"),
        ('{"models": [{"id": "openai/gpt-4o", "prompt_price": "cheap"}]}', "prompt_price is not"),
        ('{"models": [{"id": "openai/gpt-4o", "min_tier": "gold"}]}', "min_tier must be one of"),
        (
            '{"models": [{"id": "openai/gpt-4o", "quota_key": "web_search"}]}',
            "quota_key must be one of small_messages, large_messages, image_generation",
        ),
        ('{"models": [{"id": "openai/gpt-4o", "contxt": 1}]}', "unknown fields ['contxt']"),
        ('{"models": [{"id": "acme/new", "name": "New"}]}', "new model 'acme/new' is missing"),
        ('{"replace": true, "models": [{"id": "acme/new"}]}', "models[0] is missing name"),
        ('{"replace": "yes", "models": []}', "'replace' must be true or false"),
    ],
)
def test_malformed_override_names_file_and_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        ModelCatalog.load(DEFAULT, override_file=path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert "\n" not in message


def test_missing_override_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ValueError, match="cannot read it"):
        ModelCatalog.load(DEFAULT, override_file=path)


# --- provider refresh --------------------------------------------------------------------


async def test_refresh_updates_known_models_and_writes_cache(
    tmp_path: Path, catalog: ModelCatalog
) -> None:
    cache = tmp_path / "cache" / "models.json"
    fetch = FakeFetch(
        [
            _provider_item(DEFAULT, context=200_000, max_completion=20_000, inputs=("text",)),
            _provider_item("openai/gpt-4o", prompt="0.000003", completion="0.00001", context=None),
            _provider_item("somebody/unlisted-model"),
        ]
    )
    before = catalog.all()
    assert await catalog.refresh(fetch, cache, timedelta(hours=24)) is True
    assert fetch.calls == 1

    default = catalog.default
    assert default.context_length == 200_000
    assert default.max_output_tokens == 20_000
    assert default.prompt_price == Decimal("0.2")
    assert default.completion_price == Decimal("0.8")
    assert default.vision is False
    assert default.min_tier is Tier.FREE and default.quota_key is QuotaKey.SMALL  # curated

    gpt4o = catalog.require("openai/gpt-4o")
    assert gpt4o.prompt_price == Decimal(3) and gpt4o.completion_price == Decimal(10)
    assert gpt4o.context_length == 128_000  # provider sent null: keep ours
    assert "somebody/unlisted-model" not in catalog
    assert len(catalog) == len(before)
    untouched = [m for m in before if m.id not in (DEFAULT, "openai/gpt-4o")]
    assert all(catalog.get(m.id) == m for m in untouched)

    written = json.loads(cache.read_text("utf-8"))
    assert {item["id"] for item in written["data"]} >= {DEFAULT, "somebody/unlisted-model"}
    assert "description" not in written["data"][0]
    assert list(cache.parent.iterdir()) == [cache]  # no temp file left behind


async def test_audio_input_comes_from_the_input_modalities(
    tmp_path: Path, catalog: ModelCatalog
) -> None:
    """`audio`: OpenRouter lists "audio" among the model's input modalities."""
    assert catalog.require("google/gemini-2.5-flash").audio  # shipped as listening
    assert not catalog.require(DEFAULT).audio
    fetch = FakeFetch(
        [
            _provider_item(DEFAULT, inputs=("text", "image", "audio")),
            _provider_item("google/gemini-2.5-flash", inputs=("text", "image")),
            _provider_item("openai/gpt-4o"),  # no architecture: keeps ours
        ]
    )
    del fetch.data[2]["architecture"]
    await catalog.refresh(fetch, tmp_path / "cache.json", timedelta(hours=24))
    assert catalog.require(DEFAULT).audio and catalog.require(DEFAULT).vision
    assert not catalog.require("google/gemini-2.5-flash").audio
    assert not catalog.require("openai/gpt-4o").audio


def test_audio_is_an_optional_true_or_false_in_the_catalog_file(tmp_path: Path) -> None:
    override = _write(
        tmp_path / "models.json",
        {"models": [{"id": DEFAULT, "audio": True}, {"id": "openai/gpt-4o", "vision": False}]},
    )
    catalog = ModelCatalog.load(DEFAULT, override_file=override)
    assert catalog.require(DEFAULT).audio
    assert not catalog.require("openai/gpt-4o").audio
    broken = _write(tmp_path / "broken.json", {"models": [{"id": DEFAULT, "audio": "yes"}]})
    with pytest.raises(ValueError, match="audio"):
        ModelCatalog.load(DEFAULT, override_file=broken)


def test_only_models_that_really_listen_are_shipped_as_listening(catalog: ModelCatalog) -> None:
    listening = {model.id for model in catalog.all() if model.audio}
    assert listening == {
        "google/gemini-2.5-flash",
        "google/gemini-2.5-flash-lite",
        "google/gemini-2.5-pro",
    }


async def test_second_refresh_within_max_age_uses_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    first = ModelCatalog.load(DEFAULT)
    assert await first.refresh(FakeFetch([_provider_item(DEFAULT)]), cache, timedelta(hours=1))

    again = FakeFetch([_provider_item(DEFAULT, prompt="0.000009")])
    assert await first.refresh(again, cache, timedelta(hours=1)) is True
    second = ModelCatalog.load(DEFAULT)
    assert await second.refresh(again, cache, timedelta(hours=1)) is True
    assert again.calls == 0
    assert second.default.prompt_price == Decimal("0.2")  # from the cache


async def test_stale_cache_is_fetched_again(tmp_path: Path, catalog: ModelCatalog) -> None:
    old = (utcnow() - timedelta(hours=30)).isoformat()
    cache = _write(tmp_path / "c.json", {"fetched_at": old, "data": [_provider_item(DEFAULT)]})
    fetch = FakeFetch([_provider_item(DEFAULT, prompt="0.0000005")])
    assert await catalog.refresh(fetch, cache, timedelta(hours=24)) is True
    assert fetch.calls == 1
    assert catalog.default.prompt_price == Decimal("0.5")
    assert json.loads(cache.read_text("utf-8"))["fetched_at"] > old


async def test_cache_from_the_future_counts_as_stale(tmp_path: Path, catalog: ModelCatalog) -> None:
    future = (utcnow() + timedelta(days=365)).isoformat()
    cache = _write(tmp_path / "c.json", {"fetched_at": future, "data": []})
    fetch = FakeFetch([])
    assert await catalog.refresh(fetch, cache, timedelta(hours=24)) is True
    assert fetch.calls == 1


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("offline"), OSError("network unreachable"), ValueError("bad json")],
)
async def test_failed_fetch_keeps_the_list(
    tmp_path: Path, catalog: ModelCatalog, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    before = catalog.all()
    cache = tmp_path / "cache.json"
    fetch = FakeFetch(error=error)
    assert await catalog.refresh(fetch, cache, timedelta(hours=24)) is False
    assert fetch.calls == 1
    assert catalog.all() == before
    assert not cache.exists()
    assert "refresh failed" in caplog.text


async def test_malformed_provider_data_keeps_the_list(
    tmp_path: Path, catalog: ModelCatalog
) -> None:
    before = catalog.all()

    async def not_a_list() -> list[dict[str, Any]]:
        return {"data": []}  # type: ignore[return-value]

    assert await catalog.refresh(not_a_list, tmp_path / "c.json", timedelta(hours=1)) is False
    assert catalog.all() == before


async def test_odd_provider_fields_are_skipped(tmp_path: Path, catalog: ModelCatalog) -> None:
    item = _provider_item(DEFAULT, prompt="-1", completion="n/a", context=0, max_completion=None)
    item["architecture"] = None
    before = catalog.default
    assert await catalog.refresh(FakeFetch([item]), tmp_path / "c.json", timedelta(hours=1))
    assert catalog.default == before


async def test_output_limit_is_capped_at_the_context(tmp_path: Path, catalog: ModelCatalog) -> None:
    item = _provider_item(DEFAULT, context=64_000, max_completion=128_000)
    assert await catalog.refresh(FakeFetch([item]), tmp_path / "c.json", timedelta(hours=1))
    assert catalog.default.max_output_tokens == 64_000


async def test_operator_values_win_over_provider_data(tmp_path: Path) -> None:
    override = _write(tmp_path / "o.json", {"models": [{"id": DEFAULT, "prompt_price": "1"}]})
    catalog = ModelCatalog.load(DEFAULT, override_file=override)
    fetch = FakeFetch([_provider_item(DEFAULT, prompt="0.000005", context=300_000)])
    assert await catalog.refresh(fetch, tmp_path / "c.json", timedelta(hours=1))
    assert catalog.default.prompt_price == Decimal(1)
    assert catalog.default.context_length == 300_000
    assert catalog.default.completion_price == Decimal("0.8")


def test_load_applies_cache_of_any_age(tmp_path: Path) -> None:
    old = (utcnow() - timedelta(days=30)).isoformat()
    item = _provider_item(DEFAULT, prompt="0.0000003", context=150_000)
    cache = _write(tmp_path / "c.json", {"fetched_at": old, "data": [item]})
    loaded = ModelCatalog.load(DEFAULT, cache_file=cache)
    assert loaded.default.prompt_price == Decimal("0.3")
    assert loaded.default.context_length == 150_000


def test_load_ignores_missing_or_corrupt_cache(tmp_path: Path, catalog: ModelCatalog) -> None:
    assert ModelCatalog.load(DEFAULT, cache_file=tmp_path / "absent.json").all() == catalog.all()
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"fetched_at": "yesterday"', encoding="utf-8")
    assert ModelCatalog.load(DEFAULT, cache_file=corrupt).all() == catalog.all()


def test_model_info_available_to() -> None:
    model = ModelInfo(
        id="a/b",
        name="B",
        provider="A",
        context_length=1000,
        max_output_tokens=100,
        prompt_price=Decimal(0),
        completion_price=Decimal(0),
        quota_key=QuotaKey.LARGE,
        min_tier=Tier.PRO,
    )
    assert [model.available_to(tier) for tier in Tier] == [False, True, True]
