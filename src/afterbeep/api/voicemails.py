"""/v1/voicemails routes: send a ringless voicemail, follow it, cancel it, and delivery stats.

`POST /v1/voicemails` takes either multipart/form-data (an `audio` MP3 file with the fields)
or JSON (a stored `media_id` instead of the file). The multipart body is parsed with
`afterbeep.api.multipart`'s streaming form, so the MP3 goes straight into a size-limited
`StagedUpload` and an upload over 8 MB is refused while it streams.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field
from python_multipart.multipart import parse_options_header

from afterbeep.api.bodies import json_body, validated
from afterbeep.api.deps import ApiServices, CurrentAccount, services
from afterbeep.api.multipart import StreamingForm, invalid_field, receive_form
from afterbeep.api.problems import ProblemError
from afterbeep.api.query_params import CreatedAfter, CreatedBefore
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.metadata import RULES as METADATA_RULES
from afterbeep.domain.ringless import (
    MAX_AUDIO_BYTES,
    SendAttempt,
    SendKind,
    SendStats,
    SendStatus,
    VoicemailSend,
)
from afterbeep.services.ports.ringless import SendFilter

router = APIRouter(tags=["voicemails"])


async def _services(request: Request) -> ApiServices:
    """`deps.services` as a coroutine: FastAPI runs a plain function dependency in a worker
    thread, one thread hop per request for a dictionary look-up."""
    return services(request)


Svc = Annotated[ApiServices, Depends(_services)]
M = TypeVar("M", bound=BaseModel)

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
MAX_FIELD_BYTES = 16 * 1024
MAX_JSON_BYTES = 64 * 1024
AUDIO_FIELD = "audio"
TEXT_FIELDS = frozenset({"to", "use_case_id", "foreign_id", "metadata", "send_at"})


class SendJson(StrictModel):
    to: Annotated[str, Field(min_length=1, max_length=32)]
    use_case_id: Annotated[str, Field(min_length=1, max_length=40)]
    media_id: Annotated[str, Field(min_length=1, max_length=40)]
    foreign_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    metadata: Annotated[dict[str, Any] | None, Field(description=METADATA_RULES)] = None
    send_at: AwareDatetime | None = None


class SendForm(StrictModel):
    to: Annotated[str, Field(min_length=1, max_length=32)]
    use_case_id: Annotated[str, Field(min_length=1, max_length=40)]
    foreign_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    metadata: Annotated[dict[str, Any] | None, Field(description=METADATA_RULES)] = None
    send_at: AwareDatetime | None = None


class AttemptOut(BaseModel):
    number: int
    method: str
    started_at: str
    ended_at: str | None
    sip_code: int | None
    duration_ms: int | None
    outcome: str
    reason: str | None

    @classmethod
    def of(cls, a: SendAttempt) -> AttemptOut:
        return cls(
            number=a.number,
            method=a.method.value,
            started_at=iso(a.started_at),
            ended_at=iso(a.ended_at) if a.ended_at else None,
            sip_code=a.sip_code,
            duration_ms=a.duration_ms,
            outcome=a.outcome,
            reason=a.reason,
        )


class SendOut(BaseModel):
    id: str
    status: SendStatus
    from_: str = Field(serialization_alias="from")
    to: str
    use_case_id: str
    setup_id: str
    media_id: str
    foreign_id: str | None
    metadata: dict[str, Any] | None
    send_at: str | None
    attempt_count: int
    method: str | None
    failure_reason: str | None
    skip_reason: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None

    @classmethod
    def of(cls, s: VoicemailSend) -> SendOut:
        return cls(
            id=s.id,
            status=s.status,
            from_=s.from_e164,
            to=s.to_e164,
            use_case_id=s.use_case_id,
            setup_id=s.setup_id,
            media_id=s.media_id,
            foreign_id=s.foreign_id,
            metadata=dict(s.metadata) if s.metadata is not None else None,
            send_at=iso(s.send_at) if s.send_at else None,
            attempt_count=s.attempts,
            method=s.method.value if s.method else None,
            failure_reason=s.failure_reason,
            skip_reason=s.skip_reason,
            created_at=iso(s.created_at),
            updated_at=iso(s.updated_at),
            delivered_at=iso(s.delivered_at) if s.delivered_at else None,
        )


class SendDetailOut(SendOut):
    attempts: list[AttemptOut]


class ReasonCount(BaseModel):
    reason: str
    count: int


class StatsOut(BaseModel):
    total: int
    counts: dict[str, int]
    delivery_rate: float | None = Field(description="delivered / (delivered + failed)")
    failure_reasons: list[ReasonCount]

    @classmethod
    def of(cls, stats: SendStats) -> StatsOut:
        reasons = sorted(stats.failure_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(
            total=stats.total,
            counts={s.value: n for s, n in stats.counts.items()},
            delivery_rate=stats.delivery_rate,
            failure_reasons=[ReasonCount(reason=r, count=n) for r, n in reasons],
        )


# -- the multipart form -----------------------------------------------------------------


def _form_fields(form: StreamingForm, model: type[M]) -> M:
    values: dict[str, Any] = dict(form.text())
    if "metadata" in values:
        try:
            values["metadata"] = json.loads(values["metadata"])
        except (ValueError, RecursionError) as exc:
            raise invalid_field("metadata", f"must be {METADATA_RULES}") from exc
    return validated(model, values)


def send_openapi(json_model: type[BaseModel], **extra: dict[str, Any]) -> dict[str, Any]:
    """The request body of a send route in the OpenAPI document: multipart with the MP3, or
    JSON with a `media_id`; `extra` adds form fields (a drop's `technique`)."""
    properties: dict[str, Any] = {
        AUDIO_FIELD: {
            "type": "string",
            "format": "binary",
            "description": "MP3, 10 to 60 s, at most 8 MB",
        },
        "to": {"type": "string"},
        "use_case_id": {"type": "string"},
        **extra,
        "foreign_id": {"type": "string"},
        "metadata": {"type": "string", "description": METADATA_RULES},
        "send_at": {"type": "string", "format": "date-time"},
    }
    form = {"type": "object", "properties": properties, "required": [AUDIO_FIELD, "to", "use_case_id"]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": json_model.model_json_schema()},
            },
        }
    }


