"""Every Prometheus metric OneAI exposes, in one place.

The metrics live in this process's own registry (not prometheus_client's global
one), so building several HTTP applications in one process (tests) registers
nothing twice; `oneai run` serves them at /metrics. Instrumented code calls the
small functions below or `.labels(...).inc()` on these objects directly: a label
lookup and an add, nothing more on the hot path.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# A `_created` series beside every counter and histogram doubles what is stored and
# says nothing the start time does not.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: a first token is expected within a few, a whole answer within minutes.
_FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_FINAL_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

STARTED = time.time()

UPDATES = Counter(
    "oneai_updates",
    "Updates received, by platform and kind (message, callback_query, interaction...).",
    ["platform", "kind"],
    registry=REGISTRY,
)
ANSWERS = Counter(
    "oneai_answers",
    "Answers ended, by outcome (complete, failed, cancelled, interrupted).",
    ["outcome"],
    registry=REGISTRY,
)
FIRST_TOKEN_SECONDS = Histogram(
    "oneai_answer_first_token_seconds",
    "From the start of a generation to the model's first token.",
    buckets=_FIRST_TOKEN_BUCKETS,
    registry=REGISTRY,
)
FINAL_SECONDS = Histogram(
    "oneai_answer_final_seconds",
    "From the start of a generation to its final text.",
    buckets=_FINAL_BUCKETS,
    registry=REGISTRY,
)
TOKENS = Counter(
    "oneai_llm_tokens",
    "Tokens the model reported, by model and direction (in: prompt, out: completion).",
    ["model", "direction"],
    registry=REGISTRY,
)
LLM_ERRORS = Counter(
    "oneai_llm_errors",
    "Failed calls to the model provider (after retries), by kind.",
    ["kind"],
    registry=REGISTRY,
)
PLATFORM_CALLS = Counter(
    "oneai_platform_calls",
    "Bot API / Discord REST calls, by platform, method and status (ok, 429, error code).",
    ["platform", "method", "status"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "oneai_platform_rate_limited",
    "429 answers from a platform's API.",
    ["platform"],
    registry=REGISTRY,
)
RETRY_AFTER_SECONDS = Counter(
    "oneai_platform_retry_after_seconds",
    "Seconds a platform asked us to wait (retry_after), summed.",
    ["platform"],
    registry=REGISTRY,
)
QUOTA_REFUSALS = Counter(
    "oneai_quota_refusals",
    "Generations refused because the person's quota was used up, by quota key.",
    ["key"],
    registry=REGISTRY,
)
PAYMENTS = Counter(
    "oneai_payments",
    "Payments and refunds settled in the ledger, by provider, kind and result "
    "(applied, duplicate).",
    ["provider", "kind", "result"],
    registry=REGISTRY,
)
WEBHOOKS = Counter(
    "oneai_webhook_events",
    "Payment webhook requests, by provider and HTTP status answered.",
    ["provider", "status"],
    registry=REGISTRY,
)
ACTIVE_STREAMS = Gauge(
    "oneai_active_streams",
    "Answers streaming in this process.",
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "oneai_outbox_backlog",
    "Outbox messages not sent yet (read when scraped).",
    registry=REGISTRY,
)
SCHEDULER_RUNS = Counter(
    "oneai_scheduler_job_runs",
    "Scheduled job runs, by job and result (ok, failed).",
    ["job", "result"],
    registry=REGISTRY,
)
READY = Gauge(
    "oneai_ready",
    "1 when the last readiness check passed (database, Redis, platforms).",
    registry=REGISTRY,
)
START_TIME = Gauge(
    "oneai_start_time_seconds",
    "When this process started (Unix time).",
    registry=REGISTRY,
)
START_TIME.set(STARTED)


def platform_call(platform: str, method: str, status: str) -> None:
    PLATFORM_CALLS.labels(platform, method, status).inc()


def rate_limited(platform: str, retry_after: float) -> None:
    RATE_LIMITED.labels(platform).inc()
    RETRY_AFTER_SECONDS.labels(platform).inc(max(retry_after, 0.0))


def exposition() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)
