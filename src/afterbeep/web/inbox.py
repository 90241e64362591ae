"""The visual voicemail: the mailboxes a member sees, their messages (live), a message's page
with its player and actions. Data comes from `MailboxService` and `MessageService`, as the
API's does; what a member may see is `domain.members.sees_mailbox`."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from afterbeep.audio.peaks import peaks
from afterbeep.audio.rendition import read_wav_pcm
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.members import Member, Role, sees_mailbox
from afterbeep.domain.messages import Folder, Message
from afterbeep.services.mailboxes import MailboxView
from afterbeep.services.messages import message_audio_link
from afterbeep.services.ports import Page
from afterbeep.services.ports.transcripts import MessageFilter
from afterbeep.services.transcripts import QUERY_MAX
from afterbeep.web.session import (
    Form,
    PageError,
    SignedIn,
    Web,
    WebServices,
    not_found,
)
from afterbeep.web.templating import page, templates

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_MAILBOXES = 1000  # listed for one member, at most
PEAK_BINS = 160
PEAKS_MAX_BYTES = 12 * 1024 * 1024  # longer recordings get no waveform
PEAKS_CACHED = 512
LIVE_STREAMS_PER_MEMBER = 4  # open inboxes (tabs) of one member that get live updates

FolderParam = Annotated[Folder | None, Query()]
Cursor = Annotated[str | None, Query(max_length=100)]
Undo = Annotated[str | None, Query(max_length=40)]
Search = Annotated[str | None, Query(max_length=QUERY_MAX)]

# Waveform peaks by (message id, audio ETag): computed once per process.
_peaks_cache: collections.OrderedDict[tuple[str, str], list[float]] = collections.OrderedDict()


async def linked_voicemail(web: WebServices, member: Member) -> str | None:
    """The mailbox (`voicemail_id`) of the user a `member` is linked to, if any."""
    if member.role is not Role.MEMBER or member.user_id is None or web.api.users is None:
        return None
    try:
        user = await web.api.users.get_user(member.account_id, member.user_id)
    except NotFound:
        return None
    return user.voicemail_id


async def visible_mailboxes(web: WebServices, member: Member) -> list[MailboxView]:
    views: list[MailboxView] = []
    cursor: str | None = None
    linked = await linked_voicemail(web, member)
    while len(views) < MAX_MAILBOXES:
        found = await web.mailboxes.list(member.account_id, cursor, 100)
        views += [v for v in found.items if sees_mailbox(member, v.mailbox, linked)]
        cursor = found.next_cursor
        if cursor is None:
            break
    return sorted(views, key=lambda v: (v.mailbox.name.lower(), v.mailbox.id))


async def visible_mailbox(web: WebServices, member: Member, mailbox_id: str) -> MailboxView:
    try:
        view = await web.mailboxes.get(member.account_id, mailbox_id)
    except NotFound as exc:
        raise not_found() from exc
    if not sees_mailbox(member, view.mailbox, await linked_voicemail(web, member)):
        raise not_found()
    return view


async def visible_message(
    web: WebServices, member: Member, message_id: str
) -> tuple[Message, MailboxView]:
    try:
        message = await web.messages.get(member.account_id, message_id)
    except NotFound as exc:
        raise not_found() from exc
    return message, await visible_mailbox(web, member, message.mailbox_id)


def audio_url(web: WebServices, message: Message) -> str:
    """A signed path to the recording (relative: it works whatever host the browser used)."""
    return message_audio_link("", web.secret_key, message.id, now=web.clock.now()).url


async def waveform(web: WebServices, message: Message) -> list[float]:
    try:
        audio = await web.messages.audio(message.account_id, message.id)
    except NotFound:
        return []
    key = (message.id, audio.etag)
    cached = _peaks_cache.get(key)
    if cached is not None:
        _peaks_cache.move_to_end(key)
        return cached
    if not 0 < audio.size <= PEAKS_MAX_BYTES:
        return []
    stream = await web.messages.open_audio(audio, 0, audio.size - 1)
    chunks: list[bytes] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        await stream.aclose()
    try:
        pcm, _rate = await asyncio.to_thread(read_wav_pcm, b"".join(chunks))
    except Exception:  # a recording that cannot be read plays (or not) without a waveform
        return []
    found = await asyncio.to_thread(peaks, pcm, PEAK_BINS)
    _peaks_cache[key] = found
    while len(_peaks_cache) > PEAKS_CACHED:
        _peaks_cache.popitem(last=False)
    return found


@router.get("/inbox")
async def inbox(request: Request, web: Web, who: SignedIn) -> Response:
    if who.signed_in.role is Role.AGENT:  # agents never see mailboxes: their page is the console
        return RedirectResponse("/console", status_code=303)
    views = await visible_mailboxes(web, who.signed_in)
    if views:
        return RedirectResponse(f"/inbox/{views[0].mailbox.id}", status_code=303)
    context: dict[str, object] = {"csrf": who.csrf, "member": who.member, "views": [], "current": None}
    return page(request, "inbox.html", context)


@router.get("/inbox/{mailbox_id}")
async def mailbox_page(
    request: Request,
    mailbox_id: str,
    web: Web,
    who: SignedIn,
    folder: FolderParam = None,
    cursor: Cursor = None,
    undo: Undo = None,
    q: Search = None,
) -> Response:
    member = who.signed_in
    current = await visible_mailbox(web, member, mailbox_id)
    q = (q or "").strip() or None
    search_error = None
    try:
        if q is not None:
            # The search of `GET /v1/messages?q=`, in this mailbox (and folder).
            found = await web.api.transcripts.search_messages(
                member.account_id, q, MessageFilter(mailbox_id, folder), cursor=cursor, limit=PAGE_SIZE
            )
        else:
            found = await web.messages.list(
                member.account_id, mailbox_id, folder=folder, cursor=cursor, limit=PAGE_SIZE
            )
    except InvalidInput as exc:
        if q is None:
            raise not_found() from exc
        found, search_error = Page([], None), exc.message
    context = {
        "csrf": who.csrf,
        "member": member,
        "views": await visible_mailboxes(web, member),
        "current": current,
        "folder": folder,
        "folders": list(Folder),
        "messages": found.items,
        "next_cursor": found.next_cursor,
        "undo": undo,
        "q": q,
        "search_error": search_error,
    }
    return page(request, "inbox.html", context)


@router.get("/inbox/{mailbox_id}/live")
async def live(
    request: Request, mailbox_id: str, web: Web, who: SignedIn, folder: FolderParam = None
) -> Response:
    """Server-sent events: each message that arrives in the mailbox, as its list row.

    Messages are stored by the post-call process, so this looks at the mailbox every
    `live_poll_seconds` (one indexed query). A stream ends after `live_stream_seconds` or when
    the service stops; the browser's EventSource then reconnects by itself."""
    member = who.signed_in
    current = await visible_mailbox(web, member, mailbox_id)
    if web.live_streams.get(member.id, 0) >= LIVE_STREAMS_PER_MEMBER:
        raise PageError(
            429, "Too many open inboxes", "Close another tab of the inbox to get live updates here."
        )
    zone = current.mailbox.timezone
    first = await web.messages.list(member.account_id, mailbox_id, folder=folder, limit=PAGE_SIZE)
    seen = {m.id for m in first.items}
    row = templates.env.get_template("_message_row.html")

    async def _events() -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + web.live_stream_seconds
        yield "retry: 2000\n\n"
        while not web.closing() and loop.time() < ends:
            await asyncio.sleep(web.live_poll_seconds)
            try:
                latest = await web.live_messages.list(
                    member.account_id, mailbox_id, folder=folder, limit=PAGE_SIZE
                )
                fresh = [m for m in latest.items if m.id not in seen]
                if not fresh:
                    continue
                usage = await web.live_messages.mailbox_usage(member.account_id, mailbox_id)
            except NotFound:
                return  # the mailbox was deleted
            for message in reversed(fresh):
                seen.add(message.id)
                data = {
                    "id": message.id,
                    "html": row.render(m=message, zone=zone),
                    "total": usage.messages,
                    "unread": usage.unread,
                }
                yield f"event: message\ndata: {json.dumps(data)}\n\n"

    return live_stream(web, member.id, _events())


