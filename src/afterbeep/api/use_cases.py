"""/v1/use-cases routes: which setup a channel sends through, and the sending rules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.multipart import invalid_field
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.ringless import (
    DEFAULT_CAP_ATTEMPTS,
    DEFAULT_CAP_PERIOD_HOURS,
    DEFAULT_FIRST_CALL_BOUND_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_SECONDS,
    DEFAULT_SECOND_CALL_DELAY_MS,
    MAX_FIRST_CALL_BOUND_MS,
    MAX_SECOND_CALL_DELAY_MS,
    MIN_SECOND_CALL_DELAY_MS,
    CallingWindow,
    Channel,
    RecipientCap,
    SenderSelection,
    UseCase,
)
from afterbeep.services.ringless import UseCaseSpec, parse_hhmm

router = APIRouter(tags=["use cases"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _PROBLEM}

HHMM = Annotated[str, Field(pattern=r"^\d\d:\d\d$", examples=["08:00"])]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=2000)]
SetupId = Annotated[str, Field(min_length=1, max_length=40)]
Phone = Annotated[str, Field(min_length=1, max_length=32)]
Attempts = Annotated[int, Field(ge=1, le=10)]
Backoff = Annotated[int, Field(ge=1, le=86_400, description="the first retry's delay; doubles")]
UseCaseId = Annotated[str, Field(min_length=1, max_length=40)]
SecondCallDelay = Annotated[
    int,
    Field(
        ge=MIN_SECOND_CALL_DELAY_MS,
        le=MAX_SECOND_CALL_DELAY_MS,
        description="drops, two-call technique: when call 2 is placed after call 1 (ms)",
    ),
]
FirstCallBound = Annotated[
    int,
    Field(
        ge=MIN_SECOND_CALL_DELAY_MS,
        le=MAX_FIRST_CALL_BOUND_MS,
        description="drops, two-call technique: call 1 is cancelled by then at the latest (ms)",
    ),
]
DROP_ONLY = ("second_call_delay_ms", "first_call_bound_ms")


class WindowIn(StrictModel):
    start: HHMM = "08:00"
    end: HHMM = "21:00"


class CapIn(StrictModel):
    attempts: Annotated[int, Field(ge=1, le=100)] = DEFAULT_CAP_ATTEMPTS
    period_hours: Annotated[int, Field(ge=1, le=2160)] = DEFAULT_CAP_PERIOD_HOURS


class UseCaseCreate(StrictModel):
    channel: Channel = Field(description="`ringless_voicemail` or `voicemail_drop`")
    name: Name
    description: Description | None = None
    setup_id: SetupId
    sender_selection: SenderSelection = SenderSelection.ROUND_ROBIN
    sender_number: Phone | None = Field(default=None, description="required for `fixed`")
    require_consent: bool = True
    calling_window: WindowIn = WindowIn()
    max_attempts: Attempts = DEFAULT_MAX_ATTEMPTS
    retry_backoff_seconds: Backoff = DEFAULT_RETRY_BACKOFF_SECONDS
    recipient_cap: CapIn = CapIn()
    fallback_use_case_id: UseCaseId | None = Field(
        default=None,
        description="ringless only: a voicemail_drop use case that delivers when no deposit applies",
    )
    second_call_delay_ms: SecondCallDelay | None = None
    first_call_bound_ms: FirstCallBound | None = None


@with_config(ConfigDict(extra="forbid"))
class UseCaseUpdate(TypedDict, total=False):
    """Only the fields given change."""

    channel: Channel
    name: Name
    description: Description | None
    setup_id: SetupId
    sender_selection: SenderSelection
    sender_number: Phone | None
    require_consent: bool
    calling_window: WindowIn
    max_attempts: Attempts
    retry_backoff_seconds: Backoff
    recipient_cap: CapIn
    fallback_use_case_id: UseCaseId | None
    second_call_delay_ms: SecondCallDelay
    first_call_bound_ms: FirstCallBound


class WindowOut(BaseModel):
    start: str
    end: str


class CapOut(BaseModel):
    attempts: int
    period_hours: int


class UseCaseOut(BaseModel):
    id: str
    channel: Channel
    name: str
    description: str | None
    setup_id: str
    sender_selection: SenderSelection
    sender_number: str | None
    require_consent: bool
    calling_window: WindowOut
    max_attempts: int
    retry_backoff_seconds: int
    recipient_cap: CapOut
    fallback_use_case_id: str | None
    second_call_delay_ms: int | None = Field(description="voicemail_drop only")
    first_call_bound_ms: int | None = Field(description="voicemail_drop only")
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, uc: UseCase) -> UseCaseOut:
        drop = uc.channel is Channel.VOICEMAIL_DROP
        return cls(
            id=uc.id,
            channel=uc.channel,
            name=uc.name,
            description=uc.description,
            setup_id=uc.setup_id,
            sender_selection=uc.sender_selection,
            sender_number=uc.sender_number,
            require_consent=uc.require_consent,
            calling_window=WindowOut(
                start=uc.calling_window.start.strftime("%H:%M"),
                end=uc.calling_window.end.strftime("%H:%M"),
            ),
            max_attempts=uc.max_attempts,
            retry_backoff_seconds=uc.retry_backoff_seconds,
            recipient_cap=CapOut(
                attempts=uc.recipient_cap.attempts, period_hours=uc.recipient_cap.period_hours
            ),
            fallback_use_case_id=uc.fallback_use_case_id,
            second_call_delay_ms=uc.second_call_delay_ms if drop else None,
            first_call_bound_ms=uc.first_call_bound_ms if drop else None,
            created_at=iso(uc.created_at),
            updated_at=iso(uc.updated_at),
        )


def _window(w: WindowIn) -> CallingWindow:
    return CallingWindow(
        parse_hhmm(w.start, "calling_window.start"), parse_hhmm(w.end, "calling_window.end")
    )


def _cap(c: CapIn) -> RecipientCap:
    return RecipientCap(c.attempts, c.period_hours)


@router.post("/use-cases", status_code=201, response_model=UseCaseOut, responses={422: _PROBLEM})
async def create_use_case(
    body: UseCaseCreate, response: Response, svc: Svc, account: CurrentAccount
) -> UseCaseOut:
    if body.channel is not Channel.VOICEMAIL_DROP:
        for name in DROP_ONLY:
            if getattr(body, name) is not None:
                raise invalid_field(name, "is for voicemail_drop use cases only")
    spec = UseCaseSpec(
        name=body.name,
        setup_id=body.setup_id,
        channel=body.channel,
        description=body.description,
        sender_selection=body.sender_selection,
        sender_number=body.sender_number,
        require_consent=body.require_consent,
        calling_window=_window(body.calling_window),
        max_attempts=body.max_attempts,
        retry_backoff_seconds=body.retry_backoff_seconds,
        recipient_cap=_cap(body.recipient_cap),
        fallback_use_case_id=body.fallback_use_case_id,
        second_call_delay_ms=body.second_call_delay_ms or DEFAULT_SECOND_CALL_DELAY_MS,
        first_call_bound_ms=body.first_call_bound_ms or DEFAULT_FIRST_CALL_BOUND_MS,
    )
    use_case = await svc.ringless.create_use_case(account.id, spec)
    response.headers["Location"] = f"/v1/use-cases/{use_case.id}"
    return UseCaseOut.of(use_case)


@router.get("/use-cases", response_model=ListResponse[UseCaseOut])
async def list_use_cases(
    svc: Svc,
    account: CurrentAccount,
    channel: Channel | None = None,
    setup_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResponse[UseCaseOut]:
    page = await svc.ringless.list_use_cases(account.id, channel, setup_id, cursor, limit)
    return ListResponse[UseCaseOut](
        items=[UseCaseOut.of(u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get("/use-cases/{use_case_id}", response_model=UseCaseOut, responses=_NOT_FOUND)
async def get_use_case(use_case_id: str, svc: Svc, account: CurrentAccount) -> UseCaseOut:
    return UseCaseOut.of(await svc.ringless.get_use_case(account.id, use_case_id))


@router.patch(
    "/use-cases/{use_case_id}", response_model=UseCaseOut, responses={**_NOT_FOUND, 422: _PROBLEM}
)
async def update_use_case(
    use_case_id: str, body: UseCaseUpdate, svc: Svc, account: CurrentAccount
) -> UseCaseOut:
    changes: dict[str, Any] = dict(body)
    if any(name in body for name in DROP_ONLY):
        current = await svc.ringless.get_use_case(account.id, use_case_id)
        if body.get("channel", current.channel) is not Channel.VOICEMAIL_DROP:
            name = next(n for n in DROP_ONLY if n in body)
            raise invalid_field(name, "is for voicemail_drop use cases only")
    if "calling_window" in body:
        changes["calling_window"] = _window(WindowIn.model_validate(body["calling_window"]))
    if "recipient_cap" in body:
        changes["recipient_cap"] = _cap(CapIn.model_validate(body["recipient_cap"]))
    return UseCaseOut.of(await svc.ringless.update_use_case(account.id, use_case_id, changes))


@router.delete(
    "/use-cases/{use_case_id}",
    status_code=204,
    response_class=Response,
    responses={**_NOT_FOUND, 409: {**_PROBLEM, "description": "use-case-in-use"}},
)
async def delete_use_case(use_case_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.ringless.delete_use_case(account.id, use_case_id)
    return Response(status_code=204)
