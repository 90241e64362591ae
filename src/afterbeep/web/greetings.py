"""A mailbox's greetings: listen to each, upload a file or one recorded in the browser
(`app.js`: MediaRecorder, then sent as WAV), set it as the unavailable, busy or temporary
greeting, or clear it. The file goes through `MediaService` as `POST /v1/media` does, the
choice through `MailboxService.update` as `PATCH /v1/mailboxes/{id}` does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from python_multipart.multipart import parse_options_header
from starlette.responses import RedirectResponse, Response

from afterbeep.api.multipart import StreamingForm, receive_form
from afterbeep.api.problems import ProblemError
from afterbeep.api.ranges import ranged_response
from afterbeep.domain.errors import (
    InvalidAudio,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
)
from afterbeep.domain.mailboxes import Mailbox
from afterbeep.domain.media import Rendition
from afterbeep.web.inbox import visible_mailbox
from afterbeep.web.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    Form,
    PageError,
    SignedIn,
    Web,
    check_csrf,
    not_found,
)
from afterbeep.web.templating import page

router = APIRouter(include_in_schema=False)

# kind → (mailbox field, what the page calls it, when callers hear it)
KINDS: dict[str, tuple[str, str, str]] = {
    "unavailable": (
        "greeting_media_id",
        "Unavailable",
        "Callers hear it when no one answers (or the system greeting if none is set).",
    ),
    "busy": (
        "busy_greeting_media_id",
        "Busy",
        "For callers sent here while the owner is busy (do not disturb, or every phone busy).",
    ),
    "temporary": (
        "temp_greeting_media_id",
        "Temporary",
        "While set, callers hear it instead of the unavailable greeting (holidays, closures).",
    ),
}
Kind = Annotated[str, Path(pattern="^(unavailable|busy|temporary)$")]
Saved = Annotated[str | None, Query(max_length=20)]
FILE_FIELD = "file"
MAX_TEXT_BYTES = 4 * 1024


def _greeting_id(mailbox: Mailbox, kind: str) -> str | None:
    value = getattr(mailbox, KINDS[kind][0])
    return value if isinstance(value, str) else None


@router.get("/inbox/{mailbox_id}/greetings")
async def greetings_page(
    request: Request, mailbox_id: str, web: Web, who: SignedIn, saved: Saved = None
) -> Response:
    view = await visible_mailbox(web, who.signed_in, mailbox_id)
    mailbox = view.mailbox
    greetings = []
    for kind, (_field, label, about) in KINDS.items():
        media_id = _greeting_id(mailbox, kind)
        media = None
        if media_id is not None:
            try:
                media = await web.api.media.get(mailbox.account_id, media_id)
            except NotFound:
                media = None
        greetings.append({"kind": kind, "label": label, "about": about, "media": media})
    context = {
        "csrf": who.csrf,
        "member": who.member,
        "mailbox": mailbox,
        "greetings": greetings,
        "kinds": [(k, v[1]) for k, v in KINDS.items()],
        "playing": "temporary" if mailbox.temp_greeting_media_id else "unavailable",
        "saved": saved in KINDS,
    }
    return page(request, "greetings.html", context)


@router.get("/inbox/{mailbox_id}/greetings/{kind}/audio")
async def greeting_audio(
    request: Request,
    mailbox_id: str,
    kind: Kind,
    web: Web,
    who: SignedIn,
    range_header: Annotated[str | None, Header(alias="range")] = None,
    if_range: Annotated[str | None, Header(alias="if-range")] = None,
) -> Response:
    """The greeting as uploaded, with HTTP Range as `GET /v1/media/{id}/audio` answers it."""
    view = await visible_mailbox(web, who.signed_in, mailbox_id)
    media_id = _greeting_id(view.mailbox, kind)
    if media_id is None:
        raise not_found()
    media_svc = web.api.media
    try:
        stored = await media_svc.audio(view.mailbox.account_id, media_id, Rendition.ORIGINAL)
    except NotFound as exc:
        raise not_found() from exc
    return await ranged_response(
        size=stored.size,
        etag=stored.etag,
        content_type=stored.content_type,
        open_range=lambda start, end: media_svc.open_audio(stored, start, end),
        instance=request.url.path,
        range_header=range_header,
        if_range=if_range,
        cache_control="private, no-cache",
        noun="file",
    )


@router.post("/inbox/{mailbox_id}/greetings")
async def upload_greeting(request: Request, mailbox_id: str, web: Web, who: SignedIn) -> Response:
    """A multipart form: `file`, `kind`, `csrf` (or the X-CSRF-Token header)."""
    member = who.signed_in
    header_token = request.headers.get(CSRF_HEADER)
    if header_token is not None:
        check_csrf(who, header_token)  # before a byte of the file is read
    view = await visible_mailbox(web, member, mailbox_id)
    media_svc = web.api.media
    with media_svc.start_upload() as upload:
        content_type, params = parse_options_header(request.headers.get("content-type"))
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise PageError(415, "Not a file upload", "Send the form with its file.")
        form = StreamingForm(
            FILE_FIELD, frozenset({CSRF_FIELD, "kind", "name"}), MAX_TEXT_BYTES
        )
        try:
            await receive_form(request, boundary, upload, form)
        except PayloadTooLarge as exc:
            raise PageError(413, "Too large", str(exc)) from exc
        except ProblemError as exc:
            raise PageError(exc.status, exc.title, exc.detail or "The form could not be read.") from exc
        fields = form.text()
        if header_token is None:
            check_csrf(who, fields.get(CSRF_FIELD, ""))
        kind = fields.get("kind", "")
        if kind not in KINDS:
            raise PageError(422, "Which greeting?", "Choose unavailable, busy or temporary.")
        name = fields.get("name") or form.filename or f"{kind} greeting"
        try:
            media, _new = await media_svc.import_upload(member.account_id, upload, name[:200])
        except (InvalidAudio, PayloadTooLarge, QuotaExceeded, InvalidInput) as exc:
            raise PageError(422, "Not a usable greeting", str(exc)) from exc
    await web.mailboxes.update(member.account_id, view.mailbox.id, {KINDS[kind][0]: media.id})
    return RedirectResponse(f"/inbox/{view.mailbox.id}/greetings?saved={kind}", status_code=303)


@router.post("/inbox/{mailbox_id}/greetings/{kind}/clear")
async def clear_greeting(mailbox_id: str, kind: Kind, web: Web, who: SignedIn, form: Form) -> Response:
    view = await visible_mailbox(web, who.signed_in, mailbox_id)
    await web.mailboxes.update(view.mailbox.account_id, view.mailbox.id, {KINDS[kind][0]: None})
    return RedirectResponse(f"/inbox/{view.mailbox.id}/greetings", status_code=303)