def live_stream(
    web: WebServices,
    member_id: str,
    frames: AsyncGenerator[str, None],
    on_close: Callable[[], None] | None = None,
) -> StreamingResponse:
    """Server-sent ``frames``, counted among the member's open live pages while they run."""

    async def counted() -> AsyncIterator[str]:
        web.live_streams[member_id] = web.live_streams.get(member_id, 0) + 1
        try:
            async with contextlib.aclosing(frames) as stream:
                async for text in stream:
                    yield text
        finally:
            if on_close is not None:
                on_close()
            left = web.live_streams.pop(member_id, 1) - 1
            if left > 0:
                web.live_streams[member_id] = left

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(counted(), media_type="text/event-stream", headers=headers)


def _message_context(who: SignedIn, web: WebServices, message: Message) -> dict[str, object]:
    return {
        "csrf": who.csrf,
        "member": who.member,
        "m": message,
        "folders": list(Folder),
        "audio_url": f"/messages/{message.id}/audio",
    }


@router.get("/messages/{message_id}/audio")
async def message_audio(message_id: str, web: Web, who: SignedIn) -> Response:
    """To a fresh signed link of the recording (307: the browser repeats its Range request
    there). The page's player and download point here, so they work however long the page
    stays open, while each link lives 15 minutes at most."""
    message, _ = await visible_message(web, who.signed_in, message_id)
    return RedirectResponse(
        audio_url(web, message), status_code=307, headers={"Cache-Control": "no-store"}
    )


