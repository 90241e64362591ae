"""The composition root: the one place that builds afterbeep's objects and wires them together.

`Runtime` owns every long-lived resource (database, object store, background workers, the
HTTP application) and closes them in reverse order.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from afterbeep.api.idempotency import IdempotencySweeper
from afterbeep.audio.amd import MachineDetector
from afterbeep.audio.amd_cues import cue_language, load_cues
from afterbeep.audio.speech import EspeakSynthesizer
from afterbeep.cluster.node import SpoolLock, spool_directory
from afterbeep.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from afterbeep.api.deps import ApiServices
    from afterbeep.asr.turns import TurnTranscriber
from afterbeep.db.engine import Database
from afterbeep.db.notify import AGENT_STATE_CHANNEL, WORK_ITEMS_CHANNEL, PgListener
from afterbeep.db.repos.delivery import SqlDeliveryStore
from afterbeep.db.repos.idempotency import SqlIdempotencyStore
from afterbeep.db.repos.mwi import SqlMwiStore
from afterbeep.db.repos.queue_floor import SqlQueueFloor
from afterbeep.db.repos.work_items import SqlRouterLock
from afterbeep.db.uow import unit_of_work_factory
from afterbeep.domain.admission import AdmissionPolicy
from afterbeep.domain.clock import Clock, SystemClock
from afterbeep.domain.netpolicy import parse_networks
from afterbeep.domain.pin_lockout import PinLockoutPolicy
from afterbeep.domain.transcripts import Transcript
from afterbeep.notify.email import EmailDispatcher, SmtpSender, SmtpSignInMailer
from afterbeep.notify.webhooks import WebhookDispatcher
from afterbeep.postcall import PostCallProcess
from afterbeep.services.accounts import AccountService
from afterbeep.services.call_centers import CallCenterService
from afterbeep.services.callbacks import CallbackPlanner
from afterbeep.services.campaigns import CampaignService
from afterbeep.services.contact_center import TelephonyApi, VoiceCallReader, WorkRouter
from afterbeep.services.delivery import START_WITHIN, DeliveryService, lease_for
from afterbeep.services.deposits import DepositService
from afterbeep.services.device_outbound import DeviceOutbound
from afterbeep.services.flows import FlowService
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.media import MediaService
from afterbeep.services.members import MemberService
from afterbeep.services.messages import MessageService, TrashPurger
from afterbeep.services.netguard import HostGuard
from afterbeep.services.notifications import NotificationService
from afterbeep.services.numbers import NumberService
from afterbeep.services.phone_menu import PhoneMenuService
from afterbeep.services.ports.storage import ObjectStore
from afterbeep.services.ports.transcription import TranscriptionEngine, TranscriptionUnavailable
from afterbeep.services.queues import QueueEngine, QueueService
from afterbeep.services.ring_groups import RingGroupService
from afterbeep.services.ringless import RinglessService
from afterbeep.services.routing import CallRouter, RouteCache, invalidating
from afterbeep.services.schedules import ScheduleService
from afterbeep.services.sender_numbers import SenderNumberService
from afterbeep.services.telephony_api import (
    CallbackRecords,
    LocalTelephonyApi,
    SqlVoiceCallReader,
    TelephonyApiService,
)
from afterbeep.services.transcripts import (
    TranscriptionPolicy,
    TranscriptionQueue,
    TranscriptService,
)
from afterbeep.services.users import AccountUsers, UserService
from afterbeep.services.webhooks import WebhookService
from afterbeep.services.work_items import WorkItemService
from afterbeep.storage.factory import open_store
from afterbeep.telephony.call import CallSettings
from afterbeep.telephony.callback import SipCallbacks
from afterbeep.telephony.delivery_worker import DeliveryWorker, Pacer, SipDepositor, TrunkLimits
from afterbeep.telephony.deposit_receiver import DepositReceiver, parse_peers, parse_users
from afterbeep.telephony.directory import RegistrationDirectory, SqlRegistrarStore
from afterbeep.telephony.dropper import SipDropper
from afterbeep.telephony.inbound import InboundCalls
from afterbeep.telephony.mwi import MwiNotifier, MwiRelay, SipNotifySender
from afterbeep.telephony.outside import OutsideCalls
from afterbeep.telephony.ringing import SipRinger
from afterbeep.telephony.scripts.ringer import Ringer
from afterbeep.telephony.server import (
    QuickRouter,
    Router,
    ServerLimits,
    TelephonyServer,
    telephony_configs,
)
from afterbeep.telephony.sip.errors import SipTransportError
from afterbeep.telephony.sip.registrar import LockoutPolicy, Registrar
from afterbeep.telephony.spool import Spool
from afterbeep.telephony.spool_worker import SpoolHandoff, SpoolWorker
from afterbeep.transcription.worker import TranscriptionWorker

if TYPE_CHECKING:
    import httpx

    from afterbeep.domain.connectors import Connector
    from afterbeep.services.contact_center import TelephonyApi
from afterbeep.domain.voicemail_sequence import RetryPolicy
from afterbeep.services.connectors import ConnectorService, LocalTargets, SequenceTargets
from afterbeep.services.voicemail_sequence import (
    Observer,
    SequenceAdmission,
    SequenceWorker,
    TeamDeliveries,
    VoicemailSequence,
)

log = logging.getLogger("afterbeep")

PREBOUND_RTP_PAIRS = 128  # RTP/RTCP pairs bound ahead, so an INVITE is answered without waiting


class CannotListen(Exception):
    """A socket the service needs is taken (or not allowed)."""

    def __init__(self, addr: str, what: str, reason: str) -> None:
        super().__init__(f"cannot listen on {addr} ({what}): {reason}")


def _os_reason(exc: BaseException) -> str:
    """`address already in use`: the first errno in the chain of causes (uvloop wraps it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno).lower()
        seen = seen.__cause__ or seen.__context__
    return str(exc).lower()


