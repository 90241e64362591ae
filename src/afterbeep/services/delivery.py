"""Delivering one ringless voicemail send: the use case the delivery workers run per claim.

For a claimed send (held under a lease), in order:

1. the rules (`domain.ringless.check_rules`): a stopping rule ends it `skipped` with the reason
   and no call; outside the calling window (or before `send_at`) it is held: it stays
   `accepted`, due again when the window opens;
2. the attempt is recorded as started (attempt number, method, time) before anything goes out,
   so a crash mid-delivery still counts it, and the send comes back when the lease runs out;
3. **local deposit** when the recipient is a number of this afterbeep routed to a mailbox: the
   send's telephony audio is stored straight into that mailbox (`DepositService.finalize`), no
   call; else **SIP deposit** through the `DepositDialer` port: an INVITE to the setup's
   `deposit_uri` with the chosen sender as caller id, the whole audio played, then BYE;
   a send accepted with its rendition pending has it made here first (`Renditions`: once per
   media); when the original does not decode in full the send ends `failed` with
   `audio could not be decoded` (no retry);
4. the outcome is recorded with the attempt (SIP code, duration): `delivered`; or, for busy,
   no answer, 5xx, time-outs and early hang-ups, a retry after the use case's backoff until
   `max_attempts`; otherwise (or then) `failed` with the last reason. Every status change
   publishes `voicemail.status` in the same transaction.

Both deposit methods name the message after the send (`rvm_<send id>`), and the receiving side
stores a message once per name, so a retry after a crash never deposits twice.

**Drops** (sends of kind `drop`) run through the same claim, rules, attempt log and retries,
with one method: a call to the recipient through the use case's trunk by the `DropDialer`
port (detection, then the audio after the beep, only to a machine). The outcome maps to the
status by `domain.drops.drop_step`, and every status change publishes `drop.status`. A ringless
send for which no deposit method applies (the recipient is not local and the setup has no
`deposit_uri`) is delivered as a drop when its use case names a fallback drop use case: the
fallback's trunk, sender rules and timings, the ringless send's attempts and retry rules
(`domain.drops.fallback_step`); left in voicemail, it is `delivered` with method `drop`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain import ringless as rules
from afterbeep.domain.campaigns import CAMPAIGN_CANCELED, CampaignStatus
from afterbeep.domain.clock import Clock, iso
from afterbeep.domain.drops import (
    DETECTION_LIMIT_S,
    DROP_STATUS_EVENT,
    DropFailure,
    DropOutcome,
    DropResult,
    drop_status_payload,
    drop_step,
    fallback_step,
)
from afterbeep.domain.errors import InvalidAudio, InvalidInput
from afterbeep.domain.messages import EndedBy, RecordedCall
from afterbeep.domain.phone import mask
from afterbeep.domain.ringless import (
    Consent,
    DeliveryMethod,
    DropTechnique,
    RuleAction,
    SendKind,
    SendStatus,
    TelephonySetup,
    UseCase,
    VoicemailSend,
)
from afterbeep.services.deposits import DepositService
from afterbeep.services.media import Renditions
from afterbeep.services.ports.drops import DropDialer, DropRequest
from afterbeep.services.ports.storage import ObjectStore, StorageError
from afterbeep.services.routing import CallRouter, VoicemailRoute

Audio = npt.NDArray[np.int16]

log = logging.getLogger("afterbeep.delivery")

STATUS_EVENT = "voicemail.status"
DEPOSIT_HEADER = ("X-Afterbeep-Deposit", "1")
SEND_HEADER = "X-Afterbeep-Send"
RETRYABLE_CODES = frozenset({408, 480, 486, 487, 600})
UNDECODABLE = "audio could not be decoded"


def retryable(code: int | None) -> bool:
    """Busy, no answer, time-outs, server errors and dropped calls (None) are worth another try."""
    return code is None or code in RETRYABLE_CODES or 500 <= code <= 599


def message_call_id(send_id: str) -> str:
    """The call id of the message a send deposits (the receiver derives the same one)."""
    return f"rvm_{send_id}"


# -- ports ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    send_id: str
    setup_id: str
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class Fallback:
    """The drop use case a ringless use case falls back to, with its setup and trunk password."""

    use_case: UseCase
    setup: TelephonySetup
    password: str | None


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What one attempt needs, read in one transaction."""

    send: VoicemailSend
    use_case: UseCase
    setup: TelephonySetup
    audio_key: str | None
    suppressed: bool
    consent: Consent | None
    attempts_in_period: int
    password: str | None
    fallback: Fallback | None = None
    campaign_status: CampaignStatus | None = None
    original_key: str | None = None  # to render the telephony audio from when it is pending
    media_duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    delivered: bool
    sip_code: int | None
    reason: str | None
    duration_ms: int
    retry: bool = False
    outcome: str | None = None  # the attempt's outcome when not delivered/not_delivered (drops)