@router.get("/messages/{message_id}")
async def message_page(request: Request, message_id: str, web: Web, who: SignedIn) -> Response:
    message, view = await visible_message(web, who.signed_in, message_id)
    context = {
        **_message_context(who, web, message),
        "mailbox": view.mailbox,
        "peaks": await waveform(web, message),
    }
    return page(request, "message.html", context)


async def _changed(request: Request, web: WebServices, who: SignedIn, message: Message) -> Response:
    """The actions again for htmx (which swaps them in place), else back to the message."""
    if request.headers.get("hx-request") == "true":
        return page(request, "_actions.html", _message_context(who, web, message))
    return RedirectResponse(f"/messages/{message.id}", status_code=303)


@router.post("/messages/{message_id}/read")
async def mark_read(
    request: Request, message_id: str, web: Web, who: SignedIn, form: Form
) -> Response:
    message, _ = await visible_message(web, who.signed_in, message_id)
    changed = await web.messages.update(message.account_id, message.id, read=True)
    return await _changed(request, web, who, changed)


@router.post("/messages/{message_id}/unread")
async def mark_unread(
    request: Request, message_id: str, web: Web, who: SignedIn, form: Form
) -> Response:
    message, _ = await visible_message(web, who.signed_in, message_id)
    changed = await web.messages.update(message.account_id, message.id, read=False)
    return await _changed(request, web, who, changed)


@router.post("/messages/{message_id}/folder")
async def move(request: Request, message_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    message, _ = await visible_message(web, who.signed_in, message_id)
    try:
        folder = Folder(str(form.get("folder", "")))
    except ValueError as exc:
        raise not_found() from exc
    changed = await web.messages.update(message.account_id, message.id, folder=folder)
    return await _changed(request, web, who, changed)


@router.post("/messages/{message_id}/delete")
async def delete(message_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    message, _ = await visible_message(web, who.signed_in, message_id)
    await web.messages.trash(message.account_id, message.id)
    return RedirectResponse(f"/inbox/{message.mailbox_id}?undo={message.id}", status_code=303)


@router.post("/messages/{message_id}/restore")
async def restore(message_id: str, web: Web, who: SignedIn, form: Form) -> Response:
    member = who.signed_in
    mailboxes = (
        None
        if member.role is Role.ADMIN
        else {v.mailbox.id for v in await visible_mailboxes(web, member)}
    )
    try:
        message = await web.messages.restore(member.account_id, message_id, mailboxes)
    except NotFound as exc:
        raise PageError(
            404,
            "Not found",
            "There is no deleted message of yours to restore here: a deleted message can be "
            "restored for a minute only.",
        ) from exc
    return RedirectResponse(f"/messages/{message.id}", status_code=303)
