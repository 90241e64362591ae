"""/telephony/v1: the seed 002 Telephony API (voice calls, transcripts, omniFlow routing).

JSON keys are the seed's camelCase. A caller authenticates with `Authorization: Bearer` and
either an account API key (every call center of the account) or an RS256 JWT of one call
center (that call center only):
- `iss` is the call center's `org_id`, `sub` its `callCenterApiName`, signed with the private
  key of its `public_key_pem`; `exp` is required;
- `aud`, when present, must be the expected audience: `AFTERBEEP_TELEPHONY_JWT_AUDIENCE`, or,
  when that is not set, the service's public base URL (`AFTERBEEP_PUBLIC_URL`);
- `jti`, when present, is accepted once (kept until the token expires);
- the lifetime (`exp - iat`, or `exp - now` without `iat`) is at most
  `AFTERBEEP_TELEPHONY_JWT_MAX_TTL` seconds (default 4 h, what the vendor's demo connector uses).
A `Telephony-Provider-Name` header is accepted. Every token refusal is a 401 problem.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse

from afterbeep.api.deps import NO_KEY, bearer_token, services
from afterbeep.api.problems import ProblemError
from afterbeep.domain.call_centers import API_NAME_RE, ORG_ID_RE, CallCenter
from afterbeep.domain.clock import iso
from afterbeep.domain.errors import Unavailable
from afterbeep.domain.voice_calls import TranscriptMessage, VoiceCall
from afterbeep.services.telephony_api import Caller, NoRoute, TelephonyApiService

log = logging.getLogger("afterbeep.api.telephony")

router = APIRouter(prefix="/telephony/v1", tags=["telephony api"])

LEEWAY_SECONDS = 30  # clock skew allowed on exp, iat and nbf
MAX_TOKEN_LEN = 16_384
MAX_BULK_JSON_BYTES = 4 * 1024 * 1024  # the bulk transcript form; the others: the JSON limit
_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {401: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM}

JsonBody = Annotated[dict[str, Any], Body()]


def _refuse(error_id: str, title: str, detail: str) -> ProblemError:
    return ProblemError(401, error_id, title, detail)


def _service(request: Request) -> TelephonyApiService:
    found = services(request).telephony
    if found is None:
        raise Unavailable("the Telephony API is not available on this service")
    return found


def _audiences(request: Request) -> list[str]:
    svc = services(request)
    if svc.telephony_jwt_audience:
        return [svc.telephony_jwt_audience]
    base = svc.public_url.rstrip("/")
    return [base, base + "/"]


async def _verified(request: Request, token: str) -> tuple[CallCenter, dict[str, Any]]:
    telephony = _service(request)
    if len(token) > MAX_TOKEN_LEN:
        raise _refuse("malformed-token", "Malformed token", "the token is too long")
    try:
        header = jwt.get_unverified_header(token)
        unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _refuse(
            "malformed-token", "Malformed token", "the bearer token is not a JWT"
        ) from exc
    if header.get("alg") != "RS256":
        raise _refuse(
            "unsupported-algorithm", "Unsupported algorithm", "tokens must be signed with RS256"
        )
    for claim in ("iss", "sub", "exp"):
        if claim not in unverified:
            raise _refuse("missing-claim", "Missing claim", f"the token has no {claim!r} claim")
    iss, sub = unverified["iss"], unverified["sub"]
    if not isinstance(iss, str) or not isinstance(sub, str):
        raise _refuse("invalid-claim", "Invalid claim", "'iss' and 'sub' must be strings")
    if not ORG_ID_RE.match(iss) or not API_NAME_RE.match(sub):
        raise _refuse(
            "unknown-call-center",
            "Unknown call center",
            "no call center has this org id (iss) and API name (sub)",
        )
    centers = await telephony.centers_for_issuer(iss, sub)
    if not centers:
        raise _refuse(
            "unknown-call-center",
            "Unknown call center",
            "no call center has this org id (iss) and API name (sub)",
        )
    has_aud = "aud" in unverified
    for center in centers:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                center.public_key_pem,
                algorithms=["RS256"],
                audience=_audiences(request) if has_aud else None,
                issuer=iss,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "sub"], "verify_aud": has_aud},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError as exc:
            raise _refuse("token-expired", "Token expired", "the token's exp is past") from exc
        except jwt.InvalidAudienceError as exc:
            raise _refuse(
                "wrong-audience", "Wrong audience", "the token's aud is not this service"
            ) from exc
        except jwt.ImmatureSignatureError as exc:
            raise _refuse("token-not-yet-valid", "Token not yet valid", str(exc)) from exc
        except jwt.MissingRequiredClaimError as exc:
            raise _refuse("missing-claim", "Missing claim", str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise _refuse("invalid-token", "Invalid token", str(exc)) from exc
        return center, claims
    raise _refuse(
        "bad-signature",
        "Bad signature",
        "the token is not signed by the key registered on the call center",
    )


async def _caller_of_token(request: Request, token: str) -> Caller:
    center, claims = await _verified(request, token)
    exp = claims["exp"]
    iat = claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _refuse("invalid-claim", "Invalid claim", "'exp' must be a number")
    start = iat if isinstance(iat, int | float) and not isinstance(iat, bool) else time.time()
    max_ttl = services(request).telephony_jwt_max_ttl
    if exp - start > max_ttl:
        raise _refuse(
            "token-lifetime-too-long",
            "Token lifetime too long",
            f"tokens may live at most {int(max_ttl)} seconds (exp - iat)",
        )
    jti = claims.get("jti")
    if jti is not None:
        if not isinstance(jti, str) or not 0 < len(jti) <= 200:
            raise _refuse(
                "invalid-claim", "Invalid claim", "'jti' must be a string of 1 to 200 characters"
            )
        expires = datetime.fromtimestamp(float(exp) + LEEWAY_SECONDS, tz=UTC)
        if not await _service(request).remember_jti(center.id, jti, expires):
            raise _refuse("token-reused", "Token reused", "this token's jti was already used")
    return Caller(center.account_id, center.id, request.headers.get("telephony-provider-name"))


async def telephony_caller(request: Request) -> Caller:
    token = bearer_token(request.headers.get("authorization", ""))
    if token is None:
        raise _refuse("unauthorized", "Unauthorized", NO_KEY + " or a call center's RS256 JWT")
    if token.count(".") == 2:
        caller = await _caller_of_token(request, token)
    else:
        account = await services(request).accounts.authenticate(token)
        if account is None:
            raise _refuse("unauthorized", "Unauthorized", "the API key is not valid")
        caller = Caller(account.id, None, request.headers.get("telephony-provider-name"))
    request.state.account_id = caller.account_id
    return caller


CallerDep = Annotated[Caller, Depends(telephony_caller)]
Service = Annotated[TelephonyApiService, Depends(_service)]


def _time(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _message_out(m: TranscriptMessage) -> dict[str, Any]:
    return {
        "participantId": m.participant_id,
        "messageId": m.message_id,
        "startTime": m.start_ms,
        "endTime": m.end_ms,
        "content": m.content,
        "senderType": m.sender_type.value,
    }


def voice_call_out(call: VoiceCall, messages: list[TranscriptMessage]) -> dict[str, Any]:
    return {
        "voiceCallId": call.id,
        "vendorCallKey": call.vendor_call_key,
        "callCenterId": call.call_center_id,
        "to": call.to_number,
        "from": call.from_number,
        "initiationMethod": call.initiation_method.value,
        "callOrigin": call.call_origin.value if call.call_origin else None,
        "parentVoiceCallId": call.parent_voice_call_id,
        "queue": call.queue,
        "agent": call.agent,
        "callAttributes": call.call_attributes,
        "participants": [
            {"participantKey": p.participant_key, "type": p.type} for p in call.participants
        ],
        "startTime": iso(call.start_time),
        "endTime": _time(call.end_time),
        "duration": call.duration,
        "isActiveCall": call.is_active_call,
        "recordingLocation": call.recording_location,
        "totalRecordingDuration": call.total_recording_duration,
        "disconnectReason": call.disconnect_reason,
        "enqueueTime": _time(call.enqueue_time),
        "acceptTime": _time(call.accept_time),
        "totalHoldDuration": call.total_hold_duration,
        "longestHoldDuration": call.longest_hold_duration,
        "numberOfHolds": call.number_of_holds,
        "agentInteractionDuration": call.agent_interaction_duration,
        "callbackNumber": call.callback_number,
        "routedQueueId": call.routed_queue_id,
        "workItemId": call.work_item_id,
        "messages": [_message_out(m) for m in messages],
        "createdAt": iso(call.created_at),
        "updatedAt": iso(call.updated_at),
    }


@router.post("/voiceCalls", responses=_RESPONSES)
async def create_voice_call(
    body: JsonBody, caller: CallerDep, telephony: Service, response: Response
) -> dict[str, Any]:
    """`{"voiceCallId", "errors": []}`: 201 when created, 200 when the vendorCallKey was known."""
    answer, created = await telephony.create_voice_call(caller, body)
    response.status_code = 201 if created else 200
    return answer


@router.post("/voiceCalls/messages", responses=_RESPONSES)
async def add_messages_bulk(
    body: JsonBody, caller: CallerDep, telephony: Service
) -> dict[str, Any]:
    """`{"entries": [{"vendorCallKey", "messages": [...]}]}`, all or nothing."""
    return await telephony.add_messages_bulk(caller, body)


@router.get("/voiceCalls/{call_id}", responses=_RESPONSES)
async def get_voice_call(call_id: str, caller: CallerDep, telephony: Service) -> dict[str, Any]:
    call, messages = await telephony.get_voice_call(caller, call_id)
    return voice_call_out(call, messages)


@router.patch("/voiceCalls/{call_id}", responses=_RESPONSES)
async def update_voice_call(
    call_id: str, body: JsonBody, caller: CallerDep, telephony: Service
) -> dict[str, Any]:
    """An update not saying `isActiveCall: true` completes the conversation."""
    return await telephony.update_voice_call(caller, call_id, body)


@router.post("/voiceCalls/{call_id}/messages", responses=_RESPONSES)
async def add_messages(
    call_id: str, body: JsonBody, caller: CallerDep, telephony: Service
) -> dict[str, Any]:
    return await telephony.add_messages(caller, call_id, body)


@router.patch("/voiceCalls/{call_id}/omniFlow", responses={**_RESPONSES, 503: _PROBLEM})
async def execute_omni_flow(
    call_id: str, body: JsonBody, caller: CallerDep, telephony: Service
) -> Any:
    """`{"agent", "queue"}`, or 422 `{"errors": [...]}` when no queue was found."""
    try:
        return await telephony.route(caller, call_id, body)
    except NoRoute as exc:
        return JSONResponse({"errors": exc.errors}, status_code=422)


@router.patch("/voiceCalls/{call_id}/clearRouting", responses={**_RESPONSES, 503: _PROBLEM})
async def clear_routing(call_id: str, caller: CallerDep, telephony: Service) -> dict[str, Any]:
    return await telephony.clear_routing(caller, call_id)


@router.post("/voiceCalls/{call_id}/requestCallback", responses={**_RESPONSES, 503: _PROBLEM})
async def request_callback(
    call_id: str, body: JsonBody, caller: CallerDep, telephony: Service
) -> dict[str, Any]:
    """`{"recordId"}`: the callback's voice call, a CALLBACK work item in the call's queue."""
    return await telephony.request_callback(caller, call_id, body)
