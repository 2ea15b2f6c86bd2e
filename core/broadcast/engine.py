"""Sends broadcasts: one message to many people, on every platform that has a
sender, under each platform's limits, at most once per person, resuming after a
restart.

At most once, and why not "exactly": a platform call cannot be part of a database
transaction, and neither Telegram nor Discord lets a bot ask afterwards whether
a message went out. So each recipient is *claimed* (a committed UPDATE
pending -> sending) right before the call and *marked* (sent, blocked, failed)
right after it. A process that dies between the two leaves the row `sending`;
whoever takes the broadcast over turns such rows into `unconfirmed` and never
sends them again: the person got the message once or, if the process died
before the request left, not at all. Resending them instead would give some
people the message twice, which the product promises never happens.

The window is kept as small as it can be: a row is claimed only once the rate
limit lets its call go (never a batch ahead), so a crash leaves at most one
unconfirmed row per call in flight (`SendLimits.concurrency`). Stopping that is
not a crash (cancel, pause, shutdown, a cancelled task) loses nothing: a call
already on the wire is let finish and is recorded, and a recipient held but not
yet called (waiting out a 429) goes back to pending.

A person linked on two platforms is one user: the recipients are chosen when the
broadcast starts, one row per user, on the account they used last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.accounts import AccountService
from core.admin.access import Actor
from core.broadcast.model import (
    MAX_TEXT,
    Audience,
    BroadcastError,
    BroadcastInfo,
    Content,
    Photo,
    Preview,
    Progress,
    ProgressCallback,
    ProgressRef,
    RecipientState,
    Rejected,
    RetryAfter,
    Sender,
    Status,
    Unreachable,
)
from core.broadcast.pacing import WINDOW, Pacer
from core.broadcast.store import BroadcastStore, Claim
from core.clock import utcnow
from core.db.engine import Database
from core.tasks import cancel_and_wait
from core.text import storable
from core.workers import WorkerRegistry

log = logging.getLogger(__name__)

MAX_ERRORS = 3  # transient failures per recipient before it counts failed
MAX_FLOODS = 20  # 429s per recipient before it counts failed
RETRY_BACKOFF = 1.0  # seconds before the first retry after a transient failure
# How long a stop waits for a call already on the wire (and its record) to end.
SETTLE_TIMEOUT = 10.0


@dataclass
class _Hold:
    """What one sending worker holds between its steps."""

    claim: Claim | None = None
    delay: float = 0.0
    none_left: bool = False


@dataclass
class _Run:
    """A broadcast this process is sending."""

    broadcast_id: int
    content: Content
    lanes: dict[str, list[asyncio.Task[None]]] = field(default_factory=dict)
    monitor: asyncio.Task[None] | None = None
    floods: int = 0  # 429s not yet written to the row
    reporter: asyncio.Task[None] | None = None
    last_shown: Progress | None = None

    def live_lanes(self) -> dict[str, list[asyncio.Task[None]]]:
        return {p: ts for p, ts in self.lanes.items() if any(not t.done() for t in ts)}

    def tasks(self) -> list[asyncio.Task[None]]:
        return [t for ts in self.lanes.values() for t in ts]


async def _through(step: Coroutine[Any, Any, None], settle_timeout: float) -> None:
    """Run `step` to its end even if this task is cancelled meanwhile (a call on
    the wire must be recorded), for at most `settle_timeout` seconds more; the
    cancellation goes on after it. A step cut there leaves its row `sending`,
    which then counts unconfirmed."""
    inner = asyncio.ensure_future(step)
    try:
        await asyncio.shield(inner)
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_timeout
        while not inner.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                inner.cancel()
                break
            # Cancelled again meanwhile: the call is still on the wire, keep waiting.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({inner}, timeout=remaining)
        raise


class BroadcastEngine:
    """Drafts, starts, cancels, pauses and sends broadcasts; shows their progress.

    One per process. Platforms add their sender (`add_sender`) and, to show
    progress in a message that outlives a restart, a reporter (`add_reporter`).
    `open()` at start-up resumes what was running; `close()` at shutdown leaves
    it for the next start (nothing is lost or repeated).
    """

    def __init__(
        self,
        db: Database,
        accounts: AccountService,
        *,
        worker_id: str,
        workers: WorkerRegistry | None = None,
        now: Callable[[], datetime] = utcnow,
        progress_interval: float = 3.0,
        tick: float = 0.5,
        lease_seconds: float = 30.0,
        retry_backoff: float = RETRY_BACKOFF,
        settle_timeout: float = SETTLE_TIMEOUT,
    ) -> None:
        self.store = BroadcastStore(db, now)
        self.accounts = accounts
        self.worker_id = worker_id
        self.workers = workers
        self._now = now
        self.progress_interval = progress_interval
        self.tick = tick
        self.lease = timedelta(seconds=lease_seconds)
        self.retry_backoff = retry_backoff
        self.settle_timeout = settle_timeout
        self._senders: dict[str, Sender] = {}
        self._pacers: dict[str, Pacer] = {}
        self._reporters: dict[str, ProgressCallback] = {}
        self._watchers: dict[int, list[ProgressCallback]] = {}
        self._runs: dict[int, _Run] = {}
        self._orphans: asyncio.Task[None] | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- platforms -------------------------------------------------------------

    def add_sender(self, sender: Sender) -> None:
        """A platform that can send; running broadcasts start using it at once."""
        self._senders[sender.platform] = sender
        self._pacers[sender.platform] = Pacer(sender.limits.per_second)

    def add_reporter(self, platform: str, reporter: ProgressCallback) -> None:
        """Shows progress in the message a broadcast was started with
        (`report_to`) when that message is on `platform`; also after a restart."""
        self._reporters[platform] = reporter

    @property
    def platforms(self) -> list[str]:
        return sorted(self._senders)

    def pacer(self, platform: str) -> Pacer:
        return self._pacers[platform]

    # -- drafts ----------------------------------------------------------------

    async def create_draft(
        self,
        created_by: int | None,
        text: str,
        *,
        photo: Photo | None = None,
        audience: Audience | None = None,
    ) -> BroadcastInfo:
        return await self.store.create(
            created_by, _checked_text(text, photo), photo, audience or Audience.everyone()
        )

    async def edit_draft(
        self,
        broadcast_id: int,
        *,
        text: str | None = None,
        photo: Photo | None = None,
        remove_photo: bool = False,
        audience: Audience | None = None,
    ) -> BroadcastInfo:
        current = await self.get(broadcast_id)
        values: dict[str, Any] = {}
        new_photo = None if remove_photo else (photo or current.photo)
        if text is not None or photo is not None or remove_photo:
            values["text"] = _checked_text(text if text is not None else current.text, new_photo)
            values["photo"] = new_photo.ref if new_photo else None
            values["photo_platform"] = new_photo.platform if new_photo else None
        if audience is not None:
            values.update(
                audience=audience.kind.value,
                audience_tier=audience.tier.value if audience.tier else None,
                active_days=audience.days,
            )
        return await self.store.update_draft(broadcast_id, values)

    async def get(self, broadcast_id: int) -> BroadcastInfo:
        info = await self.store.get(broadcast_id)
        if info is None:
            raise BroadcastError("No such broadcast.")
        return info

    async def recent(self, limit: int = 10, offset: int = 0) -> list[BroadcastInfo]:
        return await self.store.recent(limit, offset)

    async def preview(self, broadcast_id: int) -> Preview:
        """What confirming would do: how many people it reaches on which platform,
        and what stops a platform from sending this text."""
        info = await self.get(broadcast_id)
        count = await self.store.count_audience(info.audience, self.platforms)
        problems = {
            platform: problem
            for platform, sender in self._senders.items()
            if (problem := sender.problem(info.content)) is not None
        }
        return Preview(info, count, problems)

    async def send_sample(self, broadcast_id: int, platform: str, address: str) -> None:
        """Send the broadcast, as people will see it, to one chat (the admin's own):
        not counted, not recorded. Raises the sender's errors (RetryAfter...)."""
        info = await self.get(broadcast_id)
        sender = self._sender(platform)
        await self._pacers[platform].turn()
        await self._pacers[platform].go()
        await sender.send(address, info.content)

    # -- lifecycle -------------------------------------------------------------

    async def start(
        self,
        broadcast_id: int,
        *,
        report_to: ProgressRef | None = None,
        on_progress: ProgressCallback | None = None,
        actor: Actor | None = None,
    ) -> Progress:
        """Confirm a draft: its recipients are chosen now and sending begins.
        Pressing it twice starts it once (the second call just returns progress).
        `actor`: the admin, for the audit log (cancel, pause and resume too)."""
        preview = await self.preview(broadcast_id)
        if preview.broadcast.status is Status.DRAFT:
            if not preview.ready:
                raise BroadcastError("; ".join(f"{p}: {m}" for p, m in preview.problems.items()))
            if not preview.audience.total:
                raise BroadcastError("Nobody is in this audience.")
        if on_progress is not None:
            self.watch(broadcast_id, on_progress)
        begun = await self.store.begin(
            broadcast_id, self.platforms, self.worker_id, self.lease, report_to, actor
        )
        if begun:
            log.info("broadcast %d started", broadcast_id)
            await self._launch(broadcast_id)
        return await self.progress(broadcast_id)

    async def cancel(self, broadcast_id: int, *, actor: Actor | None = None) -> Progress:
        """Stop for good: no call starts after this returns (a call already on the
        wire ends and is counted). Another process sending it stops within a tick."""
        await self.store.set_status(
            broadcast_id, (Status.DRAFT, Status.RUNNING, Status.PAUSED), Status.CANCELLED, actor
        )
        await self._stop_here(broadcast_id)
        return await self.progress(broadcast_id)

    async def pause(self, broadcast_id: int, *, actor: Actor | None = None) -> Progress:
        """Stop for now; `resume` continues with the people not reached yet."""
        await self.store.set_status(broadcast_id, (Status.RUNNING,), Status.PAUSED, actor)
        await self._stop_here(broadcast_id)
        return await self.progress(broadcast_id)

    async def resume(
        self,
        broadcast_id: int,
        *,
        on_progress: ProgressCallback | None = None,
        actor: Actor | None = None,
    ) -> Progress:
        """Continue a paused broadcast."""
        if on_progress is not None:
            self.watch(broadcast_id, on_progress)
        if await self.store.set_status(broadcast_id, (Status.PAUSED,), Status.RUNNING, actor):
            await self._adopt(broadcast_id, take_over=True)
        return await self.progress(broadcast_id)

    async def progress(self, broadcast_id: int) -> Progress:
        run = self._runs.get(broadcast_id)
        return await self.store.progress(broadcast_id, run.floods if run else 0)

    def watch(self, broadcast_id: int, callback: ProgressCallback) -> None:
        """Call `callback` with the progress every `progress_interval` seconds while
        it changes, and once when the broadcast ends (in this process)."""
        watchers = self._watchers.setdefault(broadcast_id, [])
        if callback not in watchers:
            watchers.append(callback)

    async def wait(self, broadcast_id: int) -> None:
        """Until this process stops sending `broadcast_id` (done, cancelled, paused)."""
        run = self._runs.get(broadcast_id)
        if run is not None and run.monitor is not None:
            await asyncio.wait({run.monitor})  # however the monitor ended

    async def open(self, *, take_over: bool = False, watch_orphans: bool = True) -> list[int]:
        """At start-up: resume every running broadcast. `take_over`: this is the only
        process that sends (no Redis), so whoever ran them before is gone. Then,
        every lease period, take over broadcasts whose process stopped renewing."""
        resumed = await self.resume_running(take_over=take_over)
        if watch_orphans and self._orphans is None:
            self._orphans = asyncio.create_task(self._adopt_orphans(), name="broadcast-orphans")
        return resumed

    async def resume_running(self, *, take_over: bool = False) -> list[int]:
        """Continue running broadcasts this process does not send yet, whose runner
        is gone (or all of them, with `take_over`). Returns their ids."""
        resumed = []
        for broadcast_id in await self.store.with_status(Status.RUNNING):
            if broadcast_id in self._runs:
                continue
            if await self._adopt(broadcast_id, take_over=take_over):
                resumed.append(broadcast_id)
        if resumed:
            log.info("resumed broadcasts %s", resumed)
        return resumed

    async def close(self) -> None:
        """Shutdown: stop sending (calls on the wire are recorded, held recipients go
        back to pending) and let the next process resume at once."""
        self._closed = True
        await cancel_and_wait(self._orphans)
        self._orphans = None
        for broadcast_id in list(self._runs):
            run = self._runs.get(broadcast_id)
            if run is None:
                continue
            await cancel_and_wait(run.monitor)
            await self._stop_lanes(run)
            with contextlib.suppress(Exception):
                await self.store.record(broadcast_id, run.floods, counts=None)
                run.floods = 0
                await self.store.release(broadcast_id, self.worker_id)
            self._runs.pop(broadcast_id, None)
        if self._reports:
            await asyncio.wait(set(self._reports), timeout=5)

    # -- running ---------------------------------------------------------------

    def _sender(self, platform: str) -> Sender:
        sender = self._senders.get(platform)
        if sender is None:
            raise BroadcastError(f"No sender for {platform}.")
        return sender

    async def _adopt(self, broadcast_id: int, *, take_over: bool) -> bool:
        if broadcast_id in self._runs or self._closed:
            return False
        owner = await self.store.owner(broadcast_id)
        if owner is None or owner[0] is not Status.RUNNING:
            return False
        _, runner, lease_until = owner
        if not (
            take_over
            or runner is None
            or runner == self.worker_id
            or (lease_until is not None and lease_until <= self._now())
            or (self.workers is not None and runner in await self.workers.gone([runner]))
        ):
            return False
        if not await self.store.adopt(broadcast_id, self.worker_id, runner, self.lease):
            return False
        if runner is not None and runner != self.worker_id:
            # The platform counts calls per second: the last second of the process
            # that sent before may still be in its window, so begin after it.
            for pacer in self._pacers.values():
                pacer.hold(WINDOW)
        await self._launch(broadcast_id)
        return True

    async def _launch(self, broadcast_id: int) -> None:
        if broadcast_id in self._runs:
            return
        info = await self.get(broadcast_id)
        run = _Run(broadcast_id, info.content)
        self._runs[broadcast_id] = run
        await self._fill_lanes(run)
        run.monitor = asyncio.create_task(
            self._monitor(run), name=f"broadcast-{broadcast_id}-monitor"
        )

    async def _fill_lanes(self, run: _Run) -> None:
        """Start the workers of every platform that has a sender, no workers running
        and people still to send to."""
        live = run.live_lanes()
        for platform, sender in list(self._senders.items()):
            if platform in live or not await self.store.has_pending(run.broadcast_id, platform):
                continue
            run.lanes[platform] = [
                asyncio.create_task(
                    self._worker(run, sender, self._pacers[platform]),
                    name=f"broadcast-{run.broadcast_id}-{platform}-{n}",
                )
                for n in range(max(1, sender.limits.concurrency))
            ]

    async def _stop_lanes(self, run: _Run) -> None:
        tasks = run.tasks()
        for task in tasks:
            if not task.cancelling():  # once: a worker is still recording what it did
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_here(self, broadcast_id: int) -> None:
        """Stop this process's sending of `broadcast_id` now and show the end."""
        run = self._runs.get(broadcast_id)
        if run is None:
            return
        await self._stop_lanes(run)
        if run.monitor is not None:
            await self.wait(broadcast_id)

    async def _worker(self, run: _Run, sender: Sender, pacer: Pacer) -> None:
        hold = _Hold()
        try:
            while not hold.none_left:
                try:
                    await pacer.turn()
                    if hold.claim is None:
                        await _through(self._claim(run, sender.platform, hold), self.settle_timeout)
                        if hold.claim is None:
                            continue
                    await pacer.go()
                    await _through(self._attempt(run, sender, pacer, hold), self.settle_timeout)
                    if hold.claim is not None and hold.delay:
                        await asyncio.sleep(hold.delay)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database failed: the row stays as recorded
                    log.exception("broadcast %d: a sending step failed", run.broadcast_id)
                    await asyncio.sleep(1.0)
        except asyncio.CancelledError:
            if hold.claim is not None:  # held, not called: back to pending
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.unclaim(hold.claim, self.worker_id))
            raise

    async def _claim(self, run: _Run, platform: str, hold: _Hold) -> None:
        claim = await self.store.claim_next(run.broadcast_id, platform, self.worker_id)
        if claim is None:
            hold.none_left = True
        hold.claim = claim

    async def _attempt(self, run: _Run, sender: Sender, pacer: Pacer, hold: _Hold) -> None:
        """One call for the held recipient, and its record. The hold is emptied
        before the call: only an answer that proves nothing was delivered (a 429,
        an error to retry) gives the recipient back to the hold."""
        claim, hold.claim, hold.delay = hold.claim, None, 0.0
        assert claim is not None
        if not pacer.paused and claim.tries and not await self.store.reclaim(claim, self.worker_id):
            return  # taken over or stopped meanwhile
        if pacer.paused:
            # Another worker's 429 came since this worker's turn (this step runs as
            # a task of its own, and a retry first confirms its claim): the call
            # waits for the pause's end and a new turn, or it would only meet a 429.
            hold.claim = claim
            return
        claim.tries += 1
        try:
            await sender.send(claim.address, run.content)
        except RetryAfter as exc:
            pacer.pause(exc.seconds)
            run.floods += 1
            claim.floods += 1
            if claim.floods >= MAX_FLOODS:
                await self._finish(claim, RecipientState.FAILED, f"429 {claim.floods} times")
            else:
                hold.claim = claim
        except Unreachable as exc:
            await self.accounts.mark_blocked(claim.platform, claim.platform_user_id)
            await self._finish(claim, RecipientState.BLOCKED, str(exc) or "blocked")
        except Rejected as exc:
            await self._finish(claim, RecipientState.FAILED, str(exc) or "rejected")
        except Exception as exc:  # Transient, or anything the sender did not translate
            claim.errors += 1
            if claim.errors >= MAX_ERRORS:
                log.warning(
                    "broadcast %d: %s %s failed: %s",
                    run.broadcast_id,
                    claim.platform,
                    claim.address,
                    exc,
                )
                await self._finish(claim, RecipientState.FAILED, f"{type(exc).__name__}: {exc}")
            else:
                hold.claim = claim
                hold.delay = self.retry_backoff * 2 ** (claim.errors - 1)
        else:
            await self._finish(claim, RecipientState.SENT)

    async def _finish(self, claim: Claim, state: RecipientState, error: str | None = None) -> None:
        await self.store.finish(claim, self.worker_id, state, error)

    async def _monitor(self, run: _Run) -> None:
        """Per broadcast: notices a cancel or pause made anywhere, restarts lanes,
        renews the lease, reports progress, and ends the broadcast when nobody is
        left to send to."""
        broadcast_id = run.broadcast_id
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        reported = -math.inf
        try:
            while True:
                tasks = [t for t in run.tasks() if not t.done()]
                if tasks:
                    await asyncio.wait(tasks, timeout=self.tick)
                else:
                    await asyncio.sleep(self.tick)
                owner = await self.store.owner(broadcast_id)
                if owner is None or owner[0] is not Status.RUNNING or owner[1] != self.worker_id:
                    break  # cancelled, paused or taken over (possibly by another process)
                now = loop.time()
                if now - renewed >= self.lease.total_seconds() / 3:
                    if not await self.store.renew(broadcast_id, self.worker_id, self.lease):
                        break
                    renewed = now
                idle = not run.live_lanes()
                if idle and not await self.store.has_pending(broadcast_id):
                    await self.store.abandon_held(broadcast_id, self.worker_id)
                    await self.store.record(broadcast_id, run.floods, counts=None)
                    run.floods = 0
                    if await self.store.complete(broadcast_id, self.worker_id):
                        log.info("broadcast %d done", broadcast_id)
                    break
                await self._fill_lanes(run)
                if now - reported >= self.progress_interval:
                    reported = now
                    if run.floods:
                        floods, run.floods = run.floods, 0
                        await self.store.record(broadcast_id, floods, counts=None)
                    self._show(run, await self.progress(broadcast_id))
        except asyncio.CancelledError:
            await self._stop_lanes(run)
            raise
        except Exception:
            log.exception(
                "broadcast %d: monitoring failed; the next start resumes it", broadcast_id
            )
        await self._stop_lanes(run)
        await self._settle(run)

    async def _settle(self, run: _Run) -> None:
        """After this process stopped sending: record what is known and show it."""
        broadcast_id = run.broadcast_id
        try:
            owner = await self.store.owner(broadcast_id)
            if owner is not None and owner[0] is not Status.RUNNING:
                await self.store.abandon_held(broadcast_id, self.worker_id)
            counts = await self.store.counts(broadcast_id)
            await self.store.record(broadcast_id, run.floods, counts=counts)
            run.floods = 0
            final = await self.progress(broadcast_id)
        except Exception:
            log.exception("broadcast %d: could not record its end", broadcast_id)
            return
        finally:
            self._runs.pop(broadcast_id, None)
        if final.status is Status.RUNNING:
            return  # another process took it over, or the next start resumes it
        self._show(run, final, final=True)
        if final.finished:
            self._watchers.pop(broadcast_id, None)

    def _show(self, run: _Run, progress: Progress, *, final: bool = False) -> None:
        """Report progress to the watchers and the reporter, one report at a time;
        a report still going is not waited for (the next tick shows newer counts),
        except the final one, which always goes out."""
        if not final and progress == run.last_shown:
            return
        if not final and run.reporter is not None and not run.reporter.done():
            return
        run.last_shown = progress
        callbacks = list(self._watchers.get(run.broadcast_id, ()))
        if progress.report_to is not None:
            reporter = self._reporters.get(progress.report_to.platform)
            if reporter is not None:
                callbacks.append(reporter)
        if not callbacks:
            return
        previous = run.reporter

        async def report() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            for callback in callbacks:
                try:
                    await callback(progress)
                except Exception:
                    log.exception("broadcast %d: progress report failed", run.broadcast_id)

        run.reporter = asyncio.create_task(report(), name=f"broadcast-{run.broadcast_id}-report")
        self._reports.add(run.reporter)
        run.reporter.add_done_callback(self._reports.discard)

    async def _adopt_orphans(self) -> None:
        period = max(self.lease.total_seconds() / 2, self.tick)
        while True:
            await asyncio.sleep(period)
            try:
                await self.resume_running()
            except Exception:
                log.exception("looking for broadcasts to take over failed")


def _checked_text(text: str, photo: Photo | None) -> str:
    text = storable(text).strip()
    if not text and photo is None:
        raise BroadcastError("The broadcast has no text.")
    if len(text) > MAX_TEXT:
        raise BroadcastError(f"The text is longer than {MAX_TEXT} characters.")
    return text
