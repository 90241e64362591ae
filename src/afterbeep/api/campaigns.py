"""/v1/campaigns routes: create a campaign from a list or a CSV upload, follow its progress,
pause, resume or cancel it.

`POST /v1/campaigns` takes JSON (`recipients` as a list of numbers) or multipart/form-data (a
`recipients` CSV file streamed into a size-limited `StagedUpload` with
`afterbeep.api.multipart`, plus the same fields as text). A recipient list with invalid numbers
is refused with 422 `invalid-recipients` naming the rows (the first 100), and nothing is stored,
unless `skip_invalid` is true: then the campaign is created without them and the response lists
them. Duplicate numbers count once.

A campaign's sends are listed with `/v1/voicemails?campaign_id=` (ringless) or
`/v1/drops?campaign_id=` (drops); `/v1/campaigns/{id}/sends` redirects there.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import AwareDatetime, BaseModel, Field
from python_multipart.multipart import parse_options_header

from afterbeep.api.bodies import json_body, validated
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.multipart import StreamingForm, receive_form
from afterbeep.api.problems import ProblemError
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.campaigns import (
    MAX_CSV_BYTES,
    MAX_RECIPIENTS,
    CampaignStatus,
    InvalidRecipients,
    RecipientError,
)
from afterbeep.domain.clock import iso
from afterbeep.domain.ringless import DropTechnique, SendKind
from afterbeep.services.campaigns import CampaignCreated, CampaignSpec, CampaignView

router = APIRouter(tags=["campaigns"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
RECIPIENTS_FIELD = "recipients"
TEXT_FIELDS = frozenset(
    {"use_case_id", "media_id", "method", "technique", "name", "start_at", "skip_invalid"}
)
MAX_FIELD_BYTES = 4 * 1024
# A list of MAX_RECIPIENTS numbers in JSON, with room for formatting.
MAX_JSON_BYTES = 6 * 1024 * 1024
SENDS_PATH = {SendKind.RINGLESS: "/v1/voicemails", SendKind.DROP: "/v1/drops"}


class CampaignFields(StrictModel):
    use_case_id: Annotated[str, Field(min_length=1, max_length=40)]
    media_id: Annotated[str, Field(min_length=1, max_length=40)]
    method: SendKind | None = Field(
        default=None, description="ringless or drop; by default the use case's channel decides"
    )
    technique: DropTechnique | None = Field(default=None, description="drops only; two_call")
    name: Annotated[str, Field(max_length=200)] | None = None
    start_at: AwareDatetime | None = None
    skip_invalid: bool = Field(
        default=False, description="create the campaign without the invalid recipients"
    )


class CampaignJson(CampaignFields):
    recipients: list[Annotated[str, Field(max_length=64)]] = Field(
        description=f"phone numbers (at most {MAX_RECIPIENTS})"
    )


class CampaignOut(BaseModel):
    id: str
    name: str | None
    use_case_id: str
    media_id: str
    method: SendKind
    technique: DropTechnique | None
    status: CampaignStatus
    start_at: str | None
    recipients_total: int
    recipients_finished: int = Field(description="sends in a final status")
    progress: dict[str, int] = Field(description="sends per status; adds up to recipients_total")
    sends_url: str
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, view: CampaignView) -> CampaignOut:
        c = view.campaign
        return cls(
            id=c.id,
            name=c.name,
            use_case_id=c.use_case_id,
            media_id=c.media_id,
            method=c.method,
            technique=c.technique,
            status=view.status,
            start_at=iso(c.start_at) if c.start_at else None,
            recipients_total=c.recipients_total,
            recipients_finished=view.progress.finished,
            progress={s.value: n for s, n in view.progress.counts.items()},
            sends_url=f"{SENDS_PATH[c.method]}?{urlencode({'campaign_id': c.id})}",
            created_at=iso(c.created_at),
            updated_at=iso(c.updated_at),
        )


class RecipientErrorOut(BaseModel):
    row: int = Field(description="1-based position in the list, or CSV record (header counted)")
    reason: str

    @classmethod
    def of(cls, error: RecipientError) -> RecipientErrorOut:
        return cls(row=error.row, reason=error.reason)


class CampaignCreatedOut(CampaignOut):
    invalid_recipients: list[RecipientErrorOut] = Field(
        description="invalid rows left out (skip_invalid), the first 100"
    )
    invalid_count: int
    duplicates_removed: int

    @classmethod
    def created(cls, result: CampaignCreated) -> CampaignCreatedOut:
        return cls(
            **CampaignOut.of(result.view).model_dump(),
            invalid_recipients=[RecipientErrorOut.of(e) for e in result.invalid],
            invalid_count=result.invalid_count,
            duplicates_removed=result.duplicates,
        )


def _spec(fields: CampaignFields) -> CampaignSpec:
    return CampaignSpec(
        use_case_id=fields.use_case_id,
        media_id=fields.media_id,
        method=fields.method,
        technique=fields.technique,
        name=fields.name,
        start_at=fields.start_at,
        skip_invalid=fields.skip_invalid,
    )


def _invalid_recipients(exc: InvalidRecipients) -> ProblemError:
    return ProblemError(
        422,
        exc.error_id,
        "Invalid recipients",
        exc.message,
        invalid_count=exc.invalid_count,
        invalid_recipients=[RecipientErrorOut.of(e).model_dump() for e in exc.errors],
    )


_CREATE_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": CampaignJson.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        RECIPIENTS_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV: a `to` or `number` column, or a single column",
                        },
                        **{
                            name: {"type": "string"}
                            for name in sorted(TEXT_FIELDS)
                        },
                    },
                    "required": [RECIPIENTS_FIELD, "use_case_id", "media_id"],
                }
            },
        },
    }
}


@router.post(
    "/campaigns",
    status_code=201,
    response_model=CampaignCreatedOut,
    openapi_extra=_CREATE_OPENAPI,
    responses={
        400: {**_PROBLEM, "description": "malformed body"},
        413: {**_PROBLEM, "description": "the CSV or JSON body is too large"},
        415: {**_PROBLEM, "description": "neither JSON nor multipart/form-data"},
        422: {
            **_PROBLEM,
            "description": "invalid-recipients (with the rows), wrong-channel, "
            "unknown-reference, no-recipients, too-many-recipients, bad-csv, invalid-audio",
        },
    },
)
async def create_campaign(request: Request, svc: Svc, account: CurrentAccount) -> CampaignCreatedOut:
    """Create a campaign: one send per unique recipient, delivered from `start_at` (or now)."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    try:
        if content_type == b"application/json":
            body = validated(CampaignJson, await json_body(request, MAX_JSON_BYTES))
            result = await svc.campaigns.create(
                account.id, _spec(body), recipients=body.recipients
            )
            return CampaignCreatedOut.created(result)
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise ProblemError(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send JSON with a recipients list, or multipart/form-data with a recipients CSV",
            )
        with svc.media.start_upload(max_bytes=MAX_CSV_BYTES) as upload:
            form = StreamingForm(RECIPIENTS_FIELD, TEXT_FIELDS, MAX_FIELD_BYTES)
            await receive_form(request, boundary, upload, form)
            upload.close()
            fields = validated(CampaignFields, form.text())
            result = await svc.campaigns.create(account.id, _spec(fields), csv_path=upload.path)
        return CampaignCreatedOut.created(result)
    except InvalidRecipients as exc:
        raise _invalid_recipients(exc) from exc