def admin_key_hash(settings: Settings) -> bytes | None:
    key = settings.admin_key.get_secret_value()
    return hashlib.sha256(key.encode()).digest() if key else None


EngineFactory = Callable[[Settings], TranscriptionEngine]


class _UnavailableEngine:
    """What transcribes when the engine could not be built: every job fails with the reason."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def transcribe(self, audio: npt.NDArray[np.int16], language: str) -> Transcript:
        raise TranscriptionUnavailable(self._reason)


def default_engine(settings: Settings) -> TranscriptionEngine:
    """faster-whisper (`afterbeep.asr`); imported only where transcription runs."""
    from afterbeep.asr import engine_from_settings

    engine = engine_from_settings(settings)
    if engine is None:
        raise TranscriptionUnavailable("transcription is off")
    return engine


class Runtime:
    def __init__(
        self,
        settings: Settings,
        clock: Clock | None = None,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._engine_factory = engine_factory or default_engine
        self.transcription = TranscriptionQueue(
            TranscriptionPolicy(
                enabled=settings.transcribe, queue_max=settings.transcribe_queue_max
            ),
            self.clock,
            on_queued=self._transcription_queued,
        )
        self.transcription_worker: TranscriptionWorker | None = None
        self.amd_words: TurnTranscriber | None = None
        self.data_dir: Path = settings.resolved_data_dir()
        self.db = Database(settings.resolved_database_url())
        self.routes = RouteCache()  # cleared by every change written through self.uow
        self.uow = invalidating(unit_of_work_factory(self.db), self.routes)
        self.store: ObjectStore | None = None
        self.dispatcher: WebhookDispatcher | None = None
        self.email_dispatcher: EmailDispatcher | None = None
        self.deposits: DepositService | None = None
        self.spool: Spool | None = None
        self.spool_worker: SpoolWorker | None = None
        self.spool_lock: SpoolLock | None = None
        self.postcall: PostCallProcess | None = None
        self.telephony: TelephonyServer | None = None
        self.registrar: Registrar | None = None
        # Message waiting: every service that changes messages tells `mwi`; the SIP side's
        # notifier (`start_telephony`) is its target.
        self.mwi = MwiRelay()
        self.mwi_notifier: MwiNotifier | None = None
        # What rings users' phones and bridges the answer: the SIP server's (`SipRinger`)
        # unless set before `start`.
        self.ringer: Ringer | None = None
        self.delivery_worker: DeliveryWorker | None = None
        self.deposit_receiver: DepositReceiver | None = None
        self.lookups = unit_of_work_factory(self.db, readonly=True, direct=True)
        self.accounts = AccountService(self.uow, self.clock, lookups=self.lookups)
        # Called after each accepted voicemail send (the delivery engine adds its wake-up).
        self.voicemail_accepted: list[Callable[[], None]] = []
        self.speech = EspeakSynthesizer()
        self.idempotency = SqlIdempotencyStore(self.db)
        self.idempotency_sweeper = IdempotencySweeper(self.idempotency, self.clock)
        self.members = MemberService(
            self.uow,
            self.clock,
            public_url=settings.resolved_public_url(),
            mailer=SmtpSignInMailer(SmtpSender(settings.smtp()), settings.smtp_from),
        )
        self.trash_purger: TrashPurger | None = None
        self._app: FastAPI | None = None
        self._drain_deadline: float | None = None  # loop time, once shutdown has begun
        # This node's live queues (who waits, what agents do), shared by the API and the queue
        # call application. The services take a UserLookup once the users repository exists.
        self.queue_engine = QueueEngine(self.uow, self.clock)
        if settings.node_id and not self.db.is_sqlite:  # issue 23: one line per queue, shared
            self.queue_engine.shared = SqlQueueFloor(self.db, settings.node_id)
        # Issue 18: `voice_calls` (below) is what an agent's work item shows of its voice call;
        # the agent's callback action uses `callbacks` (below); `work_items` is the WorkRouter
        # voice calls are routed with. One node runs its timers
        # (`serve`'s workers).
        self.work_items = WorkItemService(
            self.uow,
            self.clock,
            queue_engine=self.queue_engine,
            voice_calls=lambda: self.voice_calls,
            callbacks=lambda: self.callbacks,
            users=AccountUsers(self.lookups),
            public_url=settings.resolved_public_url(),
            secret_key=settings.resolved_secret_key,
            reads=self.lookups,
        )
        if settings.node_id and not self.db.is_sqlite:  # issue 23: the nodes route in turn
            self.work_items.shared = SqlRouterLock(self.db)
        self.changes: PgListener | None = None  # issue 23: other nodes' changes heard at once
        if settings.node_id and not self.db.is_sqlite:
            self.changes = PgListener(self.db.url)
            self.changes.on(WORK_ITEMS_CHANNEL, self.work_items.notified)
            self.changes.on(AGENT_STATE_CHANNEL, self.queue_engine.notified)
        # Per trunk (telephony setup): deposits, drops and devices' calls out share its limits.
        self.trunk_pacer = Pacer()
        # Voicemails for a team (issue 18): admitted where messages are stored, run by the
        # sequence worker of the process that serves the API; against a connector's API over
        # HTTP, or afterbeep's own (`sequence_targets.local`, set where it exists).
        self.sequence_policy = RetryPolicy(
            max_attempts=settings.cc_max_attempts,
            base_seconds=settings.cc_retry_base_seconds,
            transcript_wait_seconds=settings.cc_transcript_wait_seconds,
            transcript_poll_seconds=min(15.0, settings.cc_idle_seconds * 3),
        )
        self.sequence_admission = SequenceAdmission(
            self.clock, self.sequence_policy, on_queued=self._sequence_queued
        )
        self.sequence_targets = SequenceTargets(self.uow, self._connector_api)
        self.sequence_worker: SequenceWorker | None = None
        self._connector_client: httpx.AsyncClient | None = None
        # The agent's callback action (issue 18): each result is recorded on the voice call.
        self.callbacks = SipCallbacks(
            CallbackPlanner(self.lookups, HostGuard(settings.network_policy())),
            RegistrationDirectory(self.lookups, self.clock),
            lambda: self.telephony,
            lambda: self.ringer,
            self.trunk_pacer,
            self.clock,
            CallbackRecords(self.uow, self.clock),
            agent_ring_seconds=settings.callback_agent_ring_seconds,
            customer_ring_seconds=settings.callback_customer_ring_seconds,
        )
        # The representatives' chain (issue 18): `telephony_api` is the Telephony API's use
        # cases, which `LocalTelephonyApi` runs in process; it routes with the work items'
        # engine; `voice_calls` reads voice calls for work items.
        self.work_router: WorkRouter | None = self.work_items
        self.telephony_api = TelephonyApiService(
            self.uow, self.clock, lambda: self.work_router, settings.default_region
        )
        self.voice_calls: VoiceCallReader = SqlVoiceCallReader(
            unit_of_work_factory(self.db, readonly=True), settings.default_region
        )
        self.sequence_targets.local = LocalTargets(self.uow, self.telephony_api)

    async def start(self, *, workers: bool = True, postcall_process: bool = False) -> None:
        """Open storage and the database and build the services; with `workers`, also start the
        outbox dispatchers, the spool recovery, SIP and the delivery engine. With
        `postcall_process`, finished recordings are stored, and emails sent, by a child process
        (`afterbeep.postcall`) instead of on this event loop."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        await self.db.migrate()
        self.queue_engine.start()
        if self.changes is not None:
            await self.changes.start()
        s = self.settings
        self.store = await open_store(
            s.resolved_storage_url(),
            self.data_dir,
            s.s3_endpoint,
            s.s3_region,
            s.s3_access_key,
            s.s3_secret_key.get_secret_value() if s.s3_secret_key else None,
        )
        self.dispatcher = WebhookDispatcher(
            self.uow,
            self.clock,
            timeout=s.webhook_timeout_seconds,
            max_attempts=s.webhook_max_attempts,
            policy=s.network_policy(),
        )
        self.email_dispatcher = EmailDispatcher(
            self.uow,
            self.store,
            self.clock,
            SmtpSender(s.smtp()),
            from_addr=s.smtp_from,
            public_url=s.resolved_public_url(),
            secret_key=s.resolved_secret_key(),
        )
        (self.data_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.deposits = DepositService(
            self.uow,
            self.store,
            self.clock,
            public_url=s.resolved_public_url(),
            secret_key=s.resolved_secret_key(),
            tmp_dir=self.data_dir / "tmp",
            on_email_queued=self._email_queued,
            transcription=self.transcription,
            email_wait_transcript_seconds=s.email_wait_transcript_seconds,
            sequence=self.sequence_admission,
            message_waiting=self.mwi,
        )
        self.spool = Spool(spool_directory(self.data_dir, s.node_id))
        self.spool_worker = SpoolWorker(self.spool, self.deposits, self.clock)
        if workers and s.node_id:
            # A node's own spool: no `afterbeep spool recover` may take it while the node runs.
            self.spool_lock = SpoolLock(self.spool.directory).acquire()
        if workers:
            self.idempotency_sweeper.start()
            self.trash_purger = TrashPurger(
                MessageService(self.uow, self.store, self.clock, message_waiting=self.mwi)
            )
            self.trash_purger.start()
            await self.dispatcher.start()
            if postcall_process:
                await self.spool_worker.recover(closed=False)
                self.postcall = PostCallProcess(on_mailbox_changed=self.mwi.mailbox_changed)
                await self.postcall.start()
            else:
                await self.email_dispatcher.start()
                await self.start_transcription()
                await self.spool_worker.recover()
            await self.start_telephony()
            if s.delivery_enabled:
                await self.start_delivery()
            await self.start_work_router()
            await self.start_sequence()

    async def start_work_router(self) -> WorkItemService:
        """Load the open work items and run their timers (offer timeouts, overflow, TTL)."""
        await self.work_items.start()
        return self.work_items

    @property
    def handoff(self) -> SpoolHandoff:
        """Where calls hand their finished recordings."""
        if self.postcall is not None:
            return self.postcall
        if self.spool_worker is None:
            raise RuntimeError("Runtime.start() must run first")
        return self.spool_worker

    async def start_transcription(self) -> TranscriptionWorker:
        """The transcription worker of this process, with its engine (the model is loaded here
        only: under `serve`, in the post-call process)."""
        if self.store is None:
            raise RuntimeError("Runtime.start() must run first")
        s = self.settings
        engine: TranscriptionEngine | None = None
        if s.transcribe:
            try:
                engine = self._engine_factory(s)
            except TranscriptionUnavailable as exc:
                log.error("transcription unavailable: %s", exc)
                engine = _UnavailableEngine(str(exc) or "no model")
        self.transcription_worker = TranscriptionWorker(
            self.uow,
            self.store,
            self.clock,
            engine,
            concurrency=s.transcribe_concurrency,
            reclaim_on_start=self.db.is_sqlite,
            on_message_final=self._message_final,
        )
        await self.transcription_worker.start()
        return self.transcription_worker

    def _transcription_queued(self) -> None:
        if self.postcall is not None:
            self.postcall.wake_transcription()
        elif self.transcription_worker is not None:
            self.transcription_worker.notify()

    def _message_final(self) -> None:
        """A message's transcript is written (or failed): its email, and a team's sequence."""
        self._email_queued()
        self._sequence_queued()

    def _sequence_queued(self) -> None:
        if self.sequence_worker is not None:
            self.sequence_worker.notify()

    def sequence(self) -> VoicemailSequence:
        return VoicemailSequence(
            self.uow,
            self.clock,
            self.sequence_targets,
            public_url=self.settings.resolved_public_url(),
            policy=self.sequence_policy,
        )

    async def start_sequence(self) -> SequenceWorker:
        """The worker that runs the seed 002 sequence of team mailboxes' messages."""
        if self.sequence_worker is None:
            self.sequence_worker = SequenceWorker(
                self.uow,
                self.sequence(),
                self.clock,
                idle_seconds=self.settings.cc_idle_seconds,
                reclaim_on_start=self.db.is_sqlite,
            )
            await self.sequence_worker.start()
        return self.sequence_worker

    def _connector_api(self, connector: Connector, key_pem: str, observer: Observer) -> TelephonyApi:
        from afterbeep.connectors.http import HttpTelephonyApi, http_client

        if self._connector_client is None:
            self._connector_client = http_client(self.settings.network_policy())
        return HttpTelephonyApi(
            connector, key_pem, self._connector_client, self.clock, observer=observer
        )

    def _email_queued(self) -> None:
        if self.postcall is not None:
            self.postcall.wake_email()
        elif self.email_dispatcher is not None:
            self.email_dispatcher.notify()

    def call_router(self) -> CallRouter:
        """Routing look-ups run on the direct read-only units of work: an INVITE never queues
        behind writes, nor (on SQLite) behind aiosqlite's thread hops."""
        numbers = NumberService(self.lookups, self.clock, self.settings.default_region)
        return CallRouter(self.lookups, numbers, self.routes, self.clock)

    def inbound_calls(self) -> InboundCalls:
        """Numbers → mailboxes → the deposit script (the default router of the SIP service)."""
        if self.store is None or self.spool is None or self.spool_worker is None or self.deposits is None:
            raise RuntimeError("Runtime.start() must run first")
        return InboundCalls(
            self.call_router(),
            self.store,
            self.spool,
            self.handoff,
            self.deposits,
            self.clock,
            silence_threshold=self.settings.silence_threshold,
            queue_engine=self.queue_engine,
            registrar=self.registrar,
            ringer=self.ringer,
            directory=RegistrationDirectory(self.lookups, self.clock),
            outside=OutsideCalls(
                DeviceOutbound(self.lookups, self.settings.default_region),
                lambda: self.telephony,
                lambda: self.ringer,
                self.trunk_pacer,
            ),
            phone_menu=self.phone_menu_service(),
        )

    def phone_menu_service(self) -> PhoneMenuService:
        """The owner's voicemail by phone (`*97`, `*98`, `voicemail_main`)."""
        if self.store is None:
            raise RuntimeError("Runtime.start() must run first")
        s = self.settings
        tmp = self.data_dir / "tmp"
        media = MediaService(
            self.uow, self.store, self.clock, s.max_upload_mb * 1024 * 1024, tmp,
            s.max_media_seconds, s.media_quota_mb * 1024 * 1024,
        )  # fmt: skip
        policy = PinLockoutPolicy(
            max_failures=s.pin_max_failures, first_lock=timedelta(seconds=s.pin_lock_seconds)
        )
        return PhoneMenuService(
            self.uow,
            self.store,
            self.clock,
            MailboxService(self.uow, self.store, self.clock),
            MessageService(self.uow, self.store, self.clock, message_waiting=self.mwi),
            media,
            policy,
            on_email_queued=self._email_queued,
            tmp_dir=tmp,
            on_copied=self.deposits.copied if self.deposits is not None else None,
        )

    def _amd_words(self) -> dict[str, Any]:
        """The drop detector listening to first turns' words (AFTERBEEP_AMD_WORDS), on a pool of
        AFTERBEEP_AMD_WORDS_CONCURRENCY threads in this process; {} (timing alone) when off."""
        s = self.settings
        language = cue_language(s.amd_language)
        if not s.amd_words or language is None:
            if s.amd_words:
                log.error("AMD by words is off: no cue list for AFTERBEEP_AMD_LANGUAGE=%s", s.amd_language)
            return {}
        from afterbeep.asr.turns import TurnTranscriber, shared_engine

        self.amd_words = TurnTranscriber(
            shared_engine(s.asr_model_dir),
            concurrency=s.amd_words_concurrency,
            language=language,
        )
        self.amd_words.warm()  # a model that cannot load fails each turn: timing decides
        cues = load_cues(language)
        return {"detector": lambda: MachineDetector(cues=cues), "words": self.amd_words}

    def delivery(self) -> DeliveryWorker:
        """The ringless delivery worker (built once; `start_delivery` starts it)."""
        if self.delivery_worker is None:
            if self.store is None or self.deposits is None or self.dispatcher is None:
                raise RuntimeError("Runtime.start() must run first")
            s = self.settings
            pacer = self.trunk_pacer  # per trunk, for deposits and drops (both calls of a two-call drop)
            depositor = SipDepositor(
                lambda: self.telephony, pacer, ring_timeout=s.delivery_ring_timeout_seconds
            )
            dropper = SipDropper(
                lambda: self.telephony, pacer, ring_timeout=s.delivery_ring_timeout_seconds,
                **self._amd_words(),
            )
            service = DeliveryService(
                SqlDeliveryStore(self.db),
                self.store,
                self.clock,
                self.call_router(),
                self.deposits,
                depositor,
                on_event=self.dispatcher.notify,
                dropper=dropper,
            )
            lease = lease_for(s.delivery_ring_timeout_seconds)
            self.delivery_worker = DeliveryWorker(
                SqlDeliveryStore(self.db),
                service,
                self.clock,
                lease=lease,
                batch_size=s.delivery_batch_size,
                idle_seconds=s.delivery_idle_seconds,
                stop_grace=s.drain_seconds,
                limits=self.trunk_limits,
                start_within=START_WITHIN,
                reclaim=self._release_send_leases if self.db.engine.dialect.name == "sqlite" else None,
            )
        return self.delivery_worker

    async def trunk_limits(self, setup_id: str) -> TrunkLimits | None:
        """The pacing of a telephony setup, as the delivery worker bounds its claims by it."""
        async with unit_of_work_factory(self.db, readonly=True)() as uow:
            setup = await uow.telephony_setups.get_any(setup_id)
        if setup is None:
            return None
        return TrunkLimits(setup.max_calls_per_second, setup.max_concurrent_calls)

    async def _release_send_leases(self, now: datetime) -> int:
        async with self.uow() as uow:
            return await uow.voicemail_sends.release_leases(now)

    async def start_delivery(self) -> DeliveryWorker:
        worker = self.delivery()
        self.voicemail_accepted.append(worker.notify)
        await worker.recover()
        await worker.start()
        return worker

    def receiving_deposits(
        self, fallback: Router, quick_fallback: QuickRouter | None = None
    ) -> Router:
        """`fallback` behind the SIP deposit receiver (AFTERBEEP_DEPOSIT_PEERS)."""
        if self.spool is None or self.spool_worker is None:
            raise RuntimeError("Runtime.start() must run first")
        s = self.settings
        self.deposit_receiver = DepositReceiver(
            fallback,
            self.call_router(),
            self.spool,
            self.handoff,
            self.clock,
            parse_peers(s.deposit_peers),
            users=parse_users(s.deposit_users.get_secret_value()),
            silence_threshold=s.silence_threshold,
            quick_fallback=quick_fallback,
        )
        return self.deposit_receiver.route

    async def start_telephony(
        self, router: Router | None = None, quick_router: QuickRouter | None = None
    ) -> TelephonyServer:
        """SIP on AFTERBEEP_SIP_ADDR (UDP and TCP) and RTP in AFTERBEEP_RTP_PORT_MIN/MAX,
        routing calls by number to mailboxes unless another router is given."""
        s = self.settings
        ua_config, media_config = telephony_configs(
            s.sip_addr, s.sip_advertise, s.rtp_port_min, s.rtp_port_max
        )
        # Never hoard more than an eighth of the range: outbound calls and other processes
        # sharing it still find free pairs.
        prebound = min(PREBOUND_RTP_PAIRS, (s.rtp_port_max - s.rtp_port_min + 1) // 2 // 8)
        media_config = replace(
            media_config, inactivity_timeout=s.rtp_timeout_seconds, prebound=prebound
        )
        media_config = replace(media_config, native_receive=s.media_receive == "native")
        media_config = replace(media_config, pacer=s.media_pacer)
        ua_config = replace(ua_config, network_policy=s.network_policy())
        ua_config = replace(ua_config, trusted_proxies=parse_networks(s.sip_trusted_proxies))
        registrar = self.registrar = self.make_registrar()
        inbound: InboundCalls | None = None
        if router is None:
            inbound = self.inbound_calls()
            router = self.receiving_deposits(inbound.route, inbound.route_now)
            assert self.deposit_receiver is not None
            quick_router = self.deposit_receiver.quick_route
        server = TelephonyServer(
            ua_config,
            media_config,
            router=router,
            quick_router=quick_router,
            limits=ServerLimits(
                max_calls=s.max_calls,
                drain_timeout=s.drain_seconds,
                admission=AdmissionPolicy(
                    loop_lag=s.admission_lag_ms / 1000,
                    prompt_late=s.admission_prompt_late_ms / 1000,
                    calm=s.admission_calm_seconds,
                    busy_target=s.admission_loop_busy_percent / 100,
                    answers_per_burst=s.admission_answers_per_100ms,
                    cpu_target=s.admission_cpu_percent / 100,
                    cpu_wait=s.admission_cpu_wait_percent / 100,
                ),
            ),
            call_settings=CallSettings(default_region=s.default_region),
        )
        try:
            await server.start()
        except SipTransportError as exc:
            raise CannotListen(s.sip_addr, "SIP", _os_reason(exc)) from exc
        self.telephony = server
        server.ua.on_register = registrar.on_register
        registrar.start()
        self.mwi_notifier = MwiNotifier(
            SqlMwiStore(self.db),
            SipNotifySender(server.ua, server.ua.config.user_agent),
            self.clock,
            server.ua.advertised_host,
            authenticator=registrar,
            min_expires=s.sip_min_expires,
            unsolicited=s.sip_mwi_unsolicited,
            remember_sent=not s.node_id,
        )
        registrar.on_registered = self.mwi_notifier.device_registered
        server.ua.on_subscribe = self.mwi_notifier.on_subscribe
        self.mwi.target = self.mwi_notifier.mailbox_changed
        await self.mwi_notifier.start()
        if self.ringer is None:
            self.ringer = SipRinger(server)
        if inbound is not None:
            in_call = self.ringer.in_call if isinstance(self.ringer, SipRinger) else None
            inbound.use_ringer(self.ringer, in_call)
        return server

    def make_registrar(self) -> Registrar:
        """REGISTER answered from the database (every node sees every registration)."""
        s = self.settings
        policy = LockoutPolicy(
            max_failures=s.sip_auth_max_failures,
            lockout=timedelta(seconds=s.sip_auth_lockout_seconds),
        )
        store = SqlRegistrarStore(unit_of_work_factory(self.db, direct=True), self.lookups, policy)
        return Registrar(
            store,
            self.clock,
            s.sip_realm,
            s.resolved_secret_key(),
            policy=policy,
            reap_every=s.sip_reap_seconds,
            min_expires=s.sip_min_expires,
            algorithms=s.sip_digest_algorithms.split(","),
        )

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            # Imported here: the processes that serve no HTTP (the post-call worker, the CLI's
            # commands) do not load FastAPI and the 189 routes.
            from afterbeep.api.app import create_app
            from afterbeep.web.app import install as install_web
            from afterbeep.web.session import WebServices

            services = self.api_services()
            web = WebServices(
                members=services.members,
                mailboxes=services.mailboxes,
                messages=services.messages,
                clock=self.clock,
                secret_key=services.secret_key,
                closing=lambda: self._drain_deadline is not None,
                live_messages=MessageService(
                    unit_of_work_factory(self.db, readonly=True), services.store, self.clock
                ),
                api=services,
            )
            self._app = create_app(
                services, self.idempotency, self.readiness, pages=lambda app: install_web(app, web)
            )
        return self._app

    def api_services(self) -> ApiServices:
        from afterbeep.api.deps import ApiServices

        if self.store is None:
            raise RuntimeError("Runtime.start() must run first")
        s = self.settings
        tmp = self.data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        media = MediaService(
            self.uow, self.store, self.clock, s.max_upload_mb * 1024 * 1024, tmp,
            s.max_media_seconds, s.media_quota_mb * 1024 * 1024,
        )  # fmt: skip
        guard = HostGuard(s.network_policy())
        return ApiServices(
            accounts=self.accounts,
            media=media,
            mailboxes=MailboxService(self.uow, self.store, self.clock),
            messages=MessageService(self.uow, self.store, self.clock, message_waiting=self.mwi),
            numbers=NumberService(self.uow, self.clock, s.default_region),
            webhooks=WebhookService(self.uow, self.clock, s.allowed_webhook_hosts(), guard),
            notifications=NotificationService(self.uow, self.clock),
            ringless=RinglessService(
                self.uow,
                self.clock,
                media,
                s.default_region,
                self._voicemail_accepted,
                lookups=self.lookups,
                sends=unit_of_work_factory(self.db, direct=True),
                guard=guard,
            ),
            campaigns=CampaignService(
                self.uow, self.clock, s.default_region, self._voicemail_accepted
            ),
            flows=FlowService(self.uow, self.clock, media, self.speech),
            store=self.store,
            secret_key=s.resolved_secret_key(),
            public_url=s.resolved_public_url(),
            max_upload_bytes=s.max_upload_mb * 1024 * 1024,
            max_body_bytes=s.max_body_kb * 1024,
            senders=self.senders(),
            admin_key_hash=admin_key_hash(s),
            schedules=ScheduleService(self.uow, self.clock),
            members=self.members,
            transcripts=TranscriptService(self.uow, self.transcription),
            ring_groups=RingGroupService(self.uow, self.clock, AccountUsers(self.lookups)),
            queues=QueueService(self.uow, self.clock, self.queue_engine, AccountUsers(self.lookups)),
            users=UserService(self.uow, self.clock, s.sip_realm),
            connectors=ConnectorService(self.uow, self.clock, guard),
            team_deliveries=TeamDeliveries(self.uow),
            telephony=self.telephony_api,
            call_centers=CallCenterService(self.uow, self.clock, s.default_region),
            telephony_jwt_audience=s.telephony_jwt_audience,
            telephony_jwt_max_ttl=s.telephony_jwt_max_ttl,
            work_items=self.work_items,
        )

    def local_telephony_api(self, account_id: str, call_center_id: str) -> TelephonyApi:
        """The Telephony API of one call center in process (the internal voicemail sequence)."""
        return LocalTelephonyApi(self.telephony_api, account_id, call_center_id)

    def senders(self) -> SenderNumberService:
        return SenderNumberService(self.uow, self.clock, self.settings.default_region)

    def _voicemail_accepted(self) -> None:
        for wake in self.voicemail_accepted:
            wake()

    async def readiness(self) -> list[str]:
        problems: list[str] = []
        if self._drain_deadline is not None:
            problems.append("draining")  # a proxy or balancer sends new work elsewhere
        try:
            async with self.db.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            problems.append("database")
        try:
            if self.store is not None:
                await self.store.check()
        except Exception:
            problems.append("storage")
        return problems

    def begin_drain(self) -> float:
        """Take no new call or send from now on; the calls in progress, inbound and outbound,
        have AFTERBEEP_DRAIN_SECONDS from the first call to end (`stop()` enforces it).
        Returns that deadline (event loop time)."""
        if self._drain_deadline is None:
            loop = asyncio.get_running_loop()
            self._drain_deadline = loop.time() + self.settings.drain_seconds
        if self.telephony is not None:
            self.telephony.drain()
        if self.delivery_worker is not None:
            self.delivery_worker.stop_claiming()
        self.callbacks.drain()
        self.work_items.close_feeds()  # open event streams would hold the HTTP server's stop
        return self._drain_deadline

    async def stop(self) -> None:
        """Inbound and outbound calls drain together, until one deadline (`begin_drain`):
        the delivery worker hangs up what it still runs then (its attempts recorded
        interrupted and released at once), then the SIP service ends its own calls and closes."""
        loop = asyncio.get_running_loop()
        deadline = self.begin_drain()
        if self.delivery_worker is not None:
            await self.delivery_worker.stop(max(0.0, deadline - loop.time()))
        if self.sequence_worker is not None:
            await self.sequence_worker.stop()
        if self._connector_client is not None:
            await self._connector_client.aclose()
        await self.callbacks.stop(max(0.0, deadline - loop.time()))  # they ran meanwhile
        await self.work_items.stop()
        await self.queue_engine.stop()
        if self.changes is not None:
            await self.changes.stop()
        if self.telephony is not None:
            await self.telephony.stop(drain_timeout=max(0.0, deadline - loop.time()))
        if self.registrar is not None:
            await self.registrar.stop()
        if self.mwi_notifier is not None:
            await self.mwi_notifier.stop()
        if self.spool_worker is not None:
            await self.spool_worker.stop()
        if self.postcall is not None:
            await self.postcall.stop()
        if self.transcription_worker is not None:
            await self.transcription_worker.stop()
        if self.amd_words is not None:
            self.amd_words.close()
        if self.email_dispatcher is not None:
            await self.email_dispatcher.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.idempotency_sweeper.stop()
        if self.trash_purger is not None:
            await self.trash_purger.stop()
        if self.store is not None:
            await self.store.close()
        await self.db.close()
        if self.spool_lock is not None:
            self.spool_lock.release()
