"""`oneai admin …` as an operator runs it: a real process on the test database."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from core.broadcast import Status
from core.config import AccessSettings
from core.db.models import AuditLog, User
from core.services import Services
from tests.admin.conftest import person
from tests.fakes.llm_server import FakeLLM
from tests.support.process import clean_env

SUBCOMMANDS = [
    "stats", "person", "grant", "revoke", "reset", "ban", "unban", "refund", "models", "audit",
    "broadcasts", "access",
]  # fmt: skip


async def _admin(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "admin",
        *args,
        cwd=cwd,
        env=clean_env(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def env(services: Services, fake_llm: FakeLLM, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": services.db.url,
        "LLM_BASE_URL": fake_llm.base_url,
        "MODEL_CATALOG_REFRESH_HOURS": "0",
        "MODEL_CATALOG_CACHE_FILE": str(tmp_path / "models-cache.json"),
        "LOG_LEVEL": "WARNING",
    }


async def test_every_admin_command_describes_itself(tmp_path: Path) -> None:
    results = await asyncio.gather(
        *(_admin(name, "--help", cwd=tmp_path, env={}) for name in ["", *SUBCOMMANDS] if name),
        _admin("--help", cwd=tmp_path, env={}),
    )
    for name, (code, out, err) in zip([*SUBCOMMANDS, ""], results, strict=True):
        assert code == 0, err
        paragraphs = out.split("\n\n")
        assert paragraphs[0].startswith(f"usage: oneai admin {name}".rstrip()), out
        assert len(paragraphs[1].split()) >= 8, out
    listed = re.findall(r"^    (\w+)\s", results[-1][1], flags=re.M)
    assert set(SUBCOMMANDS) <= set(listed), listed


async def test_an_operator_manages_a_person_from_the_shell(
    services: Services, env: dict[str, str], tmp_path: Path
) -> None:
    user_id = await person(services, "telegram", 8001, username="dora", display_name="Dora")

    async def ok(*args: str) -> str:
        code, out, err = await _admin(*args, cwd=tmp_path, env=env)
        assert code == 0, (args, err)
        assert "Traceback" not in err, err
        return out

    card = await ok("person", "@dora")
    assert card.startswith(f"👤 #{user_id} Dora\n• Telegram 8001 @dora · seen ")
    assert "💳 Free (active) until —" in card
    granted = await ok("grant", "@dora", "pro", "30")
    assert granted.startswith(f"✅ #{user_id}: Free → Pro until ") and "(30 days)" in granted
    assert (await ok("reset", "telegram:8001", "small_messages")) == (
        f"✅ #{user_id}: Small messages reset to 0.\n"
    )
    assert (await ok("revoke", f"#{user_id}")) == (
        f"✅ #{user_id}: Pro taken away; the plan is Free now.\n"
    )
    assert (await ok("ban", "tg:8001", "spamming", "links")) == (
        f"🚫 #{user_id} is banned. Reason: spamming links\n"
    )
    assert "🚫 Banned: spamming links" in await ok("person", str(user_id))
    assert (await ok("unban", str(user_id))) == f"✅ #{user_id} is not banned any more.\n"
    assert (await ok("models", "disable", "openai/gpt-4.1-mini", "too", "slow")) == (
        "⛔ GPT-4.1 mini (openai/gpt-4.1-mini) is turned off for everyone.\n"
    )
    models = await ok("models")
    assert "🤖 Models: " in models and ", turned off: 1" in models
    assert "⛔" in models and "· openai/gpt-4.1-mini · Free+ · too slow" in models
    number = next(
        line.split(".")[0].split()[-1] for line in models.splitlines() if "gpt-4.1-mini" in line
    )
    assert "is on for everyone" in await ok("models", "enable", number)  # by its number
    assert (await ok("models", "refresh")).startswith("🔄 Catalog refreshed: ")
    stats = await ok("stats")
    assert "👥 People: 1 · active 24 h 1 · 7 d 1 · 30 d 1" in stats
    audit = (await ok("audit")).splitlines()
    assert audit[0] == "📜 Audit log, newest first · page 1/1 · 8 in all"
    assert [line.split(" · ")[2].split(" ")[0] for line in audit[1:]] == [
        "catalog_refresh", "model_enable", "model_disable", "unban", "ban", "revoke",
        "reset_quota", "grant",
    ]  # fmt: skip
    assert all(line.split(" · ")[1] == "cli" for line in audit[1:])
    async with services.db.read() as session:
        rows = (await session.scalars(select(AuditLog))).all()
        banned = await session.get(User, user_id)
    assert len(rows) == 8
    assert all(r.actor_user_id is None and r.details["actor"] == "cli" for r in rows)
    assert banned is not None and not banned.is_banned


async def test_an_operator_lists_and_cancels_broadcasts(
    services: Services, env: dict[str, str], tmp_path: Path
) -> None:
    assert (await _admin("broadcasts", cwd=tmp_path, env=env))[1] == "No broadcasts yet.\n"
    draft = await services.broadcasts.create_draft(None, "**Big news**\nmore lines")
    code, out, err = await _admin("broadcasts", cwd=tmp_path, env=env)
    assert code == 0, err
    assert out.startswith(f"#{draft.id} ") and out.endswith(
        " · everyone · 📝 Draft: 0/0 · sent 0 · **Big news**\n"
    )
    code, out, err = await _admin("broadcasts", "cancel", str(draft.id), cwd=tmp_path, env=env)
    assert (code, out) == (0, "⏹ Cancelled: 0/0 · sent 0\n"), err
    assert (await services.broadcasts.get(draft.id)).status is Status.CANCELLED
    async with services.db.read() as session:
        (row,) = (await session.scalars(select(AuditLog))).all()
    assert (row.action, row.details["actor"]) == ("broadcast_cancel", "cli")
    code, _, err = await _admin("broadcasts", "pause", cwd=tmp_path, env=env)
    assert (code, err.strip()) == (2, "oneai: usage: oneai admin broadcasts pause ID")


async def test_mistakes_are_one_line_with_exit_code_2(
    services: Services, env: dict[str, str], tmp_path: Path
) -> None:
    await person(services, "telegram", 8002, username="eve")
    cases = [
        (("person", "@nobody"), "oneai: Nobody matches “@nobody”."),
        (("grant", "@eve", "free", "30"), "oneai: No plan “free” to give"),
        (("grant", "@eve", "pro", "0"), "oneai: Days must be between 1 and 3660."),
        (("revoke", "@eve"), "has no plan to take away."),
        (("reset", "@eve", "huge"), "oneai: No quota “huge”"),
        (("models", "disable", "openai/gpt-4o-mini"), "is the default model (DEFAULT_MODEL)"),
        (("models", "disable"), "oneai: usage: oneai admin models disable MODEL"),
        (("models", "enable", "no/such"), "Use `oneai admin models` to see"),
        (("refund", "424242"), "oneai: "),
    ]
    results = await asyncio.gather(*(_admin(*args, cwd=tmp_path, env=env) for args, _ in cases))
    for (args, message), (code, out, err) in zip(cases, results, strict=True):
        assert code == 2, (args, out, err)
        assert message in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


async def test_an_operator_edits_a_private_deployment_from_the_shell(
    services: Services, env: dict[str, str], tmp_path: Path
) -> None:
    private = {**env, "ACCESS_MODE": "invite", "ACCESS_ALLOWLIST": "telegram:1"}
    services.settings.__dict__["access"] = AccessSettings(mode="invite")  # as the bot runs
    user_id = await person(services, "telegram", 8002, username="Eve")
    assert not await services.access.allowed(user_id)

    code, out, err = await _admin("access", "allow", "@EVE", cwd=tmp_path, env=private)
    assert code == 0, err
    assert out.strip() == "✅ @eve is on the allowlist."
    assert await services.access.allowed(user_id)  # no restart: read at every check
    code, out, err = await _admin("access", cwd=tmp_path, env=private)
    assert code == 0, err
    assert "Access: invite. Allowlist (2)" in out and "telegram:1 (ACCESS_ALLOWLIST)" in out
    code, out, err = await _admin("access", "invite", "2", "3", cwd=tmp_path, env=private)
    assert code == 0, err
    assert re.search(r"Discord: /start [A-Za-z0-9_-]{16}$", out.strip()), out
    code, out, err = await _admin("access", "invite", "two", cwd=tmp_path, env=private)
    assert code != 0 and "usage: oneai admin access invite" in err, (out, err)
    code, out, err = await _admin("access", "allow", "eve", cwd=tmp_path, env=private)
    assert code != 0 and "is not an allowlist entry" in err, (out, err)
    async with services.db.read() as session:
        actions = (
            await session.scalars(
                select(AuditLog.action)
                .where(AuditLog.action.like("access_%"))
                .order_by(AuditLog.id)
            )
        ).all()
    assert actions == ["access_allow", "access_invite"]
