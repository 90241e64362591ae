"""Message-waiting indication (RFC 3842): a mailbox's counts and the `message-summary` body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

CONTENT_TYPE = "application/simple-message-summary"
EVENT = "message-summary"


@dataclass(frozen=True, slots=True)
class WaitingCounts:
    """Unread messages are `new`, read ones `old`; those in the urgent folder counted again as
    urgent (RFC 3842 §5.2: urgent messages are a subset of the totals)."""

    new: int = 0
    old: int = 0
    urgent_new: int = 0
    urgent_old: int = 0

    @property
    def waiting(self) -> bool:
        return self.new > 0


def account_uri(user: str, domain: str) -> str:
    return f"sip:{user}@{domain}"


def summary_body(counts: WaitingCounts, account: str) -> bytes:
    """The `application/simple-message-summary` body (RFC 3842 §5.2)."""
    lines = [
        f"Messages-Waiting: {'yes' if counts.waiting else 'no'}",
        f"Message-Account: {account}",
        f"Voice-Message: {counts.new}/{counts.old} ({counts.urgent_new}/{counts.urgent_old})",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def parse_summary(body: str) -> tuple[bool, WaitingCounts] | None:
    """The waiting flag and voice counts of a body (what a phone reads); None when unreadable."""
    waiting: bool | None = None
    counts: WaitingCounts | None = None
    for line in body.replace("\r", "").split("\n"):
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "messages-waiting":
            waiting = value.lower() == "yes"
        elif name == "voice-message":
            totals, _, urgent = value.partition("(")
            new, _, old = totals.strip().partition("/")
            urgent_new, _, urgent_old = urgent.rstrip(")").strip().partition("/")
            try:
                counts = WaitingCounts(
                    int(new), int(old), int(urgent_new or 0), int(urgent_old or 0)
                )
            except ValueError:
                return None
    if waiting is None or counts is None:
        return None
    return waiting, counts


@dataclass(frozen=True, slots=True)
class Subscription:
    """A `message-summary` subscription dialog, seen from our (notifier) side."""

    id: str
    account_id: str
    device_id: str
    mailbox_id: str
    message_account: str
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...]
    local_seq: int
    remote_seq: int
    source_host: str
    source_port: int
    transport: str
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceContact:
    """A registered contact of a device whose user's mailbox is the one counted."""

    account_id: str
    device_id: str
    mailbox_id: str
    username: str  # the user's extension, for Message-Account
    contact: str
    path: tuple[str, ...]
    source_host: str
    source_port: int
    transport: str
