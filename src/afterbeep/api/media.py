"""/v1/media routes: upload, list, fetch, download (with HTTP Range) and delete media files.

The upload reads the request body itself, through python-multipart's streaming parser, instead
of declaring `UploadFile` parameters: FastAPI would otherwise spool the whole multipart body
before the handler runs, so the size limit could only be checked after the fact. Here the file
part goes straight into the service's `StagedUpload`, which refuses it (413) the moment it
passes the limit.

Downloads stream from the object store with HTTP Range (`afterbeep.api.ranges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from afterbeep.api import ranges
from afterbeep.api.deps import CurrentAccount, Svc
from afterbeep.api.problems import ProblemError
from afterbeep.api.schemas import ListResponse
from afterbeep.domain.clock import iso
from afterbeep.domain.errors import PayloadTooLarge
from afterbeep.domain.media import Media, Rendition, clean_name
from afterbeep.services.media import StagedUpload

router = APIRouter(tags=["media"])

# The route tests import the range parser from here.

# Room for boundaries, part headers and the name field around the file part.
FORM_OVERHEAD_BYTES = 64 * 1024
MAX_NAME_FIELD_BYTES = 4 * 1024
DEFAULT_NAME = "untitled"
FILE_FIELD = "file"
NAME_FIELD = "name"


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
    sha256: str
    created_at: str

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
            sha256=media.sha256,
            created_at=iso(media.created_at),
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
                    },
                    "required": [FILE_FIELD],
                }
            }
        },
    }
}


# -- upload -----------------------------------------------------------------------


def _malformed(detail: str) -> ProblemError:
    return ProblemError(400, "malformed-multipart", "Malformed multipart body", detail)


def _invalid_field(name: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "validation-failed",
        "Validation failed",
        "the request is not valid",
        errors=[{"field": name, "message": message}],
    )


@dataclass
class _UploadForm:
    """Callbacks for `MultipartParser`: the file part's bytes collect in `pending` per chunk."""

    file_seen: bool = False
    filename: str | None = None
    name: bytearray | None = None
    finished: bool = False
    pending: bytearray = field(default_factory=bytearray)
    _part: str | None = None
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _header_field: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)

    def parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
        )

    def _part_begin(self) -> None:
        self._part = None
        self._headers = {}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_field).strip().lower()] = bytes(self._header_value).strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        field_name = options.get(b"name")
        if disposition != b"form-data" or field_name is None:
            raise _malformed("every part needs Content-Disposition: form-data with a name")
        name = field_name.decode("utf-8", "replace")
        if name == FILE_FIELD:
            if self.file_seen:
                raise _invalid_field(FILE_FIELD, "send one file")
            self.file_seen = True
            raw_filename = options.get(b"filename")
            if raw_filename is not None:
                self.filename = clean_name(
                    raw_filename.decode("utf-8", "replace").rsplit("/", 1)[-1]
                )
        elif name == NAME_FIELD:
            if self.name is not None:
                raise _invalid_field(NAME_FIELD, "send one name")
            self.name = bytearray()
        else:
            raise _invalid_field(name[:100], "unknown field; this form takes file and name")
        self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == FILE_FIELD:
            self.pending += data[start:end]
        elif self._part == NAME_FIELD and self.name is not None:
            self.name += data[start:end]
            if len(self.name) > MAX_NAME_FIELD_BYTES:
                raise _invalid_field(NAME_FIELD, "too long")

    def _end(self) -> None:
        self.finished = True

    def display_name(self) -> str:
        if self.name is not None:
            try:
                return self.name.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _invalid_field(NAME_FIELD, "must be UTF-8 text") from exc
        return self.filename or DEFAULT_NAME


async def _receive_form(request: Request, upload: StagedUpload) -> _UploadForm:
    """Stream the multipart body into `upload`; stops reading as soon as a limit is passed."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "send multipart/form-data with a file field",
        )
    body_limit = upload.max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(upload.max_bytes)
    form = _UploadForm()
    try:
        parser = form.parser(boundary)
    except ValueError as exc:
        raise _malformed(str(exc)) from exc
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise PayloadTooLarge(upload.max_bytes)
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise _malformed("the multipart body does not parse") from exc
            if form.pending:
                await upload.write(bytes(form.pending))
                form.pending.clear()
    except ClientDisconnect as exc:
        raise _malformed("the client went away during the upload") from exc
    if not form.finished:
        raise _malformed("the body ends before the closing boundary")
    if not form.file_seen:
        raise _invalid_field(FILE_FIELD, "Field required")
    return form


@router.post(
    "/media",
    status_code=201,
    response_model=MediaOut,
    openapi_extra=_UPLOAD_OPENAPI,
    responses={
        400: {"content": _PROBLEM, "description": "malformed multipart body"},
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
        form = await _receive_form(request, upload)
        media = await svc.media.import_upload(account.id, upload, form.display_name())
    response.headers["Location"] = f"/v1/media/{media.id}"
    return MediaOut.of(media)


# -- reading ----------------------------------------------------------------------


@router.get("/media", response_model=ListResponse[MediaOut])
async def list_media(
    svc: Svc,
    account: CurrentAccount,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> ListResponse[MediaOut]:
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
        409: {"content": _PROBLEM, "description": "used as a greeting"},
    },
)
async def delete_media(media_id: str, svc: Svc, account: CurrentAccount) -> Response:
    await svc.media.delete(account.id, media_id)
    return Response(status_code=204)
