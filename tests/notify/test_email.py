"""SmtpSender against real aiosmtpd servers (plain, AUTH PLAIN/LOGIN, STARTTLS, implicit TLS,
refusals, a closed port), and how the notification emails are composed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtplib.email import flatten_message

from afterbeep.config import SmtpTarget
from afterbeep.notify.email import (
    NewMessageMail,
    PermanentEmailError,
    SmtpSender,
    TemporaryEmailError,
    attach_base64,
    compose_mailbox_full,
    compose_new_message,
    duration_text,
    wire_bytes,
)
from tests.fixtures.smtp import (
    Certificate,
    Collector,
    free_port,
    self_signed_certificate,
    smtp_server,
)

USER, PASSWORD = "afterbeep", "s3cret pass:word"
USERINFO = "afterbeep:s3cret%20pass%3Aword"


def note(subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "voicemail@afterbeep.test"
    msg["To"] = "owner@clinic.example"
    msg["Subject"] = subject
    msg.set_content("body")
    return msg


def sender(url: str, cert: Certificate | None = None) -> SmtpSender:
    return SmtpSender(
        SmtpTarget(url), timeout=10, tls_context=cert.client_context() if cert else None
    )


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Certificate]:
    yield self_signed_certificate(Path(tmp_path_factory.mktemp("tls")))


async def test_plain() -> None:
    with smtp_server() as server:
        await sender(server.url()).send(note("plain"))
        [received] = server.messages()
    assert received.message["Subject"] == "plain" and not received.tls
    assert received.rcpt_tos == ["owner@clinic.example"]
    assert received.mail_from == "voicemail@afterbeep.test"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth(mechanism: str) -> None:
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    with smtp_server(auth=(USER, PASSWORD), auth_exclude=(other,)) as server:
        await sender(server.url(userinfo=USERINFO)).send(note())
        [received] = server.messages()
        assert server.authenticator is not None
        assert server.authenticator.mechanisms == [mechanism]
    assert received.auth_login == USER


async def test_auth_refused_or_missing_is_permanent() -> None:
    with smtp_server(auth=(USER, PASSWORD)) as server:
        with pytest.raises(PermanentEmailError, match="535"):
            await sender(server.url(userinfo=f"{USER}:wrong")).send(note())
        with pytest.raises(PermanentEmailError, match="530"):
            await sender(server.url()).send(note())
        assert server.messages() == []


async def test_starttls_with_auth(cert: Certificate) -> None:
    with smtp_server(starttls=cert, auth=(USER, PASSWORD)) as server:
        await sender(server.url("smtp+starttls", USERINFO), cert).send(note("tls"))
        [received] = server.messages()
    assert received.tls and received.auth_login == USER
    assert received.message["Subject"] == "tls"


async def test_starttls_with_an_untrusted_certificate_sends_nothing(cert: Certificate) -> None:
    with smtp_server(starttls=cert) as server:
        with pytest.raises(TemporaryEmailError, match="SSLCertVerificationError"):
            await sender(server.url("smtp+starttls")).send(note())
        assert server.messages() == []


async def test_plain_url_does_not_talk_to_a_server_requiring_starttls(cert: Certificate) -> None:
    with smtp_server(starttls=cert) as server:
        with pytest.raises(PermanentEmailError, match="530"):
            await sender(server.url()).send(note())
        assert server.messages() == []


async def test_implicit_tls(cert: Certificate) -> None:
    with smtp_server(implicit_tls=cert) as server:
        await sender(server.url("smtps"), cert).send(note("smtps"))
        [received] = server.messages()
    assert received.tls and received.message["Subject"] == "smtps"


async def test_refusals_map_to_permanent_or_temporary() -> None:
    cases: list[tuple[Collector, type[Exception], str]] = [
        (Collector(refuse_rcpt="550 5.1.1 no such user"), PermanentEmailError, "550"),
        (Collector(refuse_rcpt="450 4.2.1 mailbox busy"), TemporaryEmailError, "450"),
        (Collector(refuse_data="554 5.6.0 message refused"), PermanentEmailError, "554"),
        (Collector(refuse_data="451 4.3.0 try again later"), TemporaryEmailError, "451"),
    ]
    for collector, error, code in cases:
        with smtp_server(collector=collector) as server:
            with pytest.raises(error, match=code):
                await sender(server.url()).send(note())
            assert server.messages() == []


async def test_closed_port_is_temporary() -> None:
    with pytest.raises(TemporaryEmailError, match="unreachable"):
        await sender(f"smtp://127.0.0.1:{free_port()}").send(note())


def mail(**overrides: object) -> NewMessageMail:
    values: dict[str, object] = dict(
        to_addr="owner@clinic.example",
        mailbox_name="Front desk",
        timezone="Europe/Paris",
        caller="+12025550123",
        caller_name=None,
        duration_ms=83_400,
        received_at=datetime(2026, 7, 1, 22, 15, tzinfo=UTC),
        listen_url="http://afterbeep.test/v1/links/messages/msg_1/audio?exp=1&sig=a",
        wav=b"RIFF....WAVE",
        message_id="msg_1",
    )
    values.update(overrides)
    return NewMessageMail(**values)  # type: ignore[arg-type]


def test_new_message_email_shape() -> None:
    msg = compose_new_message(mail(), "voicemail@afterbeep.test")
    assert msg["Subject"] == "New voicemail from +12025550123 (1:23)"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    # 22:15 UTC on 1 July is 00:15 the next day in Paris (CEST).
    assert "Thursday 02 July 2026, 00:15 CEST" in text.get_content()
    assert "00:15 CEST" in html.get_content()
    assert "exp=1&amp;sig=a" in html.get_content()
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_content() == b"RIFF....WAVE"


def test_caller_details_are_escaped_and_unknown_zones_fall_back_to_utc() -> None:
    msg = compose_new_message(
        mail(caller_name="<script>x</script>", timezone="Mars/Olympus", wav=None),
        "voicemail@afterbeep.test",
    )
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    assert "<script>" not in html.get_content() and "&lt;script&gt;" in html.get_content()
    assert "22:15 UTC" in text.get_content()
    assert list(msg.iter_attachments()) == []


def test_too_large_recording_is_named_in_the_text() -> None:
    msg = compose_new_message(mail(wav=None, audio_too_large=True), "v@afterbeep.test")
    text = msg.get_body(("plain",))
    assert text is not None and "too large to attach" in text.get_content()


def test_mailbox_full_email() -> None:
    msg = compose_mailbox_full("owner@clinic.example", "Front desk", "v@afterbeep.test")
    assert msg["Subject"] == "Voicemail box Front desk is full"
    assert "cannot leave a message" in msg.get_content()


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0:00"), (1499, "0:01"), (59_600, "1:00"), (3_600_000, "60:00")]
)
def test_duration_text(ms: int, text: str) -> None:
    assert duration_text(ms) == text


def with_attachment(data: bytes, fast: bool) -> EmailMessage:
    msg = note("voicemail")
    msg.add_alternative("<p>body</p>", subtype="html")
    if fast:
        attach_base64(msg, data, "audio/wav", "msg_1.wav")
    else:
        msg.add_attachment(data, maintype="audio", subtype="wav", filename="msg_1.wav")
    for i, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"fixed-{i}")
    return msg


@pytest.mark.parametrize("size", [0, 1, 57, 4000, 200_003])
@pytest.mark.parametrize("cte_type", ["8bit", "7bit"])
def test_fast_attachment_and_flattening_give_the_same_bytes(size: int, cte_type: str) -> None:
    data = os.urandom(size)
    reference = flatten_message(with_attachment(data, fast=False), cte_type=cte_type)
    fast = with_attachment(data, fast=True)
    assert flatten_message(fast, cte_type=cte_type) == reference
    assert wire_bytes(fast, cte_type=cte_type) == reference
    assert wire_bytes(fast, cte_type=cte_type) == reference  # the message is left as it was
    [attachment] = list(fast.iter_attachments())
    assert attachment.get_content() == data


async def test_a_big_attachment_arrives_whole() -> None:
    wav = os.urandom(300_000)
    msg = compose_new_message(mail(wav=wav), "voicemail@afterbeep.test")
    with smtp_server() as server:
        await sender(server.url()).send(msg)
        [received] = server.messages()
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "msg_1.wav" and attachment.get_content() == wav
    assert received.message["Subject"] == msg["Subject"]
    assert received.rcpt_tos == ["owner@clinic.example"]


def test_new_message_email_links_to_the_message_page() -> None:
    page = "http://afterbeep.test/messages/msg_1"
    msg = compose_new_message(mail(inbox_url=page), "voicemail@afterbeep.test")
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert f"Open it in the inbox: {page}" in text.get_content()
    assert f'href="{page}"' in html.get_content()
    bare = compose_new_message(mail(), "voicemail@afterbeep.test").get_body(("plain",))
    assert bare is not None and "inbox:" not in bare.get_content()