@dataclass(frozen=True, slots=True)
class SipDeposit:
    send_id: str
    setup_id: str
    calls_per_second: float
    max_concurrent_calls: int
    to_uri: str
    from_uri: str
    username: str | None
    password: str | None
    outbound_proxy: str | None
    headers: tuple[tuple[str, str], ...]
    audio: Audio = field(repr=False)


class DepositDialer(Protocol):
    """Places a SIP deposit and reports how it went (never raises for call outcomes)."""

    async def sip_deposit(self, deposit: SipDeposit) -> AttemptResult: ...


class DeliveryStore(Protocol):
    """The send rows under a lease. Every write is applied only while `lease_until` still
    holds the row (False otherwise: another worker owns it now)."""

    async def claim_due(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int,
        exclude_setups: Collection[str] = (),
    ) -> list[Claim]:
        """Due sends, oldest first, leaving out those of `exclude_setups` (trunks already busy)."""
        ...

    async def release(self, claims: Sequence[Claim]) -> None: ...

    async def next_claimable_at(self) -> datetime | None: ...

    async def load(self, send_id: str, now: datetime) -> DeliveryContext | None: ...

    async def hold(self, claim: Claim, until: datetime) -> bool: ...

    async def pause(self, claim: Claim) -> bool:
        """Set the send aside as `paused` (its campaign is paused) and drop the lease."""
        ...

    async def begin_attempt(
        self, claim: Claim, number: int, method: DeliveryMethod, now: datetime
    ) -> str | None: ...

    async def conclude(
        self,
        claim: Claim,
        *,
        status: SendStatus,
        now: datetime,
        attempt_id: str | None = None,
        attempt: AttemptResult | None = None,
        method: DeliveryMethod | None = None,
        reason: str | None = None,
        next_attempt_at: datetime | None = None,
        event: dict[str, object] | None = None,
        event_name: str = STATUS_EVENT,
        detection: DropResult | None = None,
    ) -> bool:
        """`detection`: a drop's answered_by, detection_ms and beep_ms to keep on the send."""
        ...


# -- the use case --------------------------------------------------------------


