"""/v1/media routes: upload, list, fetch, download (with HTTP Range) and delete media files.

The upload reads the request body itself with `afterbeep.api.multipart`'s streaming form, so
the file part goes straight into the service's `StagedUpload`, which refuses it (413) the
moment it passes the limit.

An upload of audio the account already holds (same sha256) answers 200 with that media instead
of storing a copy. `purpose=voicemail` applies the rules of a send's audio (MP3, 10 to 60 s,
8 MB) before anything is stored, so a client that uploads first and sends by `media_id` (the
CLI) leaves nothing behind when the audio is refused.

Downloads stream from the object store with HTTP Range (`afterbeep.api.ranges`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field
from python_multipart.multipart import parse_options_header

from afterbeep.api import ranges
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.messages import SearchQuery, TranscriptOut
from afterbeep.api.multipart import StreamingForm, invalid_field, receive_form
from afterbeep.api.problems import ProblemError
from afterbeep.api.schemas import ListResponse
from afterbeep.domain.clock import iso
from afterbeep.domain.media import ImportRules, Media, Rendition
from afterbeep.domain.transcripts import TranscriptionStatus
from afterbeep.services.ringless import SEND_RULES

router = APIRouter(tags=["media"])

MAX_NAME_FIELD_BYTES = 4 * 1024
DEFAULT_NAME = "untitled"
FILE_FIELD = "file"
NAME_FIELD = "name"
PURPOSE_FIELD = "purpose"
TRANSCRIBE_FIELD = "transcribe"
_BOOLEANS = {"true": True, "false": False}
PURPOSES: dict[str, ImportRules | None] = {"library": None, "voicemail": SEND_RULES}


class MediaOut(BaseModel):
    id: str
    account_id: str
    name: str
    format: str
    content_type: str
    duration_ms: int
    sample_rate: int
    channels: int
    size_bytes: int
    stored_bytes: int
    sha256: str
    created_at: str
    transcript: TranscriptOut | None = None
    transcription_status: TranscriptionStatus | None = Field(
        default=None, description="null unless asked for with `transcribe` on upload"
    )
    transcription_reason: str | None = None

    @classmethod
    def of(cls, media: Media) -> MediaOut:
        return cls(
            id=media.id,
            account_id=media.account_id,
            name=media.name,
            format=media.format,
            content_type=media.content_type,
            duration_ms=media.duration_ms,
            sample_rate=media.sample_rate,
            channels=media.channels,
            size_bytes=media.size_bytes,
            stored_bytes=media.stored_bytes,
            sha256=media.sha256,
            created_at=iso(media.created_at),
            transcript=(
                TranscriptOut.model_validate(media.transcript.as_dict())
                if media.transcript is not None
                else None
            ),
            transcription_status=media.transcription_status,
            transcription_reason=media.transcription_reason,
        )


_PROBLEM: dict[str, Any] = {"application/problem+json": {}}
_UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "the audio file",
                        },
                        NAME_FIELD: {
                            "type": "string",
                            "maxLength": 255,
                            "description": "display name",
                        },
                        PURPOSE_FIELD: {
                            "type": "string",
                            "enum": list(PURPOSES),
                            "description": "voicemail: refuse audio a send would refuse",
                        },
                        TRANSCRIBE_FIELD: {
                            "type": "string",
                            "enum": list(_BOOLEANS),
                            "description": "true: transcribe the audio (in the account's "
                            "language), for search",
                        },
                    },
                    "required": [FILE_FIELD],
                }
            }
        },
    }
}


# -- upload -----------------------------------------------------------------------


def _display_name(form: StreamingForm) -> str:
    name = form.text().get(NAME_FIELD)
    return name if name is not None else form.filename or DEFAULT_NAME


@router.post(
    "/media",
    status_code=201,
    response_model=MediaOut,
    openapi_extra=_UPLOAD_OPENAPI,
    responses={
        200: {"model": MediaOut, "description": "the account already holds this audio"},
        400: {"content": _PROBLEM, "description": "malformed multipart body"},
        409: {"content": _PROBLEM, "description": "the account's media storage is full"},
        413: {"content": _PROBLEM, "description": "the file is over the upload limit"},
        415: {"content": _PROBLEM, "description": "not multipart/form-data"},
        422: {"content": _PROBLEM, "description": "not decodable audio, or a missing field"},
    },
)
async def upload_media(
    request: Request, response: Response, svc: Svc, account: CurrentAccount
) -> MediaOut:
    """Upload an audio file (MP3, WAV, FLAC, OGG, ... anything that decodes) as form field `file`."""
    with svc.media.start_upload() as upload:
        content_type, params = parse_options_header(request.headers.get("content-type"))
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise ProblemError(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send multipart/form-data with a file field",
            )
        form = StreamingForm(
            FILE_FIELD,
            frozenset({NAME_FIELD, PURPOSE_FIELD, TRANSCRIBE_FIELD}),
            MAX_NAME_FIELD_BYTES,
            unknown_message="unknown field; this form takes file, name, purpose and transcribe",
            repeated_message="send one name, one purpose and one transcribe",
        )
        await receive_form(request, boundary, upload, form)
        purpose = form.text().get(PURPOSE_FIELD, "library")
        if purpose not in PURPOSES:
            raise invalid_field(PURPOSE_FIELD, f"must be one of {', '.join(PURPOSES)}")
        transcribe = _BOOLEANS.get(form.text().get(TRANSCRIBE_FIELD, "false").lower())
        if transcribe is None:
            raise invalid_field(TRANSCRIBE_FIELD, "must be true or false")
        media, created = await svc.media.import_upload(
            account.id, upload, _display_name(form), PURPOSES[purpose]
        )
    if transcribe:
        media = await svc.transcripts.request_media(account.id, media.id)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/media/{media.id}"
    return MediaOut.of(media)


# -- reading ----------------------------------------------------------------------


@router.get("/media", response_model=ListResponse[MediaOut])
async def list_media(
    svc: Svc,
    account: CurrentAccount,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    q: SearchQuery = None,
) -> ListResponse[MediaOut]:
    """Newest first; with `q`, the media transcribed on upload whose transcript holds every
    word of it, best match first."""
    if q is not None:
        page = await svc.transcripts.search_media(account.id, q, cursor=cursor, limit=limit)
    else:
        page = await svc.media.list(account.id, cursor, limit)
    return ListResponse[MediaOut](
        items=[MediaOut.of(m) for m in page.items], next_cursor=page.next_cursor
    )


@router.get("/media/{media_id}", response_model=MediaOut, responses={404: {"content": _PROBLEM}})
async def get_media(media_id: str, svc: Svc, account: CurrentAccount) -> MediaOut:
    return MediaOut.of(await svc.media.get(account.id, media_id))


@router.get(
    "/media/{media_id}/audio",
    response_class=Response,
    responses={
        200: {"content": {"audio/*": {}}, "description": "the whole file"},
        206: {"content": {"audio/*": {}}, "description": "the requested byte range"},
        404: {"content": _PROBLEM},
        416: {"content": _PROBLEM, "description": "the range lies outside the file"},
    },
)
async def media_audio(
    request: Request,
    media_id: str,
    svc: Svc,
    account: CurrentAccount,
    rendition: Rendition = Rendition.ORIGINAL,
    range_header: Annotated[str | None, Header(alias="range")] = None,
    if_range: Annotated[str | None, Header(alias="if-range")] = None,
) -> Response:
    """The original as uploaded, or `?rendition=telephony` for the 8 kHz mono 16-bit WAV."""
    audio = await svc.media.audio(account.id, media_id, rendition)
    return await ranges.ranged_response(
        size=audio.size,
        etag=audio.etag,
        content_type=audio.content_type,
        open_range=lambda start, end: svc.media.open_audio(audio, start, end),
        instance=request.url.path,
        range_header=range_header,
        if_range=if_range,
        cache_control="private, no-cache",
        noun="file",
    )


# -- deleting ---------------------------------------------------------------------


@router.delete(
    "/media/{media_id}",
    status_code=204,
    response_class=Response,
    responses={
        404: {"content": _PROBLEM},
        409: {
            "content": _PROBLEM,
            "description": "used as a greeting, or played by a flow's current version",
        },
    },
)
async def delete_media(media_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.media.delete(account.id, media_id)
    return Response(status_code=204)
