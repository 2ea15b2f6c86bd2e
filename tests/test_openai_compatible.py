"""Any OpenAI-compatible server (OpenAI, Ollama, vLLM, a gateway): the model list is
the server's own GET /models, and the start-up problems it brings are one line each."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.startup import check_run, load_catalog
from core.config import ConfigError, DatabaseSettings, HttpSettings, LLMSettings, Settings
from core.llm.catalog import ModelCatalog
from core.llm.client import LLMClient
from core.tiers import QuotaKey, Tier
from tests.fakes.llm_server import FakeLLM, openai_models
from tests.support.process import free_port
from tests.test_startup_errors import oneai

# Not in alphabetical order: the default is the first the server lists.
MODELS = ("qwen2.5:7b", "llama3.1:8b", "mistral:7b")


def settings(base_url: str, tmp_path: Path, **llm: Any) -> Settings:
    return Settings(
        db=DatabaseSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'oneai.db'}"),
        llm=LLMSettings(
            base_url=base_url,
            MODEL_CATALOG_CACHE_FILE=tmp_path / "models-cache.json",
            MODEL_CATALOG_REFRESH_HOURS=0,
            **llm,
        ),
        http=HttpSettings(port=0),
    )


@pytest.fixture
async def server() -> Any:
    async with FakeLLM() as fake:
        fake.models = openai_models(*MODELS)
        yield fake


async def test_a_server_with_three_models_gives_a_catalog_of_three_small_ones(
    server: FakeLLM, tmp_path: Path
) -> None:
    catalog = await load_catalog(settings(server.base_url, tmp_path))
    assert sorted(model.id for model in catalog.all()) == sorted(MODELS)
    assert catalog.default.id == "qwen2.5:7b"
    for model in catalog.all():
        assert model.name == model.id and model.provider == "library"
        assert model.quota_key is QuotaKey.SMALL and model.min_tier is Tier.FREE
        assert (model.prompt_price, model.completion_price) == (Decimal(0), Decimal(0))
        assert not model.image_output and not model.vision
        # Unknown window: LLM_CONTEXT_LENGTH, a quarter of it for the answer.
        assert (model.context_length, model.max_output_tokens) == (8192, 2048)
    assert list(catalog.grouped()) == [QuotaKey.SMALL]
    assert server.models_requests == 1


async def test_large_models_context_length_and_vllm_window(server: FakeLLM, tmp_path: Path) -> None:
    server.models[2]["max_model_len"] = 32768  # as vLLM reports it
    catalog = await load_catalog(
        settings(server.base_url, tmp_path, large_models=["llama3.1:8b"], context_length=4096)
    )
    assert catalog.require("llama3.1:8b").quota_key is QuotaKey.LARGE
    assert catalog.require("qwen2.5:7b").context_length == 4096
    assert catalog.require("mistral:7b").context_length == 32768
    assert catalog.require("mistral:7b").max_output_tokens == 8192


async def test_default_model_set_to_one_of_them(server: FakeLLM, tmp_path: Path) -> None:
    catalog = await load_catalog(settings(server.base_url, tmp_path, DEFAULT_MODEL="mistral:7b"))
    assert catalog.default.id == "mistral:7b"


async def test_default_model_the_server_does_not_list_is_one_line(
    server: FakeLLM, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        await load_catalog(settings(server.base_url, tmp_path, DEFAULT_MODEL="gpt-4o-mini"))
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("DEFAULT_MODEL: 'gpt-4o-mini' is not among the models")
    assert "llama3.1:8b" in line


async def test_openai_needs_the_key_for_its_model_list(server: FakeLLM, tmp_path: Path) -> None:
    server.models = openai_models("gpt-4o-mini", "gpt-4o", owned_by="system")
    server.models_key = "sk-right"
    with pytest.raises(ConfigError) as info:
        await load_catalog(settings(server.base_url, tmp_path, DEFAULT_MODEL="gpt-4o-mini"))
    assert str(info.value).startswith("LLM_API_KEY: ") and "asks for an API key" in str(info.value)
    with pytest.raises(ConfigError) as info:
        await load_catalog(settings(server.base_url, tmp_path, LLM_API_KEY="sk-wrong"))
    assert "refused the key" in str(info.value) and "sk-wrong" not in str(info.value)
    catalog = await load_catalog(
        settings(server.base_url, tmp_path, LLM_API_KEY="sk-right", DEFAULT_MODEL="gpt-4o-mini")
    )
    assert catalog.default.id == "gpt-4o-mini" and len(catalog) == 2


async def test_a_server_down_at_start_uses_the_list_it_gave_last_time(tmp_path: Path) -> None:
    async with FakeLLM() as fake:
        fake.models = openai_models(*MODELS)
        url = fake.base_url
        await load_catalog(settings(url, tmp_path))
    cache = json.loads((tmp_path / "models-cache.json").read_text())
    assert cache["base_url"] == url
    # Now down: the list of the last start.
    catalog = await load_catalog(settings(url, tmp_path))
    assert sorted(model.id for model in catalog.all()) == sorted(MODELS)
    assert catalog.default.id == "qwen2.5:7b"
    # A cache written for another server is not this one's list.
    other = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ConfigError) as info:
        await load_catalog(settings(other, tmp_path))
    assert str(info.value) == (
        f"LLM_BASE_URL: cannot list the models at {other}/models (cannot connect); "
        "start the server, or name its models in LLM_MODELS"
    )


async def test_llm_models_names_them_without_asking(server: FakeLLM, tmp_path: Path) -> None:
    catalog = await load_catalog(
        settings(server.base_url, tmp_path, models=["gpt-4o", "gpt-4o-mini"])
    )
    assert [model.id for model in catalog.all()] == ["gpt-4o", "gpt-4o-mini"]
    assert catalog.default.id == "gpt-4o"
    assert server.models_requests == 0


async def test_an_openrouter_style_gateway_keeps_the_shipped_catalog(tmp_path: Path) -> None:
    async with FakeLLM() as fake:  # OpenRouter's format: prices, vendor/ ids
        catalog = await load_catalog(settings(fake.base_url, tmp_path))
    assert len(catalog) > len(fake.models)
    assert catalog.default.id == "openai/gpt-4o-mini"
    assert any(model.image_output for model in catalog.all())


async def test_the_refresh_job_keeps_a_generic_servers_catalog(
    server: FakeLLM, tmp_path: Path
) -> None:
    config = settings(server.base_url, tmp_path)
    catalog = await load_catalog(config)
    before = catalog.all()
    client = LLMClient(server.base_url, max_retries=0)
    try:
        # A list that has changed or is empty (a server restarting) takes nothing away.
        server.models = openai_models("llama3.1:8b", "phi4:14b")
        cache = config.llm.catalog_cache_file
        assert await catalog.refresh(
            client.list_models, cache, timedelta(0), base_url=server.base_url
        )
        server.models = []
        assert await catalog.refresh(
            client.list_models, cache, timedelta(0), base_url=server.base_url
        )
    finally:
        await client.aclose()
    assert catalog.all() == before
    # What the server listed last is what the next start offers.
    server.models = openai_models("llama3.1:8b", "phi4:14b")
    await catalog.refresh(client_list(server), cache, timedelta(0), base_url=server.base_url)
    await server.stop()
    restarted = await load_catalog(config)
    assert [model.id for model in restarted.all()] == ["llama3.1:8b", "phi4:14b"]


def client_list(server: FakeLLM) -> Any:
    async def fetch() -> list[dict[str, Any]]:
        client = LLMClient(server.base_url, max_retries=0)
        try:
            return await client.list_models()
        finally:
            await client.aclose()

    return fetch


async def test_check_run_refuses_openrouter_without_a_key(tmp_path: Path) -> None:
    config = settings("https://openrouter.ai/api/v1", tmp_path)
    with pytest.raises(ConfigError) as info:
        await check_run(config)
    assert str(info.value).startswith("LLM_API_KEY: not set; OpenRouter needs an API key")


def test_which_urls_are_openrouter() -> None:
    assert LLMSettings(base_url="https://openrouter.ai/api/v1").is_openrouter
    assert LLMSettings(base_url="https://eu.openrouter.ai/api/v1/").is_openrouter
    for url in ("https://api.openai.com/v1", "http://notopenrouter.ai/v1", "http://h:11434/v1"):
        assert not LLMSettings(base_url=url).is_openrouter


def test_from_server_needs_a_model() -> None:
    with pytest.raises(ValueError, match="no models"):
        ModelCatalog.from_server([], None, context_length=8192)


# -- the `oneai` command, as an operator meets it -------------------------------------------


def _env(tmp_path: Path, **variables: str) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'oneai.db'}",
        "MODEL_CATALOG_CACHE_FILE": str(tmp_path / "models-cache.json"),
        "MODEL_CATALOG_REFRESH_HOURS": "0",
        "HTTP_PORT": str(free_port()),
        **variables,
    }


@pytest.mark.parametrize("command", ["run", "chat"])
async def test_openrouter_without_a_key_is_one_line(command: str, tmp_path: Path) -> None:
    outcome = await oneai(command, cwd=tmp_path, env=_env(tmp_path, TELEGRAM_BOT_TOKEN="123:abc"))
    line = outcome.stops_naming("LLM_API_KEY")
    assert line == (
        "oneai: LLM_API_KEY: not set; OpenRouter needs an API key (https://openrouter.ai/keys), "
        "or set LLM_BASE_URL to another OpenAI-compatible server"
    )


async def test_a_server_down_at_start_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    outcome = await oneai(
        "run", cwd=tmp_path, env=_env(tmp_path, TELEGRAM_BOT_TOKEN="123:abc", LLM_BASE_URL=url)
    )
    line = outcome.stops_naming("LLM_BASE_URL")
    assert f"{url}/models (cannot connect)" in line


async def test_a_default_model_the_server_lacks_is_one_line(
    server: FakeLLM, tmp_path: Path
) -> None:
    outcome = await oneai(
        "models",
        cwd=tmp_path,
        env=_env(tmp_path, LLM_BASE_URL=server.base_url, DEFAULT_MODEL="gpt-4o-mini"),
    )
    assert "is not among the models" in outcome.stops_naming("DEFAULT_MODEL")


async def test_oneai_models_lists_the_servers_models(server: FakeLLM, tmp_path: Path) -> None:
    outcome = await oneai("models", cwd=tmp_path, env=_env(tmp_path, LLM_BASE_URL=server.base_url))
    assert outcome.code == 0, outcome.err
    lines = outcome.out.splitlines()
    assert lines[0] == "small_messages"
    assert [line.split()[0:2] for line in lines[1:]] == [
        ["llama3.1:8b", "llama3.1:8b"],
        ["mistral:7b", "mistral:7b"],
        ["*", "qwen2.5:7b"],
    ]
    assert "$" not in outcome.out  # no prices it does not know
    assert outcome.err == ""
