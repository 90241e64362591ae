"""The Telephony API's use cases (seed 002, `/telephony/v1`): voice calls, their transcript,
routing them to a queue (omniFlow), clearing that routing and requesting a callback.

Bodies and answers are the wire JSON (camelCase), so the HTTP adapter and `LocalTelephonyApi`
(the same API in process, for the internal voicemail sequence) share every rule.

omniFlow resolves a queue once and keeps it on the voice call: the dialed number's route
(`voicemail_queue_id` when the call's `callOrigin` is Voicemail, else `call_queue_id`), else the
call center's flow named by `flowDevName` (or its synonym `flowName`), else `fallbackQueue` (a
queue id or name of the account), else it answers `{"errors": [...]}`. It then hands the call
to the `WorkRouter` (whose `place` is idempotent), so executing it again creates no second work
item and never moves the call to another queue.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from afterbeep.domain.call_centers import CallCenter
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.phone import mask, to_e164
from afterbeep.domain.voice_calls import (
    MAX_KEY_LEN,
    MAX_NAME_LEN,
    MAX_NUMBER_LEN,
    CallOrigin,
    InitiationMethod,
    TranscriptMessage,
    VoiceCall,
    apply_update,
    check_call_attributes,
    check_text,
    check_vendor_call_key,
    parse_call_origin,
    parse_initiation_method,
    parse_messages,
    parse_participants,
    parse_time,
    parse_update,
    same_message,
)
from afterbeep.services.contact_center import (
    Channel,
    Json,
    TelephonyApiError,
    TranscriptLine,
    VoiceCallSummary,
    WorkPlacement,
    WorkRequest,
    WorkRouter,
)
from afterbeep.services.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("afterbeep.telephony_api")

MAX_BULK_ENTRIES = 100
ROUTING_UNAVAILABLE = "routing-unavailable"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls the API: an account (API key), or one of its call centers (a JWT)."""

    account_id: str
    call_center_id: str | None = None
    provider_name: str | None = None  # the Telephony-Provider-Name header, when sent


