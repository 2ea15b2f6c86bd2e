"""The `oneai` command as a person runs it: a real process, stdin piped, the fake LLM
over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLM, Reply, Transcription, url_citation
from tests.support.process import clean_env


async def _oneai(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | bytes = ""
) -> tuple[int, str, str]:
    full_env = clean_env(**(env or {}))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=full_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    data = stdin.encode() if isinstance(stdin, str) else stdin
    out, err = await asyncio.wait_for(process.communicate(data), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_without_tokens_says_what_to_set(tmp_path: Path) -> None:
    code, out, err = await _oneai("run", cwd=tmp_path, env={})
    assert code == 2
    assert "TELEGRAM_BOT_TOKEN" in err and "DISCORD_BOT_TOKEN" in err
    assert "Traceback" not in err + out


async def test_bad_configuration_is_one_clear_line(tmp_path: Path) -> None:
    code, _, err = await _oneai(
        "run",
        cwd=tmp_path,
        env={"DATABASE_URL": "mysql://nope", "HTTP_PORT": "x"},
    )
    assert code == 2
    assert "DATABASE_URL" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


async def test_env_file_and_admin_id_lists(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TELEGRAM_ADMIN_IDS=1,2, x\n")
    code, _, err = await _oneai("models", cwd=tmp_path, env={})
    assert code == 2
    assert "TELEGRAM_ADMIN_IDS" in err and "Traceback" not in err


async def test_models_lists_the_catalog(tmp_path: Path) -> None:
    code, out, _ = await _oneai("models", cwd=tmp_path, env={})
    assert code == 0
    assert "openai/gpt-4o-mini" in out
    assert "small_messages" in out and "large_messages" in out and "image_generation" in out


async def test_playground_supports_every_command(tmp_path: Path) -> None:
    async with FakeLLM(default=Reply(text=None)) as llm:
        llm.script(
            Reply(text="First answer."),
            Reply(text="Second answer."),
            Reply(text="Answer to the edit."),
        )
        script = "\n".join(
            [
                "Hello there",
                "/regen",
                "/rev 1",
                "/edit Hello again",
                "/history",
                "/usage",
                "/model openai/gpt-4.1-mini",
                "/model anthropic/claude-opus-4",
                "/models",
                "/show",
                "/export json",
                "/nonsense",
                "/new",
                "A second conversation",
                "/history",
                "/open 2",
                "/show",
                "/quit",
                "never sent",
            ]
        )
        code, out, err = await _oneai(
            "chat",
            cwd=tmp_path,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                "MODEL_CATALOG_REFRESH_HOURS": "0",
            },
            stdin=script + "\n",
        )
        requests = list(llm.requests)
    assert code == 0, err
    assert "Traceback" not in err
    assert "First answer." in out and "Second answer." in out
    assert "(revision 2/2" in out  # after /regen
    assert "(revision 1/2)\nFirst answer." in out  # /rev 1 shows and selects it
    assert "Answer to the edit." in out
    assert "small messages: 3/100 used, 97 left" in out  # /usage: three generations
    assert "Model set to openai/gpt-4.1-mini." in out
    assert "available on the Enterprise plan" in out  # a locked model is refused
    assert "! Unknown command /nonsense" in out
    assert "New conversation." in out
    assert "1. A second conversation" in out and "2. Hello there" in out
    assert "Continuing “Hello there”." in out
    assert "you> Hello again\nassistant> Answer to the edit." in out
    assert '"revision_type": "user_edit"' in out  # /export json has every revision
    # The second conversation used the model picked with /model.
    assert requests[-1].body["model"] == "openai/gpt-4.1-mini"
    assert "never sent" not in json.dumps([r.body for r in requests])
    # /regen resent the same prompt; /edit sent the edited text.
    assert requests[0].body["messages"] == requests[1].body["messages"]
    assert requests[2].body["messages"][-1]["content"] == "Hello again"


async def test_playground_exits_zero_at_end_of_input(tmp_path: Path) -> None:
    async with FakeLLM(default=Reply(text="ok")) as llm:
        code, out, err = await _oneai(
            "chat",
            cwd=tmp_path,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
            },
            stdin="just one line",
        )
    assert code == 0, err
    assert "ok" in out


async def test_grant_gives_a_plan_and_refuses_bad_input(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'grant.db'}"
    env = {"DATABASE_URL": url}
    async with FakeLLM(default=Reply(text="hi")) as llm:
        # A person appears by chatting once (the playground's local account).
        code, _, err = await _oneai(
            "chat", "--user", "ann", cwd=tmp_path, env={**env, "LLM_BASE_URL": llm.base_url},
            stdin="hello",
        )  # fmt: skip
    assert code == 0, err
    code, out, err = await _oneai("grant", "1", "enterprise", "90", cwd=tmp_path, env=env)
    assert code == 0, err
    assert "user 1: free -> enterprise until" in out
    assert "(grant)" in out
    for args, message in [
        (("grant", "1", "platinum", "30"), "tier must be one of"),
        (("grant", "1", "pro", "0"), "days must be between"),
        (("grant", "999", "pro", "30"), "no user 999"),
        (("grant", "telegram:5", "pro", "30"), "no user telegram:5"),
        (("grant", "bob", "pro", "30"), "user must be an id"),
    ]:
        code, _, err = await _oneai(*args, cwd=tmp_path, env=env)
        assert code == 2, (args, err)
        assert message in err and "Traceback" not in err
    code, out, err = await _oneai("grant", "1", "free", "1", cwd=tmp_path, env=env)
    assert code == 0, err
    assert "enterprise -> free" in out


async def test_version(tmp_path: Path) -> None:
    code, out, err = await _oneai("--version", cwd=tmp_path)
    assert code == 0, err
    assert out.strip() == f"oneai {metadata.version('oneai')}"


@pytest.mark.parametrize("command", ["run", "migrate", "chat", "models", "grant"])
async def test_every_command_describes_itself(command: str, tmp_path: Path) -> None:
    code, out, err = await _oneai(command, "--help", cwd=tmp_path)
    assert code == 0, err
    # argparse prints: usage, a blank line, the description, a blank line, the arguments.
    paragraphs = out.split("\n\n")
    assert paragraphs[0].startswith(f"usage: oneai {command}")
    description = paragraphs[1].strip()
    assert not description.startswith(("options:", "positional arguments:")), out
    assert len(description.split()) >= 8, description


async def test_grant_free_takes_no_days_and_paid_plans_need_them(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'grant.db'}"}
    async with FakeLLM(default=Reply(text="hi")) as llm:
        code, _, err = await _oneai(
            "chat", "--user", "ann", cwd=tmp_path, env={**env, "LLM_BASE_URL": llm.base_url},
            stdin="hello",
        )  # fmt: skip
    assert code == 0, err
    code, _, err = await _oneai("grant", "1", "pro", cwd=tmp_path, env=env)
    assert code == 2
    assert err.strip() == "oneai: a pro plan needs DAYS (1 to 3660): oneai grant USER pro DAYS"
    code, out, err = await _oneai("grant", "1", "pro", "30", cwd=tmp_path, env=env)
    assert code == 0, err
    code, out, err = await _oneai("grant", "1", "free", cwd=tmp_path, env=env)
    assert code == 0, err
    assert "user 1: pro -> free" in out


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no/such-model", "I don't know the model “no/such-model”. Use `oneai models` to see"),
        ("anthropic/claude-opus-4", "pick another model with `oneai models`."),
    ],
    ids=["unknown", "locked"],
)
async def test_chat_with_a_model_it_cannot_use_points_to_oneai_models(
    model: str, message: str, tmp_path: Path
) -> None:
    async with FakeLLM(default=Reply(text="never")) as llm:
        code, out, err = await _oneai(
            "chat",
            "--model",
            model,
            cwd=tmp_path,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                "MODEL_CATALOG_REFRESH_HOURS": "0",
            },
            stdin="hello\n",
        )
        sent = llm.requests_count
    assert code == 2
    assert err.startswith("oneai: ") and message in err, err
    assert "/models" not in err and "Traceback" not in err
    assert sent == 0
    # In the session, the same refusal names the same place.
    async with FakeLLM(default=Reply(text="ok")) as llm:
        code, out, err = await _oneai(
            "chat",
            cwd=tmp_path,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                "MODEL_CATALOG_REFRESH_HOURS": "0",
            },
            stdin=f"/model {model}\n",
        )
    assert code == 0, err
    assert any(line.startswith("! ") and message in line for line in out.splitlines()), out


@pytest.fixture
def chat_database(database_url: str, is_postgres: bool, tmp_path: Path) -> str:
    """The suite's PostgreSQL database in the PostgreSQL pass; else a SQLite file of the
    test's own (the session's SQLite file is a template other tests copy)."""
    return database_url if is_postgres else f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"


async def _piped_chat(
    user: str, script: str | bytes, database: str, cwd: Path
) -> tuple[int, str, str, list[str]]:
    """`oneai chat` with `script` piped in, against a fake LLM that echoes: its exit
    code, output, errors and the messages the model was sent."""
    async with FakeLLM(default=Reply(text=None)) as llm:
        code, out, err = await _oneai(
            "chat",
            "--user",
            user,
            cwd=cwd,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": database,
                "MODEL_CATALOG_REFRESH_HOURS": "0",
            },
            stdin=script,
        )
        sent = [r.body["messages"][-1]["content"] for r in llm.requests]
    return code, out, err, sent


async def test_piped_chat_answers_lines_with_nul_and_invalid_utf8(
    chat_database: str, tmp_path: Path
) -> None:
    script = b"hello\n\xff\xfe bad\nagain \x00 nul\n/quit\n"
    code, out, err, sent = await _piped_chat("pipe-nul", script, chat_database, tmp_path)
    assert code == 0, err
    assert "Traceback" not in err + out
    # Every line got its answer; what could not be decoded (or stored) shows as U+FFFD.
    assert sent == ["hello", "\ufffd\ufffd bad", "again \ufffd nul"]
    for text in sent:
        assert f"Echo: {text}" in out


async def test_a_line_that_fails_unexpectedly_does_not_end_the_chat(
    chat_database: str, tmp_path: Path
) -> None:
    # "²" passes str.isdigit() but not int(): a fault the console does not expect.
    script = "hello\n/history ²\nstill here\n"
    code, out, err, _ = await _piped_chat("pipe-fault", script, chat_database, tmp_path)
    assert code == 0, err
    assert "Traceback" not in err + out
    faults = [line for line in out.splitlines() if line.startswith("! ")]
    assert len(faults) == 1 and faults[0].startswith("! Sorry, that went wrong"), out
    assert "Echo: hello" in out and "Echo: still here" in out


def _read_terminal(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the process closed the terminal
        return b""


async def test_interactive_chat_keeps_log_lines_out_of_the_terminal(tmp_path: Path) -> None:
    """A real terminal (a pseudo-terminal): stdin, stdout and stderr all show on it, as
    they would on a screen."""
    import pty

    async with FakeLLM(default=Reply(text="Terminal answer.")) as llm:
        controller, terminal = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "chat",
            cwd=tmp_path,
            env=clean_env(
                LLM_BASE_URL=llm.base_url,
                DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                MODEL_CATALOG_REFRESH_HOURS="0",
                LOG_LEVEL="INFO",
            ),
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        screen = bytearray()

        async def until(marker: bytes, count: int = 1) -> None:
            async with asyncio.timeout(60):
                while screen.count(marker) < count:
                    chunk = await asyncio.to_thread(_read_terminal, controller)
                    if not chunk:
                        raise AssertionError(f"terminal closed; it showed {bytes(screen)!r}")
                    screen.extend(chunk)

        try:
            await until(b"you> ")
            os.write(controller, b"hello\n")
            await until(b"you> ", 2)
            os.write(controller, b"/quit\n")
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            os.close(controller)
        requests = llm.requests_count
    shown = screen.decode(errors="replace")
    assert requests == 1
    assert "Terminal answer." in shown
    assert "(Logs go to oneai-chat.log.)" in shown
    assert not re.search(r"\b(INFO|DEBUG)\b", shown), shown
    assert "HTTP Request" not in shown and "Traceback" not in shown
    log = (tmp_path / "oneai-chat.log").read_text()
    assert "HTTP Request: POST" in log  # the lines went to the file instead


async def test_playground_draws_the_views_the_chat_platforms_use(
    chat_database: str, tmp_path: Path
) -> None:
    script = "/plan\n/settings\n/rename Too early\nhello\n/rename  Greeting \n/history\n/cancel\n"
    code, out, err, sent = await _piped_chat("pipe-views", script, chat_database, tmp_path)
    assert code == 0, err
    assert "Traceback" not in err + out
    assert sent == ["hello"]
    # /plan: the plan, its quotas and every plan; nothing is sold in a terminal.
    assert "💳 Your plan: Free" in out
    assert "✅ Free: 100 small and 20 large messages a month" in out
    assert "Plans are not sold on this bot yet." in out
    # /settings, /rename, /cancel: the texts the chat platforms show.
    assert "⚙️ Settings\n\nSystem prompt: none\nDefault model: GPT-4o mini\nLanguage: English" in out
    assert "There is no conversation yet." in out
    assert "✏️ Renamed to “Greeting”." in out
    assert "* 1. Greeting" in out
    assert out.rstrip().endswith("Nothing to cancel.")


async def test_playground_searches_the_web_where_the_server_offers_it(tmp_path: Path) -> None:
    async with FakeLLM(default=Reply(text=None)) as llm:
        llm.script(
            Reply(
                text="Found it.",
                annotations=[url_citation("https://docs.python.org/3/", "Python docs")],
            ),
            Reply(text="Plain."),
            Reply(text="Searched again."),
        )
        env = {
            "LLM_BASE_URL": llm.base_url,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
            "MODEL_CATALOG_REFRESH_HOURS": "0",
        }
        script = "/search\n/search python docs\n/rev 1\nplain\n/websearch\nagain\n/usage\n"
        code, out, err = await _oneai(
            "chat", cwd=tmp_path, env={**env, "WEB_SEARCH": "on"}, stdin=script
        )
        requests = list(llm.requests)
        off_code, off_out, _ = await _oneai(
            "chat", cwd=tmp_path, env={**env, "WEB_SEARCH": "off"}, stdin="/search x\n"
        )
    assert code == 0 and off_code == 0, err
    assert "! Usage: /search" in out
    assert "Found it.\nSources:\n[1] Python docs — https://docs.python.org/3/" in out
    assert "(revision 1/1)\nFound it.\nSources:\n[1] Python docs" in out  # /rev shows them
    assert "Every answer in this conversation now searches the web." in out
    assert [r.body.get("plugins") for r in requests] == [[{"id": "web"}], None, [{"id": "web"}]]
    assert "web searches: 2/10 used" in out.lower()
    assert "! Web search is not available on this server." in off_out
    assert len(requests) == 3


async def test_voice_transcribes_a_file_and_sends_its_text(tmp_path: Path) -> None:
    (tmp_path / "memo.ogg").write_bytes(b"OggS" + b"\x00" * 20_000)  # counts 2 s
    async with FakeLLM(default=Reply(text="Paris.")) as llm:
        llm.script_transcriptions(Transcription("Capital of France?"), Transcription(status=500))
        code, out, err = await _oneai(
            "chat",
            cwd=tmp_path,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                "MODEL_CATALOG_REFRESH_HOURS": "0",
            },
            stdin="/voice memo.ogg\n/voice memo.ogg\n/voice missing.ogg\n/usage\n",
        )
        stt = list(llm.transcriptions)
        requests = list(llm.requests)
    assert code == 0, err
    assert "🎤 Capital of France?\n" in out and "Paris." in out
    assert "! The transcription service is unavailable right now." in out
    assert "! missing.ogg: No such file or directory" in out
    assert (stt[0].filename, stt[0].content_type) == ("memo.ogg", "audio/ogg")
    assert len(requests) == 1
    assert requests[0].body["messages"][-1] == {"role": "user", "content": "Capital of France?"}
    # Two seconds for the one transcribed; the failed one was given back.
    assert "voice minutes: 0/5 used, 5 left" in out


async def test_playground_reads_documents(tmp_path: Path) -> None:
    from tests.support.documents import pdf, report_pdf

    (tmp_path / "memo.pdf").write_bytes(pdf([["Memo", "Launch on Monday."]]))
    (tmp_path / "big.pdf").write_bytes(report_pdf(300))
    (tmp_path / "tool.txt").write_bytes(b"\x00\x01binary")
    async with FakeLLM(default=Reply(text="Read.")) as llm:
        script = "\n".join(
            [
                "/file memo.pdf When is the launch?",
                "/show",
                "/file tool.txt",
                "/file big.pdf",
                "/first",
                "/first",
            ]
        )
        code, out, err = await _oneai(
            "chat",
            cwd=tmp_path,
            env={
                "LLM_BASE_URL": llm.base_url,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                "MODEL_CATALOG_REFRESH_HOURS": "0",
            },
            stdin=script + "\n",
        )
        requests = list(llm.requests)
    assert code == 0, err
    assert "Traceback" not in err
    first = requests[0].body["messages"][-1]["content"]
    assert "Launch on Monday." in first and first.endswith("When is the launch?")
    assert "you> 📎 memo.pdf (1 page)\nyou> When is the launch?" in out
    assert "! That file is not text I can read" in out
    assert "📎 big.pdf is too long for GPT-4o mini: about " in out
    assert "(only the first part: about " in out
    assert 'part="only the first ' in requests[1].body["messages"][-1]["content"]
    assert "! No document is waiting." in out  # a second /first asks nothing
    assert len(requests) == 2
