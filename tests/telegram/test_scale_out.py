"""Two `oneai run` processes serve one Telegram bot in webhook mode behind a load
balancer, on one PostgreSQL database and one Redis (skipped otherwise).

The fake Bot API's updates are POSTed to the two webhooks in turn, up to 40 at once;
50 people write 5 messages each, the next once the previous answer is final, and
every answer streams in several edits. Then:

- every prompt has exactly one final answer, and each person's quota counts 5;
- setWebhook succeeded once across both processes;
- the fake answered no 429 ("chat" or "global"): the per-chat and global budgets are
  shared, and the busiest second of sends and edits stays within Telegram's 30;
- the database never showed one conversation with two answers streaming;
- with one process SIGKILLed when a third of the prompts are answered, the other
  serves everyone: cut answers are told as cut (their unit back) and sent again,
  answers saved but not shown yet are shown by the survivor, and nobody waits more
  than 60 s for a word from the bot. The one duplicate allowed is an answer whose
  post landed in the last moment before the kill, before it could be recorded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.db.engine import Database
from tests.fakes.llm_server import FakeLLM
from tests.fakes.telegram_server import FakeTelegram
from tests.support.bot_process import BotProcess
from tests.support.scale_out import (
    GLOBAL_PER_SECOND,
    PER_CHAT_INTERVAL,
    SILENCE_LIMIT,
    Balancer,
    Person,
    Run,
    bot_processes,
    chunked_echo,
    complete_answers,
    drive,
    hook,
    random_token,
    rows_about,
    used_small,
    variables,
)

PEOPLE = 50
# Between a post landing and its link being recorded (one database write), the
# poster's death leaves the post unknown to everyone else: no Bot API call tells a
# bot what it posted. Within this long before a kill a second copy is expected.
IN_FLIGHT = 1.0
MESSAGES = 5
# "Echo: p10001 m0" and six words: eight pieces streamed over about 1.5 s.
ANSWER_SECONDS = 1.5
ANSWER_PIECES = 8


@pytest.fixture
def shared_redis(is_postgres: bool, redis_url: str | None) -> str:
    if not (is_postgres and redis_url):
        pytest.skip(
            "several processes share PostgreSQL and Redis: TEST_DATABASE_URL and TEST_REDIS_URL"
        )
    return redis_url


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(
        random_token(), per_chat_interval=PER_CHAT_INTERVAL, global_per_second=GLOBAL_PER_SECOND
    ) as fake:
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(default=chunked_echo(ANSWER_SECONDS, ANSWER_PIECES)) as fake:
        yield fake


async def _problems(
    run: Run,
    tg: FakeTelegram,
    db: Database,
    bots: list[BotProcess],
    killed: float | None = None,
    in_flight: list[str] | None = None,
) -> list[str]:
    """Everything the requirement promises that this run broke, each in one line.
    `killed`: when a process was killed; an answer it had just posted but not yet
    recorded (the post landed within `IN_FLIGHT` s before the kill) is shown again
    by the survivor, who cannot know it landed: such copies go to `in_flight`."""
    problems: list[str] = []
    for who in run.people:
        expected = {p.text for p in who.prompts}
        unanswered = {p.text for p in who.prompts if p.outcome != "answered"}
        shown = complete_answers(tg, who.chat)
        if who.answered != MESSAGES:
            last = who.prompts[-1] if who.prompts else None
            problems.append(
                f"person {who.chat}: {who.answered} of {MESSAGES} prompts answered; the chat"
                f" after their last prompt ({last.outcome if last else '-'}):"
                f" {_chat_after(tg, who.chat, last.message_id if last else 0)}; the database:"
                f" {await rows_about(db, who.chat, unanswered)}"
            )
        twice = {text: n for text, n in shown.items() if n > 1}
        if killed is not None and in_flight is not None:
            for text in list(twice):
                if _posted_just_before(tg, who.chat, text, killed):
                    in_flight.append(text)
                    del twice[text]
        if twice:
            problems.append(
                f"person {who.chat}: answered more than once: {twice}; the chat:"
                f" {_chat_after(tg, who.chat, 0)}; the database:"
                f" {await rows_about(db, who.chat, set(twice))}"
            )
        unasked = set(shown) - expected
        if unasked:
            problems.append(f"person {who.chat}: answers to nothing they sent: {unasked}")
        used = await used_small(db, who.chat)
        if used != who.answered:
            problems.append(
                f"person {who.chat}: quota used {used}, answers {who.answered};"
                f" the database on the prompts not answered at once:"
                f" {await rows_about(db, who.chat, unanswered)}"
            )
    if run.set_webhooks != 1:
        problems.append(f"setWebhook succeeded {run.set_webhooks} times, not once")
    for reason in ("global", "chat"):
        if run.floods[reason]:
            problems.append(f"{run.floods[reason]} 429s of reason {reason!r}")
    if run.busiest_second > GLOBAL_PER_SECOND:
        problems.append(f"busiest second: {run.busiest_second} sends/edits")
    if run.sampler.most > 1:
        problems.append(
            f"{len(run.sampler.conversations_over_one)} conversations had"
            f" {run.sampler.most} answers streaming at once"
        )
    for number, bot in enumerate(bots, 1):
        if "Traceback" in bot.output:
            problems.append(f"process {number} printed a Traceback:\n{bot.output[-4000:]}")
    return problems


def _posted_just_before(tg: FakeTelegram, chat: int, text: str, killed: float) -> bool:
    """Whether the first of two copies of the answer to `text` was posted by the
    killed process in the moment before it died: two copies, the first one's post
    within IN_FLIGHT s before the kill."""
    copies = [
        m.message_id
        for m in tg.messages(chat, from_bot=True)
        if m.text == f"Echo: {text}" and m.buttons
    ]
    if len(copies) != 2:
        return False
    posted = [
        call.time
        for call in tg.calls_of("sendMessage", chat, ok=True)
        if call.response["result"]["message_id"] == copies[0]
    ]
    return bool(posted) and killed - IN_FLIGHT <= posted[0] <= killed


def _chat_after(tg: FakeTelegram, chat: int, message_id: int) -> list[str]:
    """What the bot showed after `message_id`, for a failure message."""
    return [
        f"{m.message_id}{' ->' + str(m.reply_to) if m.reply_to else ''}: {(m.text or '')[:80]!r}"
        f" {[b.get('callback_data') for b in m.buttons]}"
        for m in tg.messages(chat)
        if m.message_id > message_id
    ]


def _figures(title: str, run: Run, tg: FakeTelegram) -> str:
    outcomes = run.outcomes()
    return (
        f"\n{title}: {run.answers} answers in {run.seconds:.1f} s"
        f" = {run.answers_per_second:.2f} answers/s; 429s by reason {dict(run.floods)};"
        f" busiest second {run.busiest_second} sends/edits; duplicates {run.duplicates(tg)};"
        f" prompts {dict(outcomes)}; webhook POSTs failed and sent again"
        f" {run.balancer.failed_posts}; setWebhook ok {run.set_webhooks};"
        f" most answers streaming in one conversation {run.sampler.most}"
        f" ({run.sampler.samples} samples), streaming at the end {run.sampler.last_total};"
        f" longest wait for a first word"
        f" {run.longest_silence():.1f} s"
    )


async def _stop(bots: list[BotProcess]) -> list[str]:
    problems = []
    for number, bot in enumerate(bots, 1):
        if bot.process.returncode is None:
            bot.terminate()
            code = await bot.wait()
            if code != 0:
                problems.append(f"process {number} exited {code} on SIGTERM")
    return problems


async def test_two_processes_serve_everyone_once_within_telegrams_limits(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, shared_redis: str
) -> None:
    env = variables(tg, llm, db.url, shared_redis)
    async with bot_processes(tmp_path, 2, env) as bots:
        await tg.wait_for(lambda: tg.webhook_url, 30)
        run = await drive(tg, db, [hook(b) for b in bots], people=PEOPLE, messages=MESSAGES)
        problems = await _stop(bots)
    print(_figures("two processes", run, tg))
    problems += await _problems(run, tg, db, bots)
    assert not problems, "\n".join(problems)


async def test_killing_one_process_mid_run_leaves_the_other_serving_everyone(
    tmp_path: Path, tg: FakeTelegram, llm: FakeLLM, db: Database, shared_redis: str
) -> None:
    env = variables(tg, llm, db.url, shared_redis)
    killed_at: list[float] = []

    async def kill_a_third_in(balancer: Balancer, people: list[Person]) -> None:
        victim = bots[0]
        await tg.wait_for(lambda: sum(p.answered for p in people) >= PEOPLE * MESSAGES // 3, 120)
        victim.kill()
        killed_at.append(time.monotonic())
        balancer.drop(hook(victim))
        await victim.wait()

    async with bot_processes(tmp_path, 2, env) as bots:
        await tg.wait_for(lambda: tg.webhook_url, 30)
        run = await drive(
            tg,
            db,
            [hook(b) for b in bots],
            people=PEOPLE,
            messages=MESSAGES,
            during=kill_a_third_in,
        )
        problems = await _stop(bots[1:])
    killed = killed_at[0]
    cut = [p for p in run.prompts if p.outcome == "cut"]
    silent = [p for p in run.prompts if p.outcome == "silent"]
    told = max((p.done_at or killed) - killed for p in cut) if cut else 0.0
    print(_figures("two processes, one killed", run, tg))
    print(
        f"killed at {killed - run.prompts[0].sent_at:.1f} s into the run;"
        f" answers cut {len(cut)} (sent again); prompts with no word for"
        f" {SILENCE_LIMIT:.0f} s {len(silent)} (sent again); survivor told everyone cut"
        f" {told:.1f} s after the kill"
    )
    in_flight: list[str] = []
    problems += await _problems(run, tg, db, bots, killed, in_flight)
    print(f"answers posted just before the kill and shown again: {len(in_flight)}")
    if silent:
        problems.append(
            f"{len(silent)} prompts got no word for {SILENCE_LIMIT:.0f} s:"
            f" {[p.text for p in silent][:10]}"
        )
    longest = max((p.first_word or 0.0) for p in run.prompts)
    if longest > SILENCE_LIMIT:
        problems.append(f"a prompt waited {longest:.1f} s for the bot's first word")
    assert not problems, "\n".join(problems)