@router.get("/campaigns", response_model=ListResponse[CampaignOut])
async def list_campaigns(
    svc: Svc,
    account: CurrentAccount,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ListResponse[CampaignOut]:
    page = await svc.campaigns.list(account.id, cursor, limit)
    return ListResponse[CampaignOut](
        items=[CampaignOut.of(v) for v in page.items], next_cursor=page.next_cursor
    )


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, responses={404: _PROBLEM})
async def get_campaign(campaign_id: str, svc: Svc, account: CurrentAccount) -> CampaignOut:
    return CampaignOut.of(await svc.campaigns.get(account.id, campaign_id))


async def _passed_on(
    use_case_id: str | None = None,
    setup_id: str | None = None,
    status: str | None = None,
    to: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
) -> None:
    """The query parameters the redirect passes on; the list it redirects to checks them."""


@router.get(
    "/campaigns/{campaign_id}/sends",
    status_code=307,
    response_class=RedirectResponse,
    responses={404: _PROBLEM},
    dependencies=[Depends(_passed_on)],
)
async def campaign_sends(
    campaign_id: str, request: Request, svc: Svc, account: CurrentAccount
) -> RedirectResponse:
    """Redirects to the send list filtered by this campaign (query parameters kept)."""
    view = await svc.campaigns.get(account.id, campaign_id)
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "campaign_id"]
    query.append(("campaign_id", view.campaign.id))
    return RedirectResponse(f"{SENDS_PATH[view.campaign.method]}?{urlencode(query)}", 307)


_TRANSITION: dict[int | str, dict[str, Any]] = {409: {**_PROBLEM, "description": "campaign-transition-not-allowed"}, 404: _PROBLEM}


@router.post("/campaigns/{campaign_id}/pause", response_model=CampaignOut, responses=_TRANSITION)
async def pause_campaign(campaign_id: str, svc: Svc, account: CurrentAccount) -> CampaignOut:
    """Sends not yet attempted wait (`paused`); sends in flight finish."""
    return CampaignOut.of(await svc.campaigns.pause(account.id, campaign_id))


@router.post("/campaigns/{campaign_id}/resume", response_model=CampaignOut, responses=_TRANSITION)
async def resume_campaign(campaign_id: str, svc: Svc, account: CurrentAccount) -> CampaignOut:
    return CampaignOut.of(await svc.campaigns.resume(account.id, campaign_id))


@router.post("/campaigns/{campaign_id}/cancel", response_model=CampaignOut, responses=_TRANSITION)
async def cancel_campaign(campaign_id: str, svc: Svc, account: CurrentAccount) -> CampaignOut:
    """Sends not yet attempted end `skipped` (`campaign_canceled`); sends in flight finish."""
    return CampaignOut.of(await svc.campaigns.cancel(account.id, campaign_id))
