"""/v1/drops routes: leave a voicemail drop, follow it, cancel it, and drop stats.

A drop calls the recipient through a `voicemail_drop` use case's trunk, listens with the
answering machine detector, and plays the recording only to a machine, after its beep. The
request is the ringless send's (`/v1/voicemails`: multipart with an `audio` MP3 streamed into
a size-limited upload, or JSON with a `media_id`) plus `technique` (`two_call`, the default, or
`single`); the same service accepts both kinds, so the audio rules and the checks are one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.query_params import CreatedAfter, CreatedBefore
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.api.voicemails import AttemptOut, ReasonCount, accept_send, send_openapi
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.metadata import RULES as METADATA_RULES
from afterbeep.domain.ringless import (
    DropTechnique,
    SendKind,
    SendStats,
    SendStatus,
    VoicemailSend,
)
from afterbeep.services.ports.ringless import SendFilter

router = APIRouter(tags=["drops"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
TEXT_FIELDS = frozenset({"to", "use_case_id", "technique", "foreign_id", "metadata", "send_at"})
Phone = Annotated[str, Field(min_length=1, max_length=32)]
Id = Annotated[str, Field(min_length=1, max_length=40)]
ForeignId = Annotated[str, Field(min_length=1, max_length=200)]


class DropJson(StrictModel):
    to: Phone
    use_case_id: Id
    media_id: Id
    technique: DropTechnique = DropTechnique.TWO_CALL
    foreign_id: ForeignId | None = None
    metadata: Annotated[dict[str, Any] | None, Field(description=METADATA_RULES)] = None
    send_at: AwareDatetime | None = None


class DropForm(StrictModel):
    to: Phone
    use_case_id: Id
    technique: DropTechnique = DropTechnique.TWO_CALL
    foreign_id: ForeignId | None = None
    metadata: Annotated[dict[str, Any] | None, Field(description=METADATA_RULES)] = None
    send_at: AwareDatetime | None = None


class DropOut(BaseModel):
    id: str
    status: SendStatus
    from_: str = Field(serialization_alias="from")
    to: str
    use_case_id: str
    setup_id: str
    media_id: str
    technique: DropTechnique | None
    foreign_id: str | None
    metadata: dict[str, Any] | None
    send_at: str | None
    campaign_id: str | None
    attempt_count: int
    answered_by: str | None
    detection_ms: int | None
    beep_ms: int | None = Field(description="where the beep ended, ms from the answer")
    failure_reason: str | None
    skip_reason: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, s: VoicemailSend) -> DropOut:
        return cls(
            id=s.id,
            status=s.status,
            from_=s.from_e164,
            to=s.to_e164,
            use_case_id=s.use_case_id,
            setup_id=s.setup_id,
            media_id=s.media_id,
            technique=s.technique,
            foreign_id=s.foreign_id,
            metadata=dict(s.metadata) if s.metadata is not None else None,
            send_at=iso(s.send_at) if s.send_at else None,
            campaign_id=s.campaign_id,
            attempt_count=s.attempts,
            answered_by=s.answered_by,
            detection_ms=s.detection_ms,
            beep_ms=s.beep_ms,
            failure_reason=s.failure_reason,
            skip_reason=s.skip_reason,
            created_at=iso(s.created_at),
            updated_at=iso(s.updated_at),
        )


class DropDetailOut(DropOut):
    attempts: list[AttemptOut]


class DropStatsOut(BaseModel):
    total: int
    counts: dict[str, int]
    left_voicemail_rate: float | None = Field(
        description="left_voicemail among the drops that ended (skipped ones aside)"
    )
    failure_reasons: list[ReasonCount]

    @classmethod
    def of(cls, stats: SendStats) -> DropStatsOut:
        reasons = sorted(stats.failure_reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(
            total=stats.total,
            counts={s.value: n for s, n in stats.counts.items()},
            left_voicemail_rate=stats.left_voicemail_rate,
            failure_reasons=[ReasonCount(reason=r, count=n) for r, n in reasons],
        )




@router.post(
    "/drops",
    status_code=202,
    response_model=DropOut,
    openapi_extra=send_openapi(
        DropJson, technique={"type": "string", "enum": ["two_call", "single"]}
    ),
    responses={
        400: {**_PROBLEM, "description": "malformed body"},
        413: {**_PROBLEM, "description": "the audio is over 8 MB"},
        415: {**_PROBLEM, "description": "neither multipart/form-data nor JSON"},
        422: {**_PROBLEM, "description": "invalid-audio, wrong-channel, unknown-reference, ..."},
    },
)
async def create_drop(request: Request, svc: Svc, account: CurrentAccount) -> DropOut:
    """Accept a voicemail drop; the call happens later (follow `status` or `drop.status`)."""
    send = await accept_send(
        request,
        svc,
        account.id,
        SendKind.DROP,
        json_model=DropJson,
        form_model=DropForm,
        text_fields=TEXT_FIELDS,
        default_name="drop.mp3",
    )
    return DropOut.of(send)


@router.get("/drops", response_model=ListResponse[DropOut])
async def list_drops(
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
) -> ListResponse[DropOut]:
    where = SendFilter(
        use_case_id,
        setup_id,
        status,
        to,
        created_after,
        created_before,
        kind=SendKind.DROP,
        campaign_id=campaign_id,
    )
    page = await svc.ringless.list_sends(account.id, where, cursor, limit)
    return ListResponse[DropOut](items=[DropOut.of(s) for s in page.items], next_cursor=page.next_cursor)


@router.get("/drops/stats", response_model=DropStatsOut)
async def drop_stats(
    svc: Svc,
    account: CurrentAccount,
    use_case_id: Annotated[str | None, Query(max_length=40)] = None,
    setup_id: Annotated[str | None, Query(max_length=40)] = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
) -> DropStatsOut:
    """Counts per status, the share left in voicemail and failure reasons of drops created in
    [created_after, created_before)."""
    where = SendFilter(
        use_case_id=use_case_id,
        setup_id=setup_id,
        created_after=created_after,
        created_before=created_before,
        kind=SendKind.DROP,
    )
    return DropStatsOut.of(await svc.ringless.stats(account.id, where))


@router.get("/drops/{drop_id}", response_model=DropDetailOut, responses={404: _PROBLEM})
async def get_drop(drop_id: str, svc: Svc, account: CurrentAccount) -> DropDetailOut:
    detail = await svc.ringless.get_send(account.id, drop_id, SendKind.DROP)
    base = DropOut.of(detail.send)
    return DropDetailOut(**base.model_dump(), attempts=[AttemptOut.of(a) for a in detail.attempts])


@router.post(
    "/drops/{drop_id}/cancel",
    response_model=DropOut,
    responses={404: _PROBLEM, 409: {**_PROBLEM, "description": "drop-not-cancellable"}},
)
async def cancel_drop(drop_id: str, svc: Svc, account: CurrentAccount) -> DropOut:
    """Stop a drop before its first attempt: it ends `skipped` with reason `cancelled`."""
    return DropOut.of(await svc.ringless.cancel_send(account.id, drop_id, SendKind.DROP))
