"""Streaming multipart/form-data for upload routes: one file field plus a few short text fields.

We drive python-multipart's `MultipartParser` ourselves instead of declaring `UploadFile`
parameters: FastAPI would otherwise spool the whole body before the handler runs, so a size
limit could only be checked after the fact. Here the file part goes straight into the service's
`StagedUpload`, which refuses it (413) the moment it passes its limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from afterbeep.api.problems import ProblemError
from afterbeep.domain.errors import PayloadTooLarge
from afterbeep.domain.media import clean_name
from afterbeep.services.media import StagedUpload

# Room for boundaries, part headers and the text fields around the file part.
FORM_OVERHEAD_BYTES = 64 * 1024
# File bytes are handed to the upload (a worker-thread write each time) in pieces of at least
# this much, or at the end: a typical MP3 of a send is then one write, not one per chunk.
WRITE_BYTES = 1024 * 1024


def malformed(detail: str) -> ProblemError:
    return ProblemError(400, "malformed-multipart", "Malformed multipart body", detail)


def invalid_field(name: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "validation-failed",
        "Validation failed",
        "the request is not valid",
        errors=[{"field": name, "message": message}],
    )


@dataclass
class StreamingForm:
    """Callbacks for `MultipartParser`: file bytes collect in `pending`, text fields in `fields`."""

    file_field: str
    text_fields: frozenset[str]
    max_text_bytes: int
    unknown_message: str = "unknown field"
    repeated_message: str = "send it once"
    file_seen: bool = False
    filename: str | None = None
    fields: dict[str, bytearray] = field(default_factory=dict)
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
            raise malformed("every part needs Content-Disposition: form-data with a name")
        name = field_name.decode("utf-8", "replace")
        if name == self.file_field:
            if self.file_seen:
                raise invalid_field(name, "send one file")
            self.file_seen = True
            raw_filename = options.get(b"filename")
            if raw_filename is not None:
                self.filename = clean_name(
                    raw_filename.decode("utf-8", "replace").rsplit("/", 1)[-1]
                )
        elif name in self.text_fields:
            if name in self.fields:
                raise invalid_field(name, self.repeated_message)
            self.fields[name] = bytearray()
        else:
            raise invalid_field(name[:100], self.unknown_message)
        self._part = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == self.file_field:
            self.pending += data[start:end]
        elif self._part is not None:
            value = self.fields[self._part]
            value += data[start:end]
            if len(value) > self.max_text_bytes:
                raise invalid_field(self._part, "too long")

    def _end(self) -> None:
        self.finished = True

    def text(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, raw in self.fields.items():
            try:
                out[name] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise invalid_field(name, "must be UTF-8 text") from exc
        return out


async def receive_form(
    request: Request, boundary: bytes, upload: StagedUpload, form: StreamingForm
) -> StreamingForm:
    """Stream the multipart body into `form` and `upload`; stops as soon as a limit is passed."""
    body_limit = upload.max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(upload.max_bytes)
    try:
        parser = form.parser(boundary)
    except ValueError as exc:
        raise malformed(str(exc)) from exc
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise PayloadTooLarge(upload.max_bytes)
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise malformed("the multipart body does not parse") from exc
            if form.pending:
                if upload.size + len(form.pending) > upload.max_bytes:
                    raise PayloadTooLarge(upload.max_bytes)
                if len(form.pending) >= WRITE_BYTES:
                    await upload.write(bytes(form.pending))
                    form.pending.clear()
    except ClientDisconnect as exc:
        raise malformed("the client went away during the upload") from exc
    if not form.finished:
        raise malformed("the body ends before the closing boundary")
    if form.pending:
        await upload.write(bytes(form.pending))
        form.pending.clear()
    if not form.file_seen:
        raise invalid_field(form.file_field, "Field required")
    return form