class NoRoute(DomainError):
    """omniFlow found no queue: `errors` is the seed's answer, one entry per way tried."""

    error_id = "no-route"

    def __init__(self, errors: builtins.list[dict[str, str]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


def _body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("body", "must be a JSON object")
    return dict(raw)


def _optional_text(body: dict[str, Any], name: str, max_len: int) -> str | None:
    value = body.get(name)
    return None if value is None else check_text(value, name, max_len)


class TelephonyApiService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        work_router: Callable[[], WorkRouter | None],
        default_region: str = "US",
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._work_router = work_router
        self._region = default_region

    # -- authentication helpers (the API checks tokens; these are its look-ups) --

    async def centers_for_issuer(self, org_id: str, api_name: str) -> builtins.list[CallCenter]:
        async with self._uow() as uow:
            return await uow.call_centers.by_issuer(org_id, api_name)

    async def remember_jti(self, call_center_id: str, jti: str, expires_at: datetime) -> bool:
        async with self._uow() as uow:
            return await uow.telephony_jtis.remember(
                call_center_id, jti, expires_at, self._clock.now()
            )

    # -- voice calls --

    async def _find(self, uow: UnitOfWork, caller: Caller, key: str) -> VoiceCall:
        call: VoiceCall | None
        if not key or len(key) > MAX_KEY_LEN or "\x00" in key:
            raise NotFound("voice call", key[:MAX_KEY_LEN].replace("\x00", ""))
        if is_id(key, "vc"):
            call = await uow.voice_calls.get(caller.account_id, key)
            if call is not None and caller.call_center_id not in (None, call.call_center_id):
                call = None
        else:
            call = await uow.voice_calls.by_key(caller.account_id, key, caller.call_center_id)
        if call is None:
            raise NotFound("voice call", key)
        return call

    async def _center_named(self, uow: UnitOfWork, caller: Caller, name: Any) -> CallCenter:
        api_name = check_text(name, "callCenterApiName", 80)
        if caller.call_center_id is not None:
            center = await uow.call_centers.get(caller.account_id, caller.call_center_id)
            if center is None or center.api_name != api_name:
                raise InvalidInput("callCenterApiName", "is not the call center of the token")
            return center
        found = await uow.call_centers.by_api_name(caller.account_id, api_name)
        if found is None:
            raise InvalidInput("callCenterApiName", "names no call center of the account")
        return found

    async def create_voice_call(self, caller: Caller, raw: Mapping[str, Any]) -> tuple[Json, bool]:
        """`{"voiceCallId", "errors"}` and whether it was created (False: the vendorCallKey
        was known, its record is answered)."""
        body = _body(raw)
        now = self._clock.now()
        async with self._uow() as uow:
            center = await self._center_named(uow, caller, body.get("callCenterApiName"))
            key = check_vendor_call_key(body.get("vendorCallKey"))
            existing = await uow.voice_calls.by_key(caller.account_id, key, center.id)
            if existing is not None:
                return {"voiceCallId": existing.id, "errors": []}, False
            parent = body.get("parentVoiceCallId")
            if parent is not None:
                parent = check_text(parent, "parentVoiceCallId", MAX_KEY_LEN)
                parent_call = (
                    await uow.voice_calls.get(caller.account_id, parent)
                    if is_id(parent, "vc")
                    else await uow.voice_calls.by_key(caller.account_id, parent, center.id)
                )
                if parent_call is None:
                    raise InvalidInput("parentVoiceCallId", "names no voice call of the account")
                parent = parent_call.id
            start = parse_time(body.get("startTime"), "startTime")
            end = None if body.get("endTime") is None else parse_time(body["endTime"], "endTime")
            if end is not None and end < start:
                raise InvalidInput("endTime", "must not be before startTime")
            origin = body.get("callOrigin")
            attributes = body.get("callAttributes")
            call = VoiceCall(
                id=new_id("vc"),
                account_id=caller.account_id,
                call_center_id=center.id,
                vendor_call_key=key,
                to_number=check_text(body.get("to"), "to", MAX_NUMBER_LEN),
                from_number=check_text(body.get("from"), "from", MAX_NUMBER_LEN),
                initiation_method=parse_initiation_method(body.get("initiationMethod")),
                start_time=start,
                end_time=end,
                created_at=now,
                updated_at=now,
                participants=parse_participants(body.get("participants")),
                call_origin=None if origin is None else parse_call_origin(origin),
                parent_voice_call_id=parent,
                queue=_optional_text(body, "queue", MAX_NAME_LEN),
                agent=_optional_text(body, "agent", MAX_NAME_LEN),
                call_attributes=None if attributes is None else check_call_attributes(attributes),
            )
            created = await uow.voice_calls.add(call)
        if not created:  # a concurrent create of the same key won: answer its record
            async with self._uow() as uow:
                won = await uow.voice_calls.by_key(caller.account_id, key, center.id)
            if won is None:
                raise Conflict("the voice call could not be created; retry", "voice-call-retry")
            return {"voiceCallId": won.id, "errors": []}, False
        log.info(
            "voice call created",
            extra={
                "provider": caller.provider_name,
                "voice_call_id": call.id,
                "call_center_id": center.id,
                "from": mask(call.from_number),
            },
        )
        return {"voiceCallId": call.id, "errors": []}, True

    async def get_voice_call(
        self, caller: Caller, key: str
    ) -> tuple[VoiceCall, builtins.list[TranscriptMessage]]:
        async with self._uow() as uow:
            call = await self._find(uow, caller, key)
            return call, await uow.voice_calls.messages(call.id)

    async def update_voice_call(self, caller: Caller, key: str, raw: Mapping[str, Any]) -> Json:
        update = parse_update(_body(raw))
        async with self._uow() as uow:
            call = await self._find(uow, caller, key)
            updated = apply_update(call, update, self._clock.now())
            await uow.voice_calls.update(updated)
        await self._changed(updated)
        return {
            "voiceCallId": updated.id,
            "isActiveCall": updated.is_active_call,
            "duration": updated.duration,
            "errors": [],
        }

    async def _changed(self, call: VoiceCall) -> None:
        router = self._work_router()
        if router is not None and call.routed_queue_id is not None:
            await router.voice_call_changed(call.account_id, call.id)

    # -- transcript --

    async def _add_to(
        self, uow: UnitOfWork, call: VoiceCall, raw: Any, name: str
    ) -> builtins.list[TranscriptMessage]:
        messages = parse_messages(call, raw, name=name)
        known = await uow.voice_calls.existing_messages(call.id, [m.message_id for m in messages])
        new: builtins.list[TranscriptMessage] = []
        for n, message in enumerate(messages):
            before = known.get(message.message_id)
            if before is None:
                new.append(message)
            elif not same_message(before, message):
                raise Conflict(
                    f"{name}[{n}].messageId: the call already has a different entry "
                    f"{message.message_id!r} (a messageId is unique in the call)",
                    "message-id-taken",
                )
        await uow.voice_calls.add_messages(new, self._clock.now())
        return new

    async def add_messages(
        self, caller: Caller, vendor_call_key: str, raw: Mapping[str, Any]
    ) -> Json:
        body = _body(raw)
        async with self._uow() as uow:
            call = await self._find(uow, caller, vendor_call_key)
            added = await self._add_to(uow, call, body.get("messages"), "messages")
        if added:
            await self._changed(call)
        return {"result": "Accepted"}

    async def add_messages_bulk(self, caller: Caller, raw: Mapping[str, Any]) -> Json:
        entries = _body(raw).get("entries")
        if not isinstance(entries, list) or not entries:
            raise InvalidInput("entries", "must be a non-empty array")
        if len(entries) > MAX_BULK_ENTRIES:
            raise InvalidInput("entries", f"must hold at most {MAX_BULK_ENTRIES} entries")
        changed: dict[str, VoiceCall] = {}
        async with self._uow() as uow:
            for n, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    raise InvalidInput(f"entries[{n}]", "must be an object")
                key = check_text(
                    entry.get("vendorCallKey"), f"entries[{n}].vendorCallKey", MAX_KEY_LEN
                )
                call = await self._find(uow, caller, key)
                if await self._add_to(uow, call, entry.get("messages"), f"entries[{n}].messages"):
                    changed[call.id] = call
        for call in changed.values():
            await self._changed(call)
        return {"result": "Accepted"}

    # -- routing --

    def _router(self) -> WorkRouter:
        router = self._work_router()
        if router is None:
            raise Unavailable("routing is not available on this service yet", ROUTING_UNAVAILABLE)
        return router

    async def _queue_exists(self, uow: UnitOfWork, account_id: str, queue_id: str) -> bool:
        return await uow.queues.get(account_id, queue_id) is not None

    async def _resolve(
        self, uow: UnitOfWork, call: VoiceCall, center: CallCenter, body: dict[str, Any]
    ) -> str:
        voicemail = call.call_origin is CallOrigin.VOICEMAIL
        kind = "voicemail" if voicemail else "call"
        errors: builtins.list[dict[str, str]] = []
        dialed = body.get("dialedNumber")
        if dialed is not None:
            dialed = check_text(dialed, "dialedNumber", MAX_NUMBER_LEN)
            route = center.route_for(dialed, self._region)
            if route is None:
                errors.append(
                    {"code": "NO_ROUTE", "message": f"no route for dialed number {dialed}"}
                )
            else:
                queue_id = route.queue_for(voicemail)
                if queue_id is None:
                    errors.append(
                        {
                            "code": "NO_ROUTE",
                            "message": f"the route of {route.dialed_number} has no {kind} queue",
                        }
                    )
                elif not await self._queue_exists(uow, call.account_id, queue_id):
                    errors.append(
                        {
                            "code": "QUEUE_NOT_FOUND",
                            "message": f"the {kind} queue {queue_id} of {route.dialed_number} no longer exists",
                        }
                    )
                else:
                    return queue_id
        flow_name = body.get("flowDevName", body.get("flowName"))
        if flow_name is not None:
            flow_name = check_text(flow_name, "flowDevName", 80)
            flow = center.flow_named(flow_name)
            if flow is None:
                errors.append(
                    {"code": "NO_FLOW", "message": f"the call center has no flow {flow_name}"}
                )
            else:
                queue_id = flow.queue_for(voicemail)
                if queue_id is None:
                    errors.append(
                        {"code": "NO_ROUTE", "message": f"the flow {flow_name} has no {kind} queue"}
                    )
                elif not await self._queue_exists(uow, call.account_id, queue_id):
                    errors.append(
                        {
                            "code": "QUEUE_NOT_FOUND",
                            "message": f"the {kind} queue {queue_id} of flow {flow_name} no longer exists",
                        }
                    )
                else:
                    return queue_id
        fallback = body.get("fallbackQueue")
        if fallback is not None:
            fallback = check_text(fallback, "fallbackQueue", MAX_NAME_LEN)
            found = await self._queue_named(uow, call.account_id, fallback)
            if found is not None:
                return found
            errors.append(
                {"code": "QUEUE_NOT_FOUND", "message": f"no queue {fallback} (fallbackQueue)"}
            )
        if not errors:
            errors.append(
                {
                    "code": "NO_ROUTE",
                    "message": "give dialedNumber, flowDevName or fallbackQueue to route the call",
                }
            )
        raise NoRoute(errors)

    async def _queue_named(self, uow: UnitOfWork, account_id: str, ref: str) -> str | None:
        if is_id(ref, "q"):
            return ref if await self._queue_exists(uow, account_id, ref) else None
        return await uow.call_centers.queue_by_name(account_id, ref)

    @staticmethod
    def _channel(call: VoiceCall) -> Channel:
        if call.initiation_method is InitiationMethod.CALLBACK:
            return Channel.CALLBACK
        return Channel.VOICEMAIL if call.call_origin is CallOrigin.VOICEMAIL else Channel.CALL

    async def _place(self, router: WorkRouter, call: VoiceCall, queue_id: str) -> WorkPlacement:
        placement = await router.place(
            WorkRequest(
                account_id=call.account_id,
                voice_call_id=call.id,
                queue_id=queue_id,
                channel=self._channel(call),
            )
        )
        if placement.work_item_id != call.work_item_id:
            async with self._uow() as uow:
                await uow.voice_calls.set_work_item(
                    call.account_id, call.id, placement.work_item_id, self._clock.now()
                )
        return placement

    async def route(self, caller: Caller, key: str, raw: Mapping[str, Any]) -> Json:
        """omniFlow: `{"agent": <usr id or null>, "queue": <q id>}`; raises NoRoute."""
        body = _body(raw)
        params = body.get("flowInputParameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidInput("flowInputParameters", "must be an object")
        async with self._uow() as uow:
            call = await self._find(uow, caller, key)
        router = self._router()  # after the look-up: an unknown call is a 404 still
        async with self._uow() as uow:
            if call.routed_queue_id is None:
                center = await uow.call_centers.get(call.account_id, call.call_center_id)
                if center is None:
                    raise NotFound("call center", call.call_center_id)
                queue_id = await self._resolve(uow, call, center, body)
                now = self._clock.now()
                if await uow.voice_calls.set_routed_queue(call.account_id, call.id, queue_id, now):
                    call = replace(call, routed_queue_id=queue_id)
        if call.routed_queue_id is None:  # a concurrent omniFlow resolved it first: its queue
            async with self._uow() as uow:
                call = await self._find(uow, caller, call.id)
        assert call.routed_queue_id is not None
        placement = await self._place(router, call, call.routed_queue_id)
        return {"agent": placement.agent_id, "queue": placement.queue_id}

    async def clear_routing(self, caller: Caller, key: str) -> Json:
        async with self._uow() as uow:
            call = await self._find(uow, caller, key)
        cleared = await self._router().clear(call.account_id, call.id, "clearRouting")
        return {"voiceCallId": call.id, "cleared": cleared, "errors": []}

    async def request_callback(self, caller: Caller, key: str, raw: Mapping[str, Any]) -> Json:
        """A callback voice call (`initiationMethod` Callback, the customer's number as its
        `from`) child of the call, placed as a CALLBACK work item in the call's queue;
        `{"recordId": <its vc id>}`. Asking again answers the same record."""
        body = _body(raw)
        number_raw = body.get("callbackNumber")
        number = to_e164(
            check_text(number_raw, "callbackNumber", MAX_NUMBER_LEN), self._region, "callbackNumber"
        )
        async with self._uow() as uow:
            parent = await self._find(uow, caller, key)
        router = self._router()
        now = self._clock.now()
        async with self._uow() as uow:
            child = None
            if parent.callback_voice_call_id is not None:
                child = await uow.voice_calls.get(parent.account_id, parent.callback_voice_call_id)
            if child is None:
                queue_id = parent.routed_queue_id
                if queue_id is None and parent.queue is not None:
                    queue_id = await self._queue_named(uow, parent.account_id, parent.queue)
                if queue_id is None:
                    raise InvalidInput(
                        "callbackNumber",
                        "the voice call has no queue yet: route it (omniFlow) or set its queue first",
                    )
                child = VoiceCall(
                    id=new_id("vc"),
                    account_id=parent.account_id,
                    call_center_id=parent.call_center_id,
                    vendor_call_key=f"{parent.vendor_call_key[: MAX_KEY_LEN - 30]}:callback:{new_id('ccr')[-12:]}",
                    to_number=parent.to_number,
                    from_number=number,
                    initiation_method=InitiationMethod.CALLBACK,
                    start_time=now,
                    created_at=now,
                    updated_at=now,
                    parent_voice_call_id=parent.id,
                    queue=parent.queue,
                    callback_number=number,
                    routed_queue_id=queue_id,
                )
                taken = not await uow.voice_calls.set_callback(
                    parent.account_id, parent.id, number, child.id, now
                )
                if taken or not await uow.voice_calls.add(child):
                    raise Conflict("the callback is being recorded; retry", "callback-retry")
        assert child.routed_queue_id is not None
        await self._place(router, child, child.routed_queue_id)
        return {"recordId": child.id}


class SqlVoiceCallReader:
    """`VoiceCallReader` over the voice call repositories."""

    def __init__(self, uow: UnitOfWorkFactory, default_region: str = "US") -> None:
        self._uow = uow
        self._region = default_region

    def _number(self, raw: str) -> str:
        try:
            return to_e164(raw, self._region)
        except InvalidInput:
            return raw

    async def summary(self, account_id: str, voice_call_id: str) -> VoiceCallSummary | None:
        async with self._uow() as uow:
            call = await uow.voice_calls.get(account_id, voice_call_id)
            if call is None:
                return None
            messages = await uow.voice_calls.messages(call.id)
        start = call.start_ms
        return VoiceCallSummary(
            voice_call_id=call.id,
            vendor_call_key=call.vendor_call_key,
            from_number=self._number(call.from_number),
            to_number=self._number(call.to_number),
            call_origin=call.call_origin.value if call.call_origin else None,
            recording_location=call.recording_location,
            total_recording_duration=call.total_recording_duration,
            callback_number=call.callback_number,
            transcript=tuple(
                TranscriptLine(
                    participant_id=m.participant_id,
                    sender_type=m.sender_type.value,
                    start_ms=max(m.start_ms - start, 0),
                    end_ms=max(m.end_ms - start, 0),
                    content=m.content,
                )
                for m in messages
            ),
            call_center_id=call.call_center_id,
        )


_STATUS: builtins.list[tuple[type[DomainError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (NoRoute, 422),
    (InvalidInput, 422),
    (Unavailable, 503),
]


def status_of(exc: DomainError) -> int:
    """The HTTP status `/telephony/v1` answers a domain error with."""
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)


def error_body(exc: DomainError) -> dict[str, Any]:
    """What `/telephony/v1` answers: the seed's `{"errors": [...]}` for a failed routing, an
    RFC 9457 problem otherwise."""
    if isinstance(exc, NoRoute):
        return {"errors": exc.errors}
    body: dict[str, Any] = {
        "type": "https://afterbeep.dev/problems/" + exc.error_id,
        "title": exc.error_id.replace("-", " ").capitalize(),
        "status": status_of(exc),
        "error_id": exc.error_id,
        "detail": exc.message,
    }
    if isinstance(exc, InvalidInput):
        body["errors"] = [{"field": exc.field, "message": exc.detail}]
    return body


class LocalTelephonyApi:
    """The `TelephonyApi` port in process, for one account and one call center: the internal
    voicemail sequence runs the seed's steps through it without HTTP. Refusals are raised as
    `TelephonyApiError` with the status and body `/telephony/v1` would answer."""

    def __init__(self, service: TelephonyApiService, account_id: str, call_center_id: str) -> None:
        self._service = service
        self._caller = Caller(account_id, call_center_id)

    async def _run(self, step: Callable[[], Any]) -> Json:
        try:
            result: Json = await step()
        except DomainError as exc:
            status = status_of(exc)
            raise TelephonyApiError(status, error_body(exc), retryable=status >= 500) from exc
        return result

    async def create_voice_call(self, body: Mapping[str, Any]) -> Json:
        async def step() -> Json:
            answer, _ = await self._service.create_voice_call(self._caller, body)
            return answer

        return await self._run(step)

    async def update_voice_call(self, key: str, body: Mapping[str, Any]) -> Json:
        return await self._run(lambda: self._service.update_voice_call(self._caller, key, body))

    async def add_messages(self, vendor_call_key: str, body: Mapping[str, Any]) -> Json:
        return await self._run(
            lambda: self._service.add_messages(self._caller, vendor_call_key, body)
        )

    async def route(self, voice_call_id: str, body: Mapping[str, Any]) -> Json:
        return await self._run(lambda: self._service.route(self._caller, voice_call_id, body))