class DeliveryService:
    def __init__(
        self,
        store: DeliveryStore,
        objects: ObjectStore,
        clock: Clock,
        router: CallRouter,
        deposits: DepositService,
        dialer: DepositDialer | None,
        *,
        on_event: Callable[[], None] | None = None,
        dropper: DropDialer | None = None,
    ) -> None:
        self._store = store
        self._objects = objects
        self._clock = clock
        self._router = router
        self._deposits = deposits
        self._dialer = dialer
        self._dropper = dropper
        self._on_event = on_event
        self.renditions = Renditions(objects)

    async def attempt(self, claim: Claim) -> SendStatus | None:
        """Run one claimed send as the module docstring says; the status it is left in (None
        when it was not ours any more or is gone)."""
        now = self._clock.now()
        ctx = await self._store.load(claim.send_id, now)
        if ctx is None or ctx.send.status is not SendStatus.ACCEPTED:
            await self._store.release([claim])
            return None
        send, use_case = ctx.send, ctx.use_case
        # A campaign paused or cancelled while this send was in flight, or waiting for a retry.
        if ctx.campaign_status is CampaignStatus.CANCELED:
            return await self._conclude(
                claim, send, SendStatus.SKIPPED, now, reason=CAMPAIGN_CANCELED
            )
        if ctx.campaign_status is CampaignStatus.PAUSED:
            return SendStatus.PAUSED if await self._store.pause(claim) else None
        decision = rules.check_rules(
            send, use_case, now, ctx.suppressed, ctx.consent, ctx.attempts_in_period
        )
        if decision.action is RuleAction.SKIP:
            reason = decision.reason.value if decision.reason else "skipped"
            return await self._conclude(claim, send, SendStatus.SKIPPED, now, reason=reason)
        if decision.action is RuleAction.HOLD:
            assert decision.until is not None
            await self._store.hold(claim, decision.until)
            log.info("send %s held until %s", send.id, iso(decision.until))
            return SendStatus.ACCEPTED
        if send.attempts >= use_case.max_attempts:
            # Its last attempt was cut short by a crash: no outcome is known, and none is left.
            return await self._conclude(
                claim, send, SendStatus.FAILED, now, reason="interrupted; no attempts left"
            )

        if send.kind is SendKind.DROP:
            return await self._attempt_drop(claim, ctx, now, fallback=False)
        route = await self._router.route(send.to_e164)
        if not isinstance(route, VoicemailRoute) and not ctx.setup.offers_deposit:
            if ctx.fallback is not None:
                return await self._attempt_drop(claim, ctx, now, fallback=True)
            return await self._conclude(
                claim, send, SendStatus.FAILED, now, reason="no deposit method for this recipient"
            )
        method = (
            DeliveryMethod.LOCAL_DEPOSIT
            if isinstance(route, VoicemailRoute)
            else DeliveryMethod.SIP_DEPOSIT
        )
        number = send.attempts + 1
        attempt_id = await self._store.begin_attempt(claim, number, method, now)
        if attempt_id is None:
            return None
        try:
            audio = await self._audio(ctx)
        except InvalidAudio:
            return await self._undecodable(claim, send, attempt_id, method)
        if audio is None:
            result = AttemptResult(False, None, "audio unavailable", 0, retry=True)
        elif isinstance(route, VoicemailRoute):
            result = await self._local_deposit(send, route, audio)
        else:
            result = await self._sip_deposit(ctx, audio)
        ended = self._clock.now()

        if result.delivered:
            return await self._conclude(
                claim,
                send,
                SendStatus.DELIVERED,
                ended,
                attempt_id=attempt_id,
                attempt=result,
                method=method,
            )
        reason = result.reason or "not delivered"
        if result.retry and number < use_case.max_attempts:
            delay = rules.retry_delay(number, use_case.retry_backoff_seconds)
            await self._store.conclude(
                claim,
                status=SendStatus.ACCEPTED,
                now=ended,
                attempt_id=attempt_id,
                attempt=result,
                method=method,
                reason=reason,
                next_attempt_at=ended + delay,
            )
            log.info("send %s attempt %d: %s; retry in %s", send.id, number, reason, delay)
            return SendStatus.ACCEPTED
        return await self._conclude(
            claim,
            send,
            SendStatus.FAILED,
            ended,
            attempt_id=attempt_id,
            attempt=result,
            method=method,
            reason=reason,
        )

    async def _conclude(
        self,
        claim: Claim,
        send: VoicemailSend,
        status: SendStatus,
        now: datetime,
        *,
        attempt_id: str | None = None,
        attempt: AttemptResult | None = None,
        method: DeliveryMethod | None = None,
        reason: str | None = None,
        detection: DropResult | None = None,
    ) -> SendStatus | None:
        changed = replace(
            send,
            status=status,
            failure_reason=reason if status is SendStatus.FAILED else None,
            skip_reason=reason if status is SendStatus.SKIPPED else None,
        )
        if detection is not None:
            changed = replace(
                changed,
                answered_by=detection.answered_by,
                detection_ms=detection.detection_ms,
                beep_ms=detection.beep_ms,
            )
        event: dict[str, object]
        if send.kind is SendKind.DROP:
            event, event_name = drop_status_payload(changed), DROP_STATUS_EVENT
        else:
            event, event_name = rules.status_payload(changed), STATUS_EVENT
        done = await self._store.conclude(
            claim,
            status=status,
            now=now,
            attempt_id=attempt_id,
            attempt=attempt,
            method=method,
            reason=reason,
            event=event,
            event_name=event_name,
            detection=detection,
        )
        if not done:
            log.warning("send %s: lease lost before its outcome (%s) was recorded", send.id, status)
            return None
        log.info("send %s to %s: %s %s", send.id, mask(send.to_e164), status.value, reason or "")
        if self._on_event is not None:
            self._on_event()
        return status

    async def _attempt_drop(
        self, claim: Claim, ctx: DeliveryContext, now: datetime, *, fallback: bool
    ) -> SendStatus | None:
        """One drop call: of a drop send, or of a ringless send through its fallback use case."""
        send, use_case = ctx.send, ctx.use_case
        number = send.attempts + 1
        attempt_id = await self._store.begin_attempt(claim, number, DeliveryMethod.DROP, now)
        if attempt_id is None:
            return None
        try:
            audio = await self._audio(ctx)
        except InvalidAudio:
            return await self._undecodable(claim, send, attempt_id, DeliveryMethod.DROP)
        if audio is None:
            result = DropResult(DropOutcome.FAILED, reason="audio unavailable")
        else:
            result = await self._place_drop(ctx, audio, fallback=fallback)
        ended = self._clock.now()
        step = (fallback_step if fallback else drop_step)(result, number, use_case.max_attempts)
        attempt = AttemptResult(
            result.outcome is DropOutcome.LEFT_VOICEMAIL,
            result.sip_code,
            result.reason,
            result.duration_ms,
            retry=step.retry,
            outcome=result.outcome.value,
        )
        if step.retry:
            delay = rules.retry_delay(number, use_case.retry_backoff_seconds)
            await self._store.conclude(
                claim,
                status=SendStatus.ACCEPTED,
                now=ended,
                attempt_id=attempt_id,
                attempt=attempt,
                method=DeliveryMethod.DROP,
                reason=step.reason,
                next_attempt_at=ended + delay,
                detection=result,
            )
            log.info("send %s drop %d: %s; retry in %s", send.id, number, step.reason, delay)
            return SendStatus.ACCEPTED
        return await self._conclude(
            claim,
            send,
            step.status,
            ended,
            attempt_id=attempt_id,
            attempt=attempt,
            method=DeliveryMethod.DROP,
            reason=step.reason,
            detection=result,
        )

    async def _place_drop(self, ctx: DeliveryContext, audio: Audio, *, fallback: bool) -> DropResult:
        if self._dropper is None:
            return DropResult(DropOutcome.FAILED, 503, DropFailure.TRUNK_ERROR.value)
        send = ctx.send
        use_case, setup, password = ctx.use_case, ctx.setup, ctx.password
        sender = send.from_e164
        if fallback:
            assert ctx.fallback is not None
            fb = ctx.fallback
            use_case, setup, password = fb.use_case, fb.setup, fb.password
            try:
                sender = rules.pick_sender(use_case, setup.numbers, send.to_e164, send.attempts)
            except InvalidInput:
                return DropResult(DropOutcome.FAILED, None, "no verified sender in the fallback")
        domain = setup.from_domain or setup.trunk_host
        from_uri = f"sip:{sender}@{domain}"
        request = DropRequest(
            send_id=send.id,
            setup_id=setup.id,
            calls_per_second=setup.max_calls_per_second,
            max_concurrent_calls=setup.max_concurrent_calls,
            to_uri=setup.call_target(send.to_e164),
            from_uri=from_uri,
            username=setup.username,
            password=password,
            outbound_proxy=setup.outbound_proxy,
            headers=(("P-Asserted-Identity", f"<{from_uri}>"),),
            audio=audio,
            technique=send.technique or DropTechnique.TWO_CALL,
            second_call_delay_ms=use_case.second_call_delay_ms,
            first_call_bound_ms=use_case.first_call_bound_ms,
        )
        return await self._dropper.drop(request)

    async def _undecodable(
        self, claim: Claim, send: VoicemailSend, attempt_id: str, method: DeliveryMethod
    ) -> SendStatus | None:
        log.warning("send %s: its audio could not be decoded", send.id)
        return await self._conclude(
            claim,
            send,
            SendStatus.FAILED,
            self._clock.now(),
            attempt_id=attempt_id,
            attempt=AttemptResult(False, None, UNDECODABLE, 0),
            method=method,
            reason=UNDECODABLE,
        )

    async def _audio(self, ctx: DeliveryContext) -> Audio | None:
        """The send's telephony audio (rendered first when pending); None when unavailable.
        Raises `InvalidAudio` when the original does not decode."""
        if ctx.audio_key is None:
            return None
        try:
            if ctx.original_key is None:
                wav = await self._objects.get_bytes(ctx.audio_key)
            else:
                wav = await self.renditions.telephony(
                    ctx.original_key, ctx.audio_key, ctx.media_duration_ms
                )
            pcm, _rate = read_wav_pcm(wav)
        except (StorageError, ValueError):
            log.warning("send %s: its audio is unavailable", ctx.send.id)
            return None
        return pcm

    async def _local_deposit(
        self, send: VoicemailSend, route: VoicemailRoute, audio: Audio
    ) -> AttemptResult:
        if route.full:
            return AttemptResult(False, None, "mailbox full", 0, retry=True)
        mailbox = route.mailbox
        meta = RecordedCall(
            call_id=message_call_id(send.id),
            account_id=mailbox.account_id,
            mailbox_id=mailbox.id,
            caller=send.from_e164,
            caller_name=None,
            callee=send.to_e164,
            started_at=iso(self._clock.now()),
            ended_by=EndedBy.FINISH_KEY.value,
        )
        message = await self._deposits.finalize(meta, audio, recovered=False)
        if message is None:
            return AttemptResult(False, None, "mailbox refused the message", 0)
        return AttemptResult(True, None, None, message.duration_ms)

    async def _sip_deposit(self, ctx: DeliveryContext, audio: Audio) -> AttemptResult:
        if self._dialer is None:
            return AttemptResult(False, 503, "SIP is not running on this node", 0, retry=True)
        setup, send = ctx.setup, ctx.send
        domain = setup.from_domain or setup.trunk_host
        from_uri = f"sip:{send.from_e164}@{domain}"
        headers = (
            ("P-Asserted-Identity", f"<{from_uri}>"),
            *(
                (name, value)
                for name, value in setup.deposit_headers.items()
                if rules.deposit_header_allowed(name, value)
            ),
            DEPOSIT_HEADER,
            (SEND_HEADER, send.id),
        )
        deposit = SipDeposit(
            send_id=send.id,
            setup_id=setup.id,
            calls_per_second=setup.max_calls_per_second,
            max_concurrent_calls=setup.max_concurrent_calls,
            to_uri=setup.deposit_target(send.to_e164),
            from_uri=from_uri,
            username=setup.username,
            password=ctx.password,
            outbound_proxy=setup.outbound_proxy,
            headers=headers,
            audio=audio,
        )
        return await self._dialer.sip_deposit(deposit)


START_WITHIN = timedelta(seconds=60)  # the longest a claimed send may wait for its trunk


def attempt_seconds(ring_timeout: float, max_audio_ms: int = rules.MAX_AUDIO_MS) -> float:
    """The longest one attempt can take once it starts: a drop's second call placed late,
    ringing, listening for the answering machine, then the whole audio."""
    return (
        rules.MAX_SECOND_CALL_DELAY_MS / 1000 + ring_timeout + DETECTION_LIMIT_S + max_audio_ms / 1000
    )


def lease_for(ring_timeout: float, max_audio_ms: int = rules.MAX_AUDIO_MS) -> timedelta:
    """A lease long enough for a send to wait `START_WITHIN` for its trunk, then run one whole
    attempt, with a margin."""
    attempt = timedelta(seconds=attempt_seconds(ring_timeout, max_audio_ms))
    return START_WITHIN + attempt + timedelta(seconds=30)