# -- routes ---------------------------------------------------------------------------


@router.post(
    "/voicemails",
    status_code=202,
    response_model=SendOut,
    openapi_extra=send_openapi(SendJson),
    responses={
        400: {**_PROBLEM, "description": "malformed body"},
        413: {**_PROBLEM, "description": "the audio is over 8 MB"},
        415: {**_PROBLEM, "description": "neither multipart/form-data nor JSON"},
        422: {**_PROBLEM, "description": "invalid-audio, invalid-phone-number, unknown-reference, ..."},
    },
)
async def send_voicemail(request: Request, svc: Svc, account: CurrentAccount) -> Response:
    """Accept a ringless voicemail; delivery happens later (follow `status` or the webhook)."""
    send = await accept_send(
        request,
        svc,
        account.id,
        SendKind.RINGLESS,
        json_model=SendJson,
        form_model=SendForm,
        text_fields=TEXT_FIELDS,
        default_name="voicemail.mp3",
    )
    return accepted_response(SendOut.of(send))


def accepted_response(body: BaseModel) -> Response:
    """The 202 with `body` serialised once (as FastAPI would: by alias), not validated again
    against the route's response model on the way out."""
    return Response(body.model_dump_json(by_alias=True), 202, media_type="application/json")


async def accept_send(
    request: Request,
    svc: ApiServices,
    account_id: str,
    kind: SendKind,
    *,
    json_model: type[BaseModel],
    form_model: type[BaseModel],
    text_fields: frozenset[str],
    default_name: str,
) -> VoicemailSend:
    """A send of `kind` from JSON with a `media_id`, or from multipart/form-data with the MP3
    streamed into a size-limited upload (the drop routes use it too). The models carry `to`,
    `use_case_id`, `foreign_id`, `metadata`, `send_at`, and for drops `technique`."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type == b"application/json":
        body: Any = validated(json_model, await json_body(request, MAX_JSON_BYTES))
        return await svc.ringless.create_send(
            account_id,
            body.to,
            body.use_case_id,
            media_id=body.media_id,
            foreign_id=body.foreign_id,
            metadata=body.metadata,
            send_at=body.send_at,
            kind=kind,
            technique=getattr(body, "technique", None),
        )
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "send multipart/form-data with an audio field, or JSON with a media_id",
        )
    with svc.media.start_upload(max_bytes=MAX_AUDIO_BYTES) as upload:
        form = StreamingForm(AUDIO_FIELD, text_fields, MAX_FIELD_BYTES)
        await receive_form(request, boundary, upload, form)
        fields: Any = _form_fields(form, form_model)
        return await svc.ringless.create_send(
            account_id,
            fields.to,
            fields.use_case_id,
            upload=upload,
            audio_name=form.filename or default_name,
            foreign_id=fields.foreign_id,
            metadata=fields.metadata,
            send_at=fields.send_at,
            kind=kind,
            technique=getattr(fields, "technique", None),
        )


@router.get("/voicemails", response_model=ListResponse[SendOut])
async def list_voicemails(
    svc: Svc,
    account: CurrentAccount,
    use_case_id: Annotated[str | None, Query(max_length=40)] = None,
    setup_id: Annotated[str | None, Query(max_length=40)] = None,
    status: SendStatus | None = None,
    to: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    campaign_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResponse[SendOut]:
    where = SendFilter(
        use_case_id, setup_id, status, to, created_after, created_before, campaign_id=campaign_id
    )
    page = await svc.ringless.list_sends(account.id, where, cursor, limit)
    return ListResponse[SendOut](items=[SendOut.of(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/voicemails/stats", response_model=StatsOut)
async def voicemail_stats(
    svc: Svc,
    account: CurrentAccount,
    use_case_id: Annotated[str | None, Query(max_length=40)] = None,
    setup_id: Annotated[str | None, Query(max_length=40)] = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
) -> StatsOut:
    """Counts per status, the delivery rate and failure reasons of sends created in
    [created_after, created_before)."""
    where = SendFilter(
        use_case_id=use_case_id,
        setup_id=setup_id,
        created_after=created_after,
        created_before=created_before,
    )
    return StatsOut.of(await svc.ringless.stats(account.id, where))


@router.get("/voicemails/{send_id}", response_model=SendDetailOut, responses={404: _PROBLEM})
async def get_voicemail(send_id: str, svc: Svc, account: CurrentAccount) -> SendDetailOut:
    detail = await svc.ringless.get_send(account.id, send_id)
    base = SendOut.of(detail.send)
    return SendDetailOut(**base.model_dump(), attempts=[AttemptOut.of(a) for a in detail.attempts])


@router.post(
    "/voicemails/{send_id}/cancel",
    response_model=SendOut,
    responses={404: _PROBLEM, 409: {**_PROBLEM, "description": "voicemail-not-cancellable"}},
)
async def cancel_voicemail(send_id: str, svc: Svc, account: CurrentAccount) -> SendOut:
    """Stop a send before its first attempt: it ends `skipped` with reason `cancelled`."""
    return SendOut.of(await svc.ringless.cancel_send(account.id, send_id))
