"""Email notifications: composing them (text, HTML, the WAV attached), sending them over SMTP,
and the worker that sends what the email outbox holds.

aiosmtplib does the protocol (plain, STARTTLS or implicit TLS, optional AUTH); its errors are
translated here into `TemporaryEmailError` (retry later) and `PermanentEmailError` (give up).

A message's WAV is not held in memory: the new-message email carries a `StreamedAttachment`
(the stored object opened, not read), and `SmtpSender` base64-encodes it chunk by chunk into
the DATA command, waiting for the socket to drain between chunks, so a five-minute recording
costs a few chunks of memory, not the WAV plus its base64 plus the flattened email. aiosmtplib
has no streaming DATA, so `_stream_data` does that command with its protocol's lock, write,
drain and reply reading (aiosmtplib is pinned in constraints.txt; tests/notify cover it).

`EmailDispatcher` is an `afterbeep.notify.outbox.OutboxWorker` over `email_outbox`: it claims
due rows under a lease, builds each email from the current message and mailbox (the WAV opened in
storage when `attach_audio`, the time in the mailbox's zone, a fresh signed listen link),
sends it, and records the outcome (see `afterbeep.services.notifications` for the retry rules
and the `notification.failed` event). Delivery is at least once: a crash between the server's
250 and the recording of it sends the email again after the lease.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import email.policy
import functools
import html
import logging
import re
import secrets
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
import aiosmtplib.email
import numpy as np
import pybase64
from aiosmtplib.protocol import LINE_ENDINGS_REGEX as _LONE_EOL
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from afterbeep.config import SmtpTarget
from afterbeep.domain.clock import Clock
from afterbeep.domain.transcripts import TranscriptionStatus
from afterbeep.notify.outbox import OutboxWorker
from afterbeep.services import notifications as rules
from afterbeep.services.mailboxes import find_mailbox
from afterbeep.services.messages import message_audio_link
from afterbeep.services.ports import UnitOfWorkFactory
from afterbeep.services.ports.notifications import (
    ClaimedNotification,
    NotificationKind,
    NotificationOutcome,
    NotificationStatus,
)
from afterbeep.services.ports.storage import (
    ByteStream,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StorageUnavailable,
)

log = logging.getLogger("afterbeep.email")

# Bigger recordings are not attached (many servers refuse mail over 10-25 MB); the link stays.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
_B64_LINE = 76
_SPLICE_OVER = 4096  # characters of base64 body from which `wire_bytes` splices it in
_B64_IN = 57  # input bytes of one 76-column base64 line


class EmailError(Exception):
    pass


class TemporaryEmailError(EmailError):
    """The server is down or answered 4xx: try again later."""


class PermanentEmailError(EmailError):
    """The server refused the message or the recipient for good (5xx)."""


@dataclass(frozen=True, slots=True)
class NewMessageMail:
    to_addr: str
    mailbox_name: str
    timezone: str
    caller: str | None
    caller_name: str | None
    duration_ms: int
    received_at: datetime
    listen_url: str
    wav: bytes | None
    message_id: str
    audio_too_large: bool = False
    inbox_url: str | None = None  # the message's page (it asks to sign in first)
    transcript: str | None = None
    # Still being transcribed when the email went: it says the transcript will follow.
    transcript_pending: bool = False
    # The WAV as an opened stored object, streamed while the email is sent (instead of `wav`).
    audio: ByteStream | None = None


TRANSCRIPT_FOLLOWS = "The transcript is not ready yet; it will follow in the inbox."


class _HeaderClasses(HeaderRegistry):
    """`HeaderRegistry`, but one class per header name: the stdlib builds a new class with
    `type()` for every header it parses, about a third of the time it takes to compose an
    email."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


_POLICY = email.policy.default.clone(header_factory=_HeaderClasses())

