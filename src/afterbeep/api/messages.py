"""/v1/messages routes: read, move, delete messages; their audio, and signed links to it.

Audio streams from the object store with HTTP Range (`afterbeep.api.ranges`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from afterbeep.api import ranges
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.problems import ProblemError
from afterbeep.api.query_params import MessagesAfter, MessagesBefore
from afterbeep.api.schemas import ListResponse, StrictModel
from afterbeep.db.repos._paging import MAX_LIMIT
from afterbeep.domain.clock import iso
from afterbeep.domain.messages import Folder, Message, to_json
from afterbeep.domain.transcripts import TranscriptionStatus
from afterbeep.services.messages import LINK_TTL_SECONDS, MessageAudio
from afterbeep.services.ports import Page
from afterbeep.services.ports.transcripts import MessageFilter
from afterbeep.services.transcripts import QUERY_MAX

router = APIRouter(tags=["messages"])

# The route tests import the range parser from here.

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
_AUDIO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"audio/wav": {}}, "description": "the whole recording"},
    206: {"content": {"audio/wav": {}}, "description": "the requested byte range"},
    404: _PROBLEM,
    416: {**_PROBLEM, "description": "the range lies outside the recording"},
}


class SegmentOut(BaseModel):
    start_ms: int = Field(description="from the start of the recording")
    end_ms: int
    text: str
    confidence: float | None = Field(description="0 to 1, when the engine gives one")


class TranscriptOut(BaseModel):
    text: str
    language: str = Field(description="BCP 47 tag the message was transcribed in")
    segments: list[SegmentOut]
    confidence: float | None


class MessageOut(BaseModel):
    id: str
    mailbox_id: str
    call_id: str
    caller: str | None = Field(description="E.164 number or SIP URI")
    caller_name: str | None
    callee: str | None
    duration_ms: int
    folder: Folder
    read: bool
    size_bytes: int
    recovered: bool = Field(description="rescued from the recording spool after a crash")
    created_at: str
    updated_at: str
    transcript: TranscriptOut | None = Field(description="present once transcription_status is done")
    transcription_status: TranscriptionStatus
    transcription_reason: str | None = Field(description="why it failed or was skipped")

    @classmethod
    def of(cls, message: Message) -> MessageOut:
        return cls.model_validate(to_json(message))


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=100)]
SearchQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=QUERY_MAX,
        description="words that must all be in the transcript; the best matches come first",
    ),
]


def message_list(page: Page[Message]) -> ListResponse[MessageOut]:
    return ListResponse[MessageOut](
        items=[MessageOut.of(m) for m in page.items], next_cursor=page.next_cursor
    )


@with_config(ConfigDict(extra="forbid"))
class MessageUpdate(TypedDict, total=False):
    """Move the message to another folder and/or mark it read or unread."""

    folder: Folder
    read: bool


class AudioLinkIn(StrictModel):
    ttl_seconds: int = Field(default=LINK_TTL_SECONDS, ge=1, le=LINK_TTL_SECONDS)


class AudioLinkOut(BaseModel):
    url: str = Field(description="fetchable without an API key until expires_at")
    expires_at: str


@router.get("/messages", responses={422: _PROBLEM})
async def list_account_messages(
    svc: Svc,
    account: CurrentAccount,
    q: SearchQuery = None,
    folder: Folder | None = None,
    created_after: MessagesAfter = None,
    created_before: MessagesBefore = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> ListResponse[MessageOut]:
    """The account's messages in every mailbox: newest first, or with `q` those whose transcript
    holds every word of it, best match first."""
    if q is not None:
        where = MessageFilter(None, folder, created_after, created_before)
        found = await svc.transcripts.search_messages(
            account.id, q, where, cursor=cursor, limit=limit
        )
        return message_list(found)
    page = await svc.messages.list(
        account.id,
        None,
        folder=folder,
        created_after=created_after,
        created_before=created_before,
        cursor=cursor,
        limit=limit,
    )
    return message_list(page)


@router.get("/messages/{message_id}", responses={404: _PROBLEM})
async def get_message(message_id: str, svc: Svc, account: CurrentAccount) -> MessageOut:
    return MessageOut.of(await svc.messages.get(account.id, message_id))


@router.patch("/messages/{message_id}", responses={404: _PROBLEM, 422: _PROBLEM})
async def update_message(
    message_id: str, body: MessageUpdate, svc: Svc, account: CurrentAccount
) -> MessageOut:
    message = await svc.messages.update(
        account.id, message_id, folder=body.get("folder"), read=body.get("read")
    )
    return MessageOut.of(message)


@router.delete(
    "/messages/{message_id}", status_code=204, response_class=Response, responses={404: _PROBLEM}
)
async def delete_message(message_id: str, svc: Svc, account: CurrentAccount) -> Response:
    """Deletes the message and its recording."""
    await svc.messages.delete(account.id, message_id)
    return Response(status_code=204)


RangeHeader = Annotated[str | None, Header(alias="range")]
IfRangeHeader = Annotated[str | None, Header(alias="if-range")]


@router.get("/messages/{message_id}/audio", response_class=Response, responses=_AUDIO_RESPONSES)
async def message_audio(
    request: Request,
    message_id: str,
    svc: Svc,
    account: CurrentAccount,
    range_header: RangeHeader = None,
    if_range: IfRangeHeader = None,
) -> Response:
    """The recording as WAV."""
    audio = await svc.messages.audio(account.id, message_id)
    return await _audio_response(request, svc, audio, range_header, if_range)


@router.post("/messages/{message_id}/audio-link", responses={404: _PROBLEM, 422: _PROBLEM})
async def audio_link(
    message_id: str, svc: Svc, account: CurrentAccount, body: AudioLinkIn | None = None
) -> AudioLinkOut:
    """A short-lived URL (at most 15 minutes) to the recording, for a browser or an email."""
    ttl = body.ttl_seconds if body is not None else LINK_TTL_SECONDS
    link = await svc.messages.audio_link(
        account.id,
        message_id,
        public_url=svc.public_url,
        secret_key=svc.secret_key,
        ttl_seconds=ttl,
    )
    return AudioLinkOut(url=link.url, expires_at=iso(link.expires_at))


@router.get(
    "/links/messages/{message_id}/audio",
    response_class=Response,
    responses={**_AUDIO_RESPONSES, 403: {**_PROBLEM, "description": "bad or expired link"}},
)
async def linked_message_audio(
    request: Request,
    message_id: str,
    svc: Svc,
    exp: Annotated[str, Query(max_length=20)],
    sig: Annotated[str, Query(max_length=100)],
    range_header: RangeHeader = None,
    if_range: IfRangeHeader = None,
) -> Response:
    """The recording for the holder of a signed link from `POST .../audio-link` (no API key)."""
    audio = await svc.messages.audio_by_link(message_id, exp, sig, svc.secret_key)
    if audio is None:
        raise ProblemError(
            403, "invalid-link", "Invalid link", "the link is not valid or has expired"
        )
    return await _audio_response(request, svc, audio, range_header, if_range)


async def _audio_response(
    request: Request, svc: Svc, audio: MessageAudio, range_header: str | None, if_range: str | None
) -> Response:
    return await ranges.ranged_response(
        size=audio.size,
        etag=audio.etag,
        content_type=audio.content_type,
        open_range=lambda start, end: svc.messages.open_audio(audio, start, end),
        instance=request.url.path,
        range_header=range_header,
        if_range=if_range,
        cache_control="private, no-store",
        noun="recording",
    )
