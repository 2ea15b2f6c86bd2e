"""Builds the core services once from the settings; platforms receive this bundle."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from core.access import AccessService
from core.accounts import AccountService
from core.admin.sync import AdminSync
from core.broadcast import BroadcastEngine
from core.chat import ChatService
from core.config import Settings
from core.conversations.service import ConversationService
from core.conversations.turns import TurnPlanner
from core.db.engine import Database
from core.db.models import User
from core.documents.service import DocumentService
from core.errors import OneAIError
from core.images import ImageService
from core.linking import LinkService
from core.liveness import Liveness
from core.llm.catalog import ModelCatalog
from core.llm.client import LLMClient
from core.llm.tokens import default_estimator
from core.modes import ModeCatalog
from core.outbox import Outbox
from core.quotas import QuotaService
from core.subscriptions import SubscriptionService
from core.tasks import cancel_and_wait
from core.voice import STTClient, VoiceService
from core.workers import DatabaseWorkers, RedisWorkers, WorkerRegistry, new_worker_id

log = logging.getLogger(__name__)


class RedisUnavailable(OneAIError):
    code = "redis_unavailable"


@dataclass
class Services:
    settings: Settings
    db: Database
    accounts: AccountService
    quotas: QuotaService
    catalog: ModelCatalog
    llm: LLMClient
    conversations: ConversationService
    planner: TurnPlanner
    chat: ChatService
    images: ImageService
    outbox: Outbox
    subscriptions: SubscriptionService
    worker_id: str
    workers: WorkerRegistry
    liveness: Liveness
    linking: LinkService
    broadcasts: BroadcastEngine
    admin_sync: AdminSync
    access: AccessService
    modes: ModeCatalog
    voice: VoiceService
    documents: DocumentService
    _live: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _admin: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        llm: LLMClient | None = None,
        catalog: ModelCatalog | None = None,
        db: Database | None = None,
        role: str = "bot",
        modes: ModeCatalog | None = None,
    ) -> Services:
        """`role`: "bot" for `oneai run`, "cli" for `oneai chat` (the role other
        processes see on this one's answers)."""
        db = db or Database(
            settings.db.database_url,
            echo=settings.db.database_echo,
            busy_timeout=settings.db.sqlite_busy_timeout,
        )
        worker_id = new_worker_id()
        catalog = catalog or ModelCatalog.load(
            settings.llm.default_model,
            override_file=settings.llm.catalog_file,
            cache_file=settings.llm.catalog_cache_file,
        )
        llm = llm or LLMClient.from_settings(settings.llm)
        quotas = QuotaService(db)
        outbox = Outbox(db)
        estimator = default_estimator()
        planner = TurnPlanner(
            db,
            quotas,
            catalog,
            settings.limits,
            worker_id,
            estimator,
            web_search=settings.llm.web_search_available,
        )
        modes = modes or ModeCatalog.load(settings.llm.modes_file)
        planner.default_prompt = modes.default.prompt or None
        chat = ChatService(db, planner, llm, quotas, settings.limits, worker_id)
        timing = settings.workers
        redis_url = settings.redis.redis_url
        workers: WorkerRegistry = (
            RedisWorkers(redis_url, worker_id, role, timing.timeout_seconds)
            if redis_url
            else DatabaseWorkers(db, worker_id, role, timing.timeout_seconds)
        )
        liveness = Liveness(db, workers, quotas, outbox, heartbeat_seconds=timing.heartbeat_seconds)
        liveness.running = chat.running_ids
        chat.liveness = liveness
        conversations = ConversationService(db)
        conversations.liveness = liveness
        linking = LinkService(db, quotas=quotas, outbox=outbox)
        linking.liveness = liveness
        accounts = AccountService(db)
        return cls(
            settings=settings,
            db=db,
            accounts=accounts,
            quotas=quotas,
            catalog=catalog,
            llm=llm,
            conversations=conversations,
            planner=planner,
            chat=chat,
            images=ImageService(db, quotas, catalog, llm),
            outbox=outbox,
            subscriptions=SubscriptionService(db, quotas, outbox),
            worker_id=worker_id,
            workers=workers,
            liveness=liveness,
            linking=linking,
            # One per process: the platforms add their senders; `oneai run` opens it.
            broadcasts=BroadcastEngine(db, accounts, worker_id=worker_id, workers=workers),
            admin_sync=AdminSync(db, catalog, chat),
            # Who may use a private deployment (ACCESS_MODE), read at every check.
            access=AccessService(db, settings),
            modes=modes,
            voice=VoiceService(db, quotas, _stt_client(settings), settings.voice.voice_mode),
            documents=DocumentService(db, catalog, settings.documents, estimator, conversations),
        )

    async def go_live(self) -> int:
        """Prove this process is alive and keep doing so; end the answers of gone
        workers now and keep watching for them. Without Redis exactly one bot
        process runs, so a bot starting then finds every other bot worker gone
        (a restart seconds after a crash leaves nothing stuck). Returns how many
        answers were ended now."""
        await self.workers.start()
        exclusive = self.settings.redis.redis_url is None and self.workers.role == "bot"
        ended = await self.liveness.sweep(confirm=False, role_gone="bot" if exclusive else None)
        if ended:
            log.info("interrupted %d answers of stopped workers", ended)
        self._live = asyncio.create_task(self.liveness.run(), name="liveness")
        # Admins' changes (models turned off, bans) made by any process reach this one.
        try:
            await self.admin_sync.once()
        except Exception:
            log.warning("reading the models turned off failed", exc_info=True)
        self._admin = asyncio.create_task(
            self.admin_sync.run(self.settings.workers.heartbeat_seconds), name="admin-sync"
        )
        return ended

    async def current_model_id(self, user: User) -> str:
        """The model the person's next message goes to: their current conversation's,
        else their default."""
        conversation = await self.conversations.current(user.id)
        if conversation is not None:
            return conversation.model_id
        return self.catalog.preferred(user.default_model).id

    async def refresh_catalog(self, *, force: bool = False) -> bool:
        """Update model prices and limits from the provider; offline keeps the list.
        `force` (an admin's "refresh now"): fetch even when the cached data is fresh
        or refreshing is turned off (MODEL_CATALOG_REFRESH_HOURS=0)."""
        hours = self.settings.llm.catalog_refresh_hours
        if hours <= 0 and not force:
            return False
        return await self.catalog.refresh(
            self.llm.list_models,
            self.settings.llm.catalog_cache_file,
            timedelta(0) if force else timedelta(hours=hours),
            # A generic server's list is its catalog: keep it for a start while it is down.
            base_url=None if self.settings.llm.is_openrouter else self.settings.llm.base_url,
        )

    async def close(self) -> None:
        # Stopped first, while the database is there (a second close does nothing).
        await self.broadcasts.close()
        if self._admin is not None:
            await cancel_and_wait(self._admin)
        # Before this worker signs off: once it is gone, another shows its unmarked answers.
        await self.chat.flush_pending()
        if self._live is not None:
            await cancel_and_wait(self._live)
            # A clean exit: this worker is gone at once, not after its timeout.
            try:
                await self.workers.forget()
            except Exception as exc:
                log.warning("could not sign this worker off: %s", exc)
        await self.workers.close()
        await self.chat.close()
        await self.llm.aclose()
        await self.voice.aclose()
        await self.db.dispose()


def _stt_client(settings: Settings) -> STTClient | None:
    """The transcription server, or None when voice notes are off."""
    voice = settings.voice
    endpoint = voice.endpoint(settings.llm)
    if endpoint is None:
        return None
    base_url, api_key = endpoint
    return STTClient(base_url, api_key, voice.stt_model, timeout=voice.stt_timeout)


async def check_redis(url: str | None) -> None:
    """With REDIS_URL set, Redis must answer: several processes rely on it."""
    if url is None:
        return
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        raise RedisUnavailable(f"REDIS_URL is set but Redis does not answer: {exc}") from None
    finally:
        await client.aclose()
