"""What /metrics counts when people chat: updates, Bot API calls and 429s, answers,
their timings and tokens, and LLM errors."""

from __future__ import annotations

from core.metrics import REGISTRY
from tests.fakes.llm_server import Reply
from tests.telegram.conftest import USER, Harness, until


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_answer_is_counted_from_update_to_tokens(app: Harness) -> None:
    model = app.services.catalog.default.id
    before = {
        "updates": value("oneai_updates_total", platform="telegram", kind="message"),
        "sends": value(
            "oneai_platform_calls_total", platform="telegram", method="sendMessage", status="ok"
        ),
        "complete": value("oneai_answers_total", outcome="complete"),
        "first": value("oneai_answer_first_token_seconds_count"),
        "final": value("oneai_answer_final_seconds_count"),
        "out": value("oneai_llm_tokens_total", model=model, direction="out"),
        "429": value("oneai_platform_rate_limited_total", platform="telegram"),
        "waited": value("oneai_platform_retry_after_seconds_total", platform="telegram"),
    }
    app.llm.script(Reply(chunks=["Hello", " there", ", person"], chunk_delay=0.05))
    app.tg.flood_storm("editMessageText", 1, retry_after=1)
    app.tg.send_text(USER, "Hi")
    await app.answered(within=20)
    assert (
        value("oneai_updates_total", platform="telegram", kind="message") == before["updates"] + 1
    )
    assert (
        value("oneai_platform_calls_total", platform="telegram", method="sendMessage", status="ok")
        >= before["sends"] + 1
    )
    await until(lambda: value("oneai_answers_total", outcome="complete") == before["complete"] + 1)
    assert value("oneai_answer_first_token_seconds_count") == before["first"] + 1
    assert value("oneai_answer_final_seconds_count") == before["final"] + 1
    assert value("oneai_llm_tokens_total", model=model, direction="out") > before["out"]
    assert value("oneai_active_streams") == 0
    # The edit Telegram refused once with retry_after=1.
    assert value("oneai_platform_rate_limited_total", platform="telegram") == before["429"] + 1
    assert (
        value("oneai_platform_retry_after_seconds_total", platform="telegram")
        == before["waited"] + 1
    )
    assert (
        value(
            "oneai_platform_calls_total",
            platform="telegram",
            method="editMessageText",
            status="429",
        )
        >= 1
    )


async def test_a_failed_answer_counts_its_llm_error(app: Harness) -> None:
    failed = value("oneai_answers_total", outcome="failed")
    errors = value("oneai_llm_errors_total", kind="model_unavailable")
    app.llm.script(
        Reply(status=404, error_body={"error": {"code": 404, "message": "No endpoints found"}})
    )
    app.tg.send_text(USER, "Hi")
    await until(lambda: value("oneai_answers_total", outcome="failed") == failed + 1, 20)
    assert value("oneai_llm_errors_total", kind="model_unavailable") == errors + 1
