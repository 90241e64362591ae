"""A voicemail left for a team becomes a voice call and a work item by itself: the seed 002
sequence (`afterbeep.domain.voicemail_sequence`) run for each message saved to a mailbox that
belongs to a queue.

- `SequenceAdmission.admit` runs in the transaction that tells the owner of a new message
  (`DepositService`): a mailbox with a `queue_id` gets a delivery (`ccr_...`, one per message),
  due at once. It runs wherever messages are stored (the post-call process under `serve`).
- `SequenceWorker` (an `OutboxWorker`, in the process that serves the API) claims due deliveries
  under a lease and runs their steps against a `TelephonyApi` that `Targets` opens: afterbeep's
  own (in process) as the mailbox's call center, or an outside contact center's (a connector).
  Each step done is written with the requests and answers it took before the next one starts,
  so a restart resumes at the first step not done. The transcript step waits (bounded) until the
  message's transcription is over; a transcript written meanwhile makes the delivery due at once
  (`hasten`, from the transcription worker).

A step a far end refuses for good (4xx, a routing error) fails the delivery with the reason; a
retryable one (5xx, 429, transport) is tried again after a backoff, `max_attempts` times in a
row, then fails with the last reason. A failed delivery stays listed (`GET /v1/cc-deliveries`)
with its reason and every request and answer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from afterbeep.domain import voicemail_sequence as seq
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.messages import Message
from afterbeep.domain.voicemail_sequence import (
    Delivery,
    DeliveryStatus,
    Exchange,
    Recording,
    RetryPolicy,
    Step,
)
from afterbeep.notify.outbox import OutboxWorker
from afterbeep.services.contact_center import Json, TelephonyApi, TelephonyApiError
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory
from afterbeep.services.ports.voicemail_sequence import ClaimedDelivery

log = logging.getLogger("afterbeep.voicemail_sequence")

ID_PREFIX = "ccr"
DEFAULT_LEASE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class ApiExchange:
    """One request a `TelephonyApi` made and its answer, as its implementation saw it."""

    method: str
    path: str
    request: Json | None
    status: int | None
    answer: Json | None
    error: str | None
    attempt: int = 1


Observer = Callable[[ApiExchange], None]


@dataclass(frozen=True, slots=True)
class Target:
    """The Telephony API one delivery runs against, as one call center."""

    api: TelephonyApi
    call_center_api_name: str
    fallback_queue: str | None = None  # None: the mailbox's queue


class TargetUnavailable(Exception):
    """The delivery's call center or connector cannot be used (gone, no key...)."""

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Targets(Protocol):
    def open(self, delivery: Delivery, observer: Observer) -> AbstractAsyncContextManager[Target]:
        """The API of the delivery's connector (an outside contact center) or of afterbeep's
        own call center; raises `TargetUnavailable`."""
        ...


class StepRefused(Exception):
    """A step answered in a way the sequence cannot go on from (no voiceCallId, routing errors)."""


class RecordingApi:
    """A `TelephonyApi` that tells `observer` of every call it makes (the in-process API has no
    wire of its own to record)."""

    def __init__(self, inner: TelephonyApi, observer: Observer) -> None:
        self._inner = inner
        self._observer = observer

    async def create_voice_call(self, body: Mapping[str, Any]) -> Json:
        return await self._record("POST", "/voiceCalls", body, self._inner.create_voice_call(body))

    async def update_voice_call(self, key: str, body: Mapping[str, Any]) -> Json:
        call = self._inner.update_voice_call(key, body)
        return await self._record("PATCH", f"/voiceCalls/{key}", body, call)

    async def add_messages(self, vendor_call_key: str, body: Mapping[str, Any]) -> Json:
        call = self._inner.add_messages(vendor_call_key, body)
        return await self._record("POST", f"/voiceCalls/{vendor_call_key}/messages", body, call)

    async def route(self, voice_call_id: str, body: Mapping[str, Any]) -> Json:
        call = self._inner.route(voice_call_id, body)
        return await self._record("PATCH", f"/voiceCalls/{voice_call_id}/omniFlow", body, call)

    async def _record(self, method: str, path: str, body: Mapping[str, Any], call: Any) -> Json:
        try:
            answer: Json = await call
        except TelephonyApiError as exc:
            self._observer(
                ApiExchange(method, path, dict(body), exc.status, exc.problem, str(exc))
            )
            raise
        self._observer(ApiExchange(method, path, dict(body), 200, answer, None))
        return answer