# Headers written once, as they go on the wire (`_Prebuilt`).
_MAX_LINE = 78  # RFC 5322's SHOULD
_ENCODED_WORD_BYTES = 42  # of UTF-8 per encoded word: "Subject: =?utf-8?b?<56>?=" is 77 columns
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_TOKEN = re.compile(r"[A-Za-z0-9._-]+")


class _Prebuilt(str):
    """A header encoded and folded once, when the email is composed: stored, read and written
    as it is. The stdlib's headers are parsed when set, parsed again each time they are read
    (every `get_content_type` while the message is flattened) and refolded when written, most
    of the CPU an email took. The value (the `str`) is the decoded text, as the stdlib's is."""

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, value: str, lines: Sequence[str]) -> _Prebuilt:
        header = super().__new__(cls, value)
        header.name = name
        header.lines = tuple(lines)
        return header

    def fold(self, *, policy: email.policy.Policy[Any]) -> str:
        return policy.linesep.join(self.lines) + policy.linesep

    @property
    def content_disposition(self) -> str:  # as `ContentDispositionHeader` (`is_attachment`)
        return self.partition(";")[0].strip().lower()


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 base64 encoded words of UTF-8, a character never split across two."""
    chunks: list[bytes] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _ENCODED_WORD_BYTES:
            chunks.append(chunk)
            chunk = b""
        chunk += data
    if chunk or not chunks:
        chunks.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(c).decode('ascii')}?=" for c in chunks]


def _text_header(name: str, value: str) -> _Prebuilt:
    """An unstructured header (a subject): ASCII folded at its spaces, anything else (or a
    word too long to fold) as encoded words, one a line. Control characters become spaces
    (a caller's name comes from the far end)."""
    value = _CONTROLS.sub(" ", value)
    pieces = re.findall(r" *[^ ]+| +$", value) if value.isascii() else []
    if value.isascii() and all(len(piece) < _MAX_LINE - len(name) - 2 for piece in pieces):
        lines: list[str] = []
        line = f"{name}:"
        for index, piece in enumerate(pieces):
            if index == 0 and not piece.startswith(" "):
                piece = " " + piece
            if len(line) + len(piece) > _MAX_LINE and line != f"{name}:":
                lines.append(line)
                line = piece  # folded before its white space (RFC 5322 2.2.3)
            else:
                line += piece
        lines.append(line if pieces else f"{name}: ")
        return _Prebuilt(name, value, lines)
    words = _encoded_words(value)
    return _Prebuilt(name, value, [f"{name}: {words[0]}", *(f" {word}" for word in words[1:])])


@functools.lru_cache(maxsize=1024)
def _address_header(name: str, value: str) -> _Prebuilt | str:
    """From, To: folded by the stdlib once per address (they repeat: one sender, the owners),
    ASCII only; other values are left to the stdlib (SMTPUTF8 writes them otherwise)."""
    if not value.isascii():
        return value
    parsed = _POLICY.header_factory(name, value)
    if parsed.defects or "\r" in value or "\n" in value:
        return value  # the stdlib's own checks and messages
    folded = parsed.fold(policy=email.policy.SMTP)
    return _Prebuilt(name, str(parsed), folded.split("\r\n")[:-1])


def _plain_header(name: str, value: str) -> _Prebuilt:
    """A header whose value is ASCII and short, as written here (Content-Type, Date ...)."""
    return _Prebuilt(name, value, [f"{name}: {value}"])


def _text_part(text: str, subtype: str) -> EmailMessage:
    """What `set_content(text, subtype=...)` makes, UTF-8, 7bit when it can be, else
    quoted-printable (`binascii`, in C): never 8bit, so nothing is re-encoded for a server
    without 8BITMIME."""
    lines = text.splitlines()
    body = "\n".join(lines) + "\n"
    if body.isascii() and max(map(len, lines), default=0) <= _MAX_LINE:
        cte = "7bit"
    else:
        cte = "quoted-printable"
        body = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    part = EmailMessage(policy=_POLICY)
    part["Content-Type"] = _plain_header("Content-Type", f'text/{subtype}; charset="utf-8"')
    part["Content-Transfer-Encoding"] = _plain_header("Content-Transfer-Encoding", cte)
    part.set_payload(body)
    return part


def _multipart(msg: EmailMessage, subtype: str, parts: list[EmailMessage]) -> None:
    boundary = f"===============afterbeep{secrets.token_hex(12)}=="
    content_type = f'multipart/{subtype}; boundary="{boundary}"'
    lines = [f"Content-Type: multipart/{subtype};", f' boundary="{boundary}"']
    msg["Content-Type"] = _Prebuilt("Content-Type", content_type, lines)
    for part in parts:
        msg.attach(part)


def duration_text(duration_ms: int) -> str:
    seconds = round(duration_ms / 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _local(moment: datetime, timezone: str) -> str:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%A %d %B %Y, %H:%M %Z")


def _caller_text(caller: str | None, caller_name: str | None) -> str:
    if caller_name and caller:
        return f"{caller_name} ({caller})"
    return caller_name or caller or "an unknown caller"


def compose_new_message(mail: NewMessageMail, from_addr: str) -> EmailMessage:
    who = _caller_text(mail.caller, mail.caller_name)
    length = duration_text(mail.duration_ms)
    when = _local(mail.received_at, mail.timezone)
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = _text_header("Subject", f"New voicemail from {who} ({length})")
    msg["From"] = _address_header("From", from_addr)
    msg["To"] = _address_header("To", mail.to_addr)
    msg["Date"] = _plain_header("Date", formatdate(localtime=False))
    msg["Message-ID"] = _plain_header(
        "Message-ID", make_msgid(idstring=_CONTROLS.sub("", mail.message_id), domain="afterbeep")
    )
    msg["X-Afterbeep-Message"] = _text_header("X-Afterbeep-Message", mail.message_id)
    msg["MIME-Version"] = _plain_header("MIME-Version", "1.0")
    text = (
        f"You have a new voicemail in {mail.mailbox_name}.\n\n"
        f"From: {who}\nReceived: {when}\nLength: {length}\n\n"
        f"Listen: {mail.listen_url}\n(the link expires within 15 minutes; the API and the inbox keep the message)\n"
    )
    if mail.inbox_url:
        text += f"Open it in the inbox: {mail.inbox_url}\n"
    if mail.audio_too_large:
        text += "\nThe recording is too large to attach; listen with the link above.\n"
    e = html.escape
    transcript_html = ""
    if mail.transcript is not None:
        text += f"\nTranscript:\n{mail.transcript}\n"
        transcript_html = f"<p><b>Transcript</b></p><blockquote>{e(mail.transcript)}</blockquote>"
    elif mail.transcript_pending:
        text += f"\n{TRANSCRIPT_FOLLOWS}\n"
        transcript_html = f"<p>{e(TRANSCRIPT_FOLLOWS)}</p>"
    page = (
        "<html><body>"
        f"<p>You have a new voicemail in <b>{e(mail.mailbox_name)}</b>.</p>"
        "<table>"
        f"<tr><td>From</td><td>{e(who)}</td></tr>"
        f"<tr><td>Received</td><td>{e(when)}</td></tr>"
        f"<tr><td>Length</td><td>{e(length)}</td></tr>"
        "</table>"
        f"{transcript_html}"
        f'<p><a href="{e(mail.listen_url, quote=True)}">Listen to the message</a></p>'
        + (
            f'<p><a href="{e(mail.inbox_url, quote=True)}">Open it in the inbox</a></p>'
            if mail.inbox_url
            else ""
        )
        + "</body></html>"
    )
    body = [_text_part(text, "plain"), _text_part(page, "html")]
    if mail.wav is None and mail.audio is None:
        _multipart(msg, "alternative", body)
        return msg
    alternative = EmailMessage(policy=_POLICY)
    _multipart(alternative, "alternative", body)
    filename = f"{mail.message_id}.wav"
    attachment: EmailMessage
    if mail.wav is not None:
        attachment = EmailMessage(policy=_POLICY)
        _attachment_headers(attachment, "audio/wav", filename)
        attachment.set_payload(_base64_lines(mail.wav).decode("ascii"))
    else:
        assert mail.audio is not None
        attachment = StreamedAttachment(mail.audio, _POLICY)
        _attachment_headers(attachment, "audio/wav", filename)
        attachment.set_payload(attachment.token)
    _multipart(msg, "mixed", [alternative, attachment])
    return msg


def _attachment_headers(part: EmailMessage, content_type: str, filename: str) -> None:
    """As `add_attachment` writes them (same order, same bytes), built once."""
    if not _TOKEN.fullmatch(filename) or not _TOKEN.fullmatch(content_type.replace("/", "")):
        part["Content-Type"] = content_type
        part["Content-Transfer-Encoding"] = "base64"
        part.add_header("Content-Disposition", "attachment", filename=filename)
        part["MIME-Version"] = "1.0"
        return
    part["Content-Type"] = _plain_header("Content-Type", content_type)
    part["Content-Transfer-Encoding"] = _plain_header("Content-Transfer-Encoding", "base64")
    disposition = f'attachment; filename="{filename}"'
    part["Content-Disposition"] = _plain_header("Content-Disposition", disposition)
    part["MIME-Version"] = _plain_header("MIME-Version", "1.0")  # as EmailMessage.set_content


def attach_base64(msg: EmailMessage, data: bytes, content_type: str, filename: str) -> None:
    """`msg.add_attachment(data, ...)`, with the base64 done by `base64.encodebytes` (C) rather
    than line by line in Python by `email.contentmanager`: same headers, same 76-column body."""
    part = EmailMessage(policy=msg.policy)
    _attachment_headers(part, content_type, filename)
    part.set_payload(_base64_lines(data).decode("ascii"))
    msg.make_mixed()
    msg.attach(part)


class StreamedAttachment(EmailMessage):
    """An attachment part whose body is not in the message: `source` (an opened stored object)
    is base64-encoded while `SmtpSender` sends the email. Its payload is a token that marks
    where that body goes in the flattened message. A source is read once: close it
    (`aclose`) if the email is not sent."""

    def __init__(self, source: ByteStream, policy: email.policy.Policy[Any]) -> None:
        super().__init__(policy=policy)
        self.source = source
        self.token = f"afterbeep-stream-{secrets.token_hex(16)}"


def attach_stream(msg: EmailMessage, source: ByteStream, content_type: str, filename: str) -> None:
    """As `attach_base64`, the bytes read from `source` when the email is sent."""
    part = StreamedAttachment(source, msg.policy)
    _attachment_headers(part, content_type, filename)
    part.set_payload(part.token)
    msg.make_mixed()
    msg.attach(part)


def streamed_parts(message: EmailMessage) -> list[StreamedAttachment]:
    return [part for part in message.walk() if isinstance(part, StreamedAttachment)]


def _base64_lines(data: bytes | memoryview, eol: bytes = b"\n") -> bytes:
    """`base64.encodebytes(data)` (76 columns, each line ending in `eol`), in a few C calls:
    that one loops in Python over every 57-byte chunk, about 3 ms for a 12 s WAV; and the
    encoding itself by pybase64 (SIMD), 25 times binascii's speed."""
    encoded = pybase64.b64encode(data)
    rows, rest = divmod(len(encoded), _B64_LINE)
    lines = np.empty((rows, _B64_LINE + len(eol)), dtype=np.uint8)
    lines[:, :_B64_LINE] = np.frombuffer(encoded, np.uint8, rows * _B64_LINE).reshape(
        rows, _B64_LINE
    )
    lines[:, _B64_LINE:] = np.frombuffer(eol, np.uint8)
    return lines.tobytes() + (encoded[-rest:] + eol if rest else b"")


async def base64_wire(source: ByteStream) -> AsyncIterator[bytes]:
    """The base64 body of `source` as it goes on the wire (76 columns, CRLF), a chunk of it
    per chunk read: input is cut on whole lines (57 bytes) and the rest carried over."""
    carry = b""
    async for chunk in source:
        data = carry + chunk if carry else chunk
        whole = len(data) - len(data) % _B64_IN
        if whole:
            yield _base64_lines(memoryview(data)[:whole], b"\r\n")
        carry = data[whole:]
    if carry:
        yield _base64_lines(carry, b"\r\n")


def wire_segments(
    message: EmailMessage, *, utf8: bool = False, cte_type: str = "8bit"
) -> list[bytes | StreamedAttachment]:
    """The flattened message (`wire_bytes`) cut where each streamed part's body goes: bytes
    around the parts, in order. Put together with `base64_wire` of each part's source, these
    are the bytes `wire_bytes` gives for the same message with the data attached."""
    flat = wire_bytes(message, utf8=utf8, cte_type=cte_type)
    segments: list[bytes | StreamedAttachment] = []
    for part in streamed_parts(message):
        head, found, flat = flat.partition(part.token.encode("ascii"))
        if not found:
            raise ValueError("a streamed part's token is missing from the flattened message")
        segments += [head, part]
    segments.append(flat)
    return segments


def wire_bytes(message: EmailMessage, *, utf8: bool = False, cte_type: str = "8bit") -> bytes:
    """`aiosmtplib.email.flatten_message(message, ...)` for a message with big base64 parts:
    each such body is swapped for a token while `email.generator` flattens the rest (it splits
    and writes a body line by line in Python, 7 ms for a 12 s WAV), then spliced back in with
    CRLF line ends. Multipart boundaries are fixed first, so the generator does not search the
    whole text for a collision-free one. The bytes are identical; `message` is left as it was
    (apart from its boundaries)."""
    swapped: list[tuple[Message, str, bytes]] = []
    part: Message
    for part in message.walk():
        if part.is_multipart():
            if part.get_boundary() is None:
                part.set_boundary(f"===============afterbeep{secrets.token_hex(12)}==")
            continue
        payload = part.get_payload()
        if (
            isinstance(payload, str)
            and len(payload) > _SPLICE_OVER
            and str(part.get("Content-Transfer-Encoding", "")).lower() == "base64"
        ):
            token = f"afterbeep-body-{secrets.token_hex(16)}"
            swapped.append((part, payload, token.encode("ascii")))
            part.set_payload(token)
    try:
        flat = aiosmtplib.email.flatten_message(message, utf8=utf8, cte_type=cte_type)
    finally:
        for part, body, _ in swapped:
            part.set_payload(body)
    for _, body, placeholder in swapped:
        wire = body.encode("ascii").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        flat = flat.replace(placeholder, wire, 1)  # what the generator writes: each line, then CRLF
    return flat


def _notice(to_addr: str, from_addr: str, subject: str, text: str) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = subject
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Date"] = formatdate(localtime=False)
    msg.set_content(text)
    return msg


def compose_mailbox_full(to_addr: str, mailbox_name: str, from_addr: str) -> EmailMessage:
    return _notice(
        to_addr,
        from_addr,
        f"Voicemail box {mailbox_name} is full",
        f"The voicemail box {mailbox_name} is full: callers hear that it is full and cannot leave a message.\n"
        "Delete or save messages elsewhere to make room.\n",
    )


def compose_pin_locked(to_addr: str, mailbox_name: str, from_addr: str) -> EmailMessage:
    return _notice(
        to_addr,
        from_addr,
        f"Voicemail box {mailbox_name}: locked after wrong PINs",
        f"Someone entered wrong PINs for the voicemail box {mailbox_name} by phone, so it is"
        " locked for a while: nobody can listen to its messages by phone until the lock ends.\n"
        "If it was not you, change the PIN.\n",
    )


class SmtpSender:
    def __init__(
        self, target: SmtpTarget, timeout: float = 30.0, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self._target = target
        self._timeout = timeout
        self._tls_context = tls_context

    @property
    def timeout(self) -> float:
        return self._timeout

    async def send(self, message: EmailMessage) -> None:
        t = self._target
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            use_tls=t.use_tls,
            start_tls=bool(t.starttls),
            username=t.username,
            password=t.password,
            timeout=self._timeout,
            tls_context=self._tls_context,
        )
        try:
            async with client:
                await _send_message(client, message)
        except StorageError as exc:
            raise TemporaryEmailError(f"attachment not readable: {type(exc).__name__}") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            if all(500 <= code < 600 for code in codes):
                raise PermanentEmailError(f"recipient refused ({codes})") from exc
            raise TemporaryEmailError(f"recipient deferred ({codes})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentEmailError(f"SMTP {exc.code}: {exc.message[:200]}") from exc
            raise TemporaryEmailError(f"SMTP {exc.code}: {exc.message[:200]}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TemporaryEmailError(f"SMTP server unreachable: {type(exc).__name__}") from exc
        finally:
            for part in streamed_parts(message):
                await part.source.aclose()


async def _send_message(client: aiosmtplib.SMTP, message: EmailMessage) -> None:
    """`client.send_message(message)`, the same steps (envelope from the headers, SMTPUTF8 and
    8BITMIME as the server offers them), but flattened by `wire_bytes`."""
    sender = aiosmtplib.email.extract_sender(message)
    recipients = aiosmtplib.email.extract_recipients(message)
    if sender is None or not recipients:
        raise PermanentEmailError("the message has no From or no recipient")
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()
    options: list[str] = []
    utf8 = not (sender + "".join(recipients)).isascii()
    if utf8:
        if not client.supports_extension("smtputf8"):
            raise PermanentEmailError("a non-ASCII address, and the server has no SMTPUTF8")
        options.append("SMTPUTF8")
    eight_bit = client.supports_extension("8BITMIME")
    if eight_bit:
        options.append("BODY=8BITMIME")
    cte_type = "8bit" if eight_bit else "7bit"
    if not streamed_parts(message):
        data = wire_bytes(message, utf8=utf8, cte_type=cte_type)
        await client.sendmail(sender, recipients, data, mail_options=options)
        return
    segments = wire_segments(message, utf8=utf8, cte_type=cte_type)
    encoding = "utf-8" if utf8 else "ascii"
    try:
        await client.mail(sender, options=options, encoding=encoding)
        refused: list[aiosmtplib.SMTPRecipientRefused] = []
        for recipient in recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused.append(exc)
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    try:
        await _stream_data(client, segments)
    except BaseException:
        # Half a DATA cannot be taken back: the connection goes, and with it the email.
        client.close()
        raise


async def _stream_data(client: aiosmtplib.SMTP, segments: list[bytes | StreamedAttachment]) -> None:
    """`SMTP.data` for a message in segments: the streamed parts' bodies are encoded and
    written chunk by chunk, each write drained before the next chunk is read."""
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    timeout = client.timeout
    async with protocol._command_lock:
        protocol._response_pending = True
        protocol.write(b"DATA\r\n")
        started = await protocol.read_response(timeout=timeout)
        if started.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(started.code, started.message)
        protocol._response_pending = True
        last = len(segments) - 1
        for index, segment in enumerate(segments):
            if isinstance(segment, StreamedAttachment):
                async for chunk in base64_wire(segment.source):
                    protocol.write(chunk)  # base64 lines: CRLF already, never a leading dot
                    async with asyncio.timeout(timeout):  # a server that stops reading
                        await protocol._drain_helper()
                continue
            # Every segment starts a line (a body ends in CRLF); only the last ends the message.
            if index == last:
                segment = normalize_message_line_endings(segment)
            elif segment:
                segment = _LONE_EOL.sub(b"\r\n", segment)
            protocol.write(PERIOD_REGEX.sub(b"..", segment))
        protocol.write(b".\r\n")
        response = await protocol.read_response(timeout=timeout)
        if response.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(response.code, response.message)


class EmailSender(Protocol):
    """Sends one email; raises `TemporaryEmailError` or `PermanentEmailError`."""

    @property
    def timeout(self) -> float: ...

    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True, slots=True)
class _Cancelled:
    reason: str


class EmailDispatcher(OutboxWorker[ClaimedNotification]):
    name = "email-dispatcher"

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        store: ObjectStore,
        clock: Clock,
        sender: EmailSender,
        *,
        from_addr: str,
        public_url: str,
        secret_key: bytes,
        max_attempts: int = rules.DEFAULT_MAX_ATTEMPTS,
        retry_base_seconds: float = rules.RETRY_BASE_SECONDS,
        max_attachment_bytes: int = MAX_ATTACHMENT_BYTES,
        batch_size: int = 10,
        idle_seconds: float = 30.0,
    ) -> None:
        super().__init__(
            clock,
            # Longer than any attempt can take, so a live dispatcher never loses its lease.
            lease=timedelta(seconds=2 * sender.timeout + 60),
            batch_size=batch_size,
            idle_seconds=idle_seconds,
            stop_grace=sender.timeout + 5,
            log=log,
        )
        self._uow = uow
        self._store = store
        self._sender = sender
        self._from_addr = from_addr
        self._public_url = public_url
        self._secret_key = secret_key
        self._max_attempts = max(1, max_attempts)
        self._retry_base = retry_base_seconds
        self._max_attachment = max_attachment_bytes

    async def _claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedNotification]:
        async with self._uow() as uow:
            return await uow.notifications.claim_due(now, lease_until, limit)

    async def _release(self, claims: list[ClaimedNotification]) -> None:
        async with self._uow() as uow:
            await uow.notifications.release(claims)

    async def _next_wakeup(self) -> datetime | None:
        async with self._uow() as uow:
            return await uow.notifications.next_wakeup()

    def _claim_key(self, claim: ClaimedNotification) -> str:
        return claim.notification.id

    async def _attempt(self, claim: ClaimedNotification) -> None:
        n = claim.notification
        outcome: NotificationOutcome
        try:
            email = await self._compose(claim)
        except StorageUnavailable as exc:
            email = None
            outcome = self._after(n.attempts, f"storage unavailable: {exc}"[:200], permanent=False)
        else:
            if isinstance(email, _Cancelled):
                outcome = rules.cancelled(n.attempts, email.reason, self._clock.now())
                email = None
        if email is not None:
            try:
                await self._sender.send(email)
            except PermanentEmailError as exc:
                outcome = self._after(n.attempts, str(exc), permanent=True)
            except TemporaryEmailError as exc:
                outcome = self._after(n.attempts, str(exc), permanent=False)
            else:
                outcome = self._after(n.attempts, None, permanent=False)
        now = self._clock.now()
        async with self._uow() as uow:
            kept = await uow.notifications.record_attempt(claim, outcome, now)
            if kept and outcome.status is NotificationStatus.FAILED:
                final = dataclasses.replace(
                    n,
                    status=outcome.status,
                    attempts=outcome.attempts,
                    next_attempt_at=outcome.next_attempt_at,
                    last_error=outcome.last_error,
                    updated_at=now,
                )
                await uow.events.publish(n.account_id, rules.FAILED_EVENT, rules.to_json(final))
        extra = {"notification_id": n.id, "kind": n.kind.value, "attempts": outcome.attempts}
        if not kept:
            log.warning("email %s: lease lost, attempt not recorded", n.id, extra=extra)
        elif outcome.status is NotificationStatus.FAILED:
            log.error("email %s failed: %s", n.id, outcome.last_error, extra=extra)
        elif outcome.status is NotificationStatus.PENDING:
            log.warning("email %s will be retried: %s", n.id, outcome.last_error, extra=extra)
        else:
            log.info("email %s %s", n.id, outcome.status.value, extra=extra)

    def _after(self, attempts: int, error: str | None, *, permanent: bool) -> NotificationOutcome:
        return rules.after_send(
            attempts,
            error,
            permanent=permanent,
            now=self._clock.now(),
            max_attempts=self._max_attempts,
            retry_base_seconds=self._retry_base,
        )

    async def _compose(self, claim: ClaimedNotification) -> EmailMessage | _Cancelled:
        """The email as it reads now; raises `StorageUnavailable` when the WAV cannot be read."""
        n = claim.notification
        async with self._uow() as uow:
            mailbox = await find_mailbox(uow, n.account_id, n.mailbox_id)
            message = (
                await uow.messages.get(n.account_id, n.message_id)
                if n.message_id is not None
                else None
            )
        if mailbox is None:
            return _Cancelled("the mailbox was deleted before the email was sent")
        if n.kind is NotificationKind.MAILBOX_FULL:
            return compose_mailbox_full(n.to_addr, mailbox.name, self._from_addr)
        if n.kind is NotificationKind.PIN_LOCKED:
            return compose_pin_locked(n.to_addr, mailbox.name, self._from_addr)
        if message is None:
            return _Cancelled("the message was deleted before the email was sent")
        audio: ByteStream | None = None
        too_large = mailbox.attach_audio and message.size_bytes > self._max_attachment
        if mailbox.attach_audio and not too_large:
            try:
                audio = await self._store.open_range(message.audio_key)
            except ObjectNotFound:
                log.error("message %s has no audio object; email sent without it", message.id)
        link = message_audio_link(
            self._public_url, self._secret_key, message.id, now=self._clock.now()
        )
        mail = NewMessageMail(
            to_addr=n.to_addr,
            mailbox_name=mailbox.name,
            timezone=mailbox.timezone,
            caller=message.caller,
            caller_name=message.caller_name,
            duration_ms=message.duration_ms,
            received_at=message.created_at,
            listen_url=link.url,
            wav=None,
            audio=audio,
            message_id=message.id,
            audio_too_large=too_large,
            inbox_url=f"{self._public_url.rstrip('/')}/messages/{message.id}",
            transcript=message.transcript.text if message.transcript is not None else None,
            transcript_pending=message.transcription_status is TranscriptionStatus.PENDING,
        )
        return compose_new_message(mail, self._from_addr)


def compose_sign_in_link(to_addr: str, name: str, url: str, from_addr: str) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["Subject"] = "Your afterbeep sign-in link"
    msg["From"] = from_addr
    msg["To"] = to_addr
    msg["Date"] = formatdate(localtime=False)
    msg.set_content(
        f"Hello {name},\n\nSign in to afterbeep with this link:\n\n{url}\n\n"
        "It works once, within 15 minutes. If you did not ask for it, ignore this email.\n"
    )
    e = html.escape
    msg.add_alternative(
        "<html><body>"
        f"<p>Hello {e(name)},</p>"
        f'<p><a href="{e(url, quote=True)}">Sign in to afterbeep</a></p>'
        "<p>The link works once, within 15 minutes. If you did not ask for it, ignore this email.</p>"
        "</body></html>",
        subtype="html",
    )
    return msg


class SmtpSignInMailer:
    """Sends one-time sign-in links at once (not through the outbox: a link is wanted now,
    and it expires within 15 minutes anyway)."""

    def __init__(self, sender: EmailSender, from_addr: str) -> None:
        self._sender = sender
        self._from_addr = from_addr

    async def send_sign_in_link(self, to_addr: str, name: str, url: str) -> None:
        await self._sender.send(compose_sign_in_link(to_addr, name, url, self._from_addr))