def recording_location(public_url: str, message_id: str) -> str:
    """Where the recording is (the API's audio of the message; agents get a signed link)."""
    return f"{public_url.rstrip('/')}/v1/messages/{message_id}/audio"


class SequenceAdmission:
    """Admits the messages of a team's mailbox to the sequence, inside the storing transaction;
    `queued()` after the commit wakes the worker of this process (if any)."""

    def __init__(
        self,
        clock: Clock,
        policy: RetryPolicy,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._policy = policy
        self.on_queued = on_queued

    async def admit(self, uow: UnitOfWork, mailbox: Mailbox, message: Message) -> bool:
        if mailbox.queue_id is None:
            return False
        now = self._clock.now()
        delivery = Delivery(
            id=new_id(ID_PREFIX),
            account_id=message.account_id,
            message_id=message.id,
            mailbox_id=mailbox.id,
            queue_id=mailbox.queue_id,
            connector_id=mailbox.connector_id,
            call_center_id=mailbox.call_center_id,
            vendor_call_key=seq.vendor_call_key(message.account_id, message.call_id),
            status=DeliveryStatus.PENDING,
            created_at=now,
            updated_at=now,
            next_attempt_at=now,
            transcript_wait_until=now + timedelta(seconds=self._policy.transcript_wait_seconds),
        )
        added = await uow.cc_deliveries.add_if_absent(delivery)
        if added:
            log.info(
                "message %s admitted to the team sequence as %s",
                message.id,
                delivery.id,
                extra={"mailbox_id": mailbox.id, "queue_id": mailbox.queue_id},
            )
        return added

    def queued(self) -> None:
        if self.on_queued is not None:
            self.on_queued()


class VoicemailSequence:
    """Runs the steps of claimed deliveries (see the module docstring)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        targets: Targets,
        *,
        public_url: str,
        policy: RetryPolicy | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._targets = targets
        self._public_url = public_url
        self.policy = policy or RetryPolicy()
        self._lease = timedelta(seconds=lease_seconds)

    async def run(self, claim: ClaimedDelivery) -> Delivery | None:
        """Run the claimed delivery's steps until it is done, fails, waits for its transcript
        or backs off; the delivery as written (None: the lease was lost)."""
        delivery = claim.delivery
        rec = await self._recording(delivery)
        if rec is None:
            return await self._fail(claim, delivery, "the message was deleted before it was delivered", [])
        if self._must_wait(delivery, rec):
            return await self._wait_for_transcript(claim, delivery)
        exchanges: list[Exchange] = []
        current: list[Step] = []

        def observe(seen: ApiExchange) -> None:
            step = current[0] if current else Step.CREATE
            exchanges.append(
                Exchange(
                    step=step,
                    method=seen.method,
                    path=seen.path,
                    request=seen.request,
                    status=seen.status,
                    answer=seen.answer,
                    error=seen.error,
                    at=self._clock.now(),
                    attempt=seen.attempt,
                )
            )

        try:
            async with self._targets.open(delivery, observe) as target:
                while (step := delivery.next_step()) is not None:
                    if step is Step.TRANSCRIPT:
                        rec = await self._recording(delivery) or rec
                        if self._must_wait(delivery, rec):
                            return await self._wait_for_transcript(claim, delivery)
                    current[:] = [step]
                    done = await self._do(step, delivery, rec, target)
                    done = dataclasses.replace(
                        done,
                        steps_done=(*delivery.steps_done, step),
                        attempts=0,
                        last_error=None,
                        updated_at=self._clock.now(),
                    )
                    if done.next_step() is None:
                        done = dataclasses.replace(done, status=DeliveryStatus.DONE)
                    if not await self._save(claim, done, exchanges, keep=done.next_step() is not None):
                        return None
                    delivery = done
                    log.info("delivery %s: %s done", delivery.id, step.value)
        except TelephonyApiError as exc:
            reason = _reason(exc)
            return await self._after_failure(claim, delivery, reason, exc.retryable, exchanges)
        except TargetUnavailable as exc:
            return await self._after_failure(claim, delivery, exc.reason, exc.retryable, exchanges)
        except StepRefused as exc:
            return await self._fail(claim, delivery, str(exc), exchanges)
        log.info(
            "delivery %s done: message %s routed (%s)",
            delivery.id,
            delivery.message_id,
            delivery.routed,
        )
        return delivery

    async def _do(self, step: Step, d: Delivery, rec: Recording, target: Target) -> Delivery:
        api = target.api
        key = d.vendor_call_key
        if step is Step.CREATE:
            body = seq.create_body(target.call_center_api_name, key, rec)
            answer = await api.create_voice_call(body)
            voice_call_id = answer.get("voiceCallId")
            if not isinstance(voice_call_id, str) or not voice_call_id:
                raise StepRefused(f"the voice call was not created: {answer.get('errors') or answer}"[:500])
            return dataclasses.replace(d, voice_call_id=voice_call_id)
        if step is Step.ACTIVATE:
            await api.update_voice_call(key, seq.activate_body())
            return d
        if step is Step.TRANSCRIPT:
            plan = seq.transcript_plan(rec)
            if plan.body is not None:
                await api.add_messages(key, plan.body)
            return dataclasses.replace(d, transcript_note=plan.note)
        if step is Step.ROUTE:
            assert d.voice_call_id is not None
            body = seq.route_body(rec, target.fallback_queue or d.queue_id)
            answer = await api.route(d.voice_call_id, body)
            refused = seq.route_errors(answer)
            if refused is not None:
                raise StepRefused(refused)
            return dataclasses.replace(
                d, routed={"agent": answer.get("agent"), "queue": answer.get("queue")}
            )
        await api.update_voice_call(key, seq.close_body(rec))
        return d

    def _must_wait(self, delivery: Delivery, rec: Recording) -> bool:
        return delivery.next_step() is Step.TRANSCRIPT and not seq.transcript_ready(
            rec, self._clock.now(), delivery.transcript_wait_until
        )

    async def _wait_for_transcript(self, claim: ClaimedDelivery, d: Delivery) -> Delivery | None:
        now = self._clock.now()
        poll = now + timedelta(seconds=self.policy.transcript_poll_seconds)
        waiting = dataclasses.replace(
            d, next_attempt_at=min(poll, d.transcript_wait_until), updated_at=now
        )
        return waiting if await self._save(claim, waiting, [], keep=False) else None

    async def _after_failure(
        self,
        claim: ClaimedDelivery,
        d: Delivery,
        reason: str,
        retryable: bool,
        exchanges: list[Exchange],
    ) -> Delivery | None:
        now = self._clock.now()
        outcome = seq.after_failure(
            d.attempts, reason, retryable=retryable, now=now, policy=self.policy
        )
        if outcome.retry_at is None:
            return await self._fail(claim, dataclasses.replace(d, attempts=outcome.attempts), reason, exchanges)
        log.warning(
            "delivery %s: %s failed (try %d), retried: %s",
            d.id,
            (d.next_step() or Step.CLOSE).value,
            outcome.attempts,
            outcome.reason,
        )
        later = dataclasses.replace(
            d,
            attempts=outcome.attempts,
            next_attempt_at=outcome.retry_at,
            last_error=outcome.reason,
            updated_at=now,
        )
        return later if await self._save(claim, later, exchanges, keep=False) else None

    async def _fail(
        self, claim: ClaimedDelivery, d: Delivery, reason: str, exchanges: list[Exchange]
    ) -> Delivery | None:
        failed = dataclasses.replace(
            d,
            status=DeliveryStatus.FAILED,
            last_error=reason[: seq.ERROR_MAX],
            updated_at=self._clock.now(),
        )
        log.error(
            "delivery %s of message %s failed at %s: %s",
            d.id,
            d.message_id,
            (d.next_step() or Step.CLOSE).value,
            failed.last_error,
        )
        return failed if await self._save(claim, failed, exchanges, keep=False) else None

    async def _save(
        self, claim: ClaimedDelivery, d: Delivery, exchanges: list[Exchange], *, keep: bool
    ) -> bool:
        lease_until = self._clock.now() + self._lease if keep else None
        async with self._uow() as uow:
            kept = await uow.cc_deliveries.save(claim, d, lease_until=lease_until)
            if kept:
                await uow.cc_deliveries.add_exchanges(d.account_id, d.id, list(exchanges))
            if kept and d.status is DeliveryStatus.FAILED:
                await uow.events.publish(d.account_id, seq.FAILED_EVENT, seq.to_json(d))
        exchanges.clear()
        if not kept:
            log.warning("delivery %s lost its lease; its progress was not written", d.id)
            return False
        if lease_until is not None:
            claim.lease_until = lease_until
        claim.delivery = d
        return True

    async def _recording(self, d: Delivery) -> Recording | None:
        async with self._uow() as uow:
            message = await uow.messages.get(d.account_id, d.message_id)
        if message is None:
            return None
        return Recording(
            message_id=message.id,
            call_id=message.call_id,
            caller=message.caller,
            callee=message.callee,
            duration_ms=message.duration_ms,
            saved_at=message.created_at,
            transcription_status=message.transcription_status,
            transcription_reason=message.transcription_reason,
            transcript=message.transcript,
            recording_location=recording_location(self._public_url, message.id),
        )


def _reason(exc: TelephonyApiError) -> str:
    problem = exc.problem
    detail = problem.get("detail") or problem.get("title") or problem.get("errors") or problem
    return f"HTTP {exc.status}: {detail}"[: seq.ERROR_MAX]


class SequenceWorker(OutboxWorker[ClaimedDelivery]):
    name = "voicemail-sequence"

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sequence: VoicemailSequence,
        clock: Clock,
        *,
        batch_size: int = 8,
        idle_seconds: float = 5.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        reclaim_on_start: bool = False,
    ) -> None:
        super().__init__(
            clock,
            lease=timedelta(seconds=lease_seconds),
            batch_size=batch_size,
            idle_seconds=idle_seconds,
            stop_grace=10.0,
            log=log,
        )
        self._uow = uow
        self._sequence = sequence
        self._reclaim = reclaim_on_start

    async def start(self) -> None:
        if self._reclaim:
            async with self._uow() as uow:
                taken = await uow.cc_deliveries.release_all()
            if taken:
                log.info("voicemail sequence: %d delivery(ies) of a previous process handed back", taken)
        await super().start()

    async def _claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        async with self._uow() as uow:
            return await uow.cc_deliveries.claim_due(now, lease_until, limit)

    async def _attempt(self, claim: ClaimedDelivery) -> None:
        await self._sequence.run(claim)

    async def _release(self, claims: list[ClaimedDelivery]) -> None:
        async with self._uow() as uow:
            await uow.cc_deliveries.release(claims)

    async def _next_wakeup(self) -> datetime | None:
        async with self._uow() as uow:
            return await uow.cc_deliveries.next_wakeup()

    def _claim_key(self, claim: ClaimedDelivery) -> str:
        return claim.delivery.id


@dataclass(frozen=True, slots=True)
class DeliveryView:
    delivery: Delivery
    exchanges: tuple[Exchange, ...] = ()


class TeamDeliveries:
    """The API's side: what became of each message sent to a team."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def list(
        self,
        account_id: str,
        *,
        status: DeliveryStatus | None = None,
        message_id: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page[Delivery]:
        async with self._uow() as uow:
            return await uow.cc_deliveries.list(
                account_id, status=status, message_id=message_id, cursor=cursor, limit=limit
            )

    async def get(self, account_id: str, delivery_id: str) -> DeliveryView:
        if not is_id(delivery_id, ID_PREFIX):
            raise NotFound("delivery", delivery_id[:40])
        async with self._uow() as uow:
            found = await uow.cc_deliveries.get(account_id, delivery_id)
            if found is None:
                raise NotFound("delivery", delivery_id)
            exchanges = await uow.cc_deliveries.exchanges(account_id, delivery_id)
        return DeliveryView(found, tuple(exchanges))
