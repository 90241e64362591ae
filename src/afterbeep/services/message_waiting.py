"""The message-waiting port: told whenever a mailbox's new/old counts may have changed.

Every path that changes a message (deposit, phone menu, API PATCH and DELETE, expiry) calls
`mailbox_changed`; the SIP adapter (RFC 3842 `message-summary`) decides whether a NOTIFY is due.
The call must not block: an implementation schedules its work and returns.
"""

from __future__ import annotations

from typing import Protocol


class MessageWaiting(Protocol):
    def mailbox_changed(self, account_id: str, mailbox_id: str) -> None: ...


class NoMessageWaiting:
    """Used where no SIP side runs (API-only processes, tests of the services)."""

    def mailbox_changed(self, account_id: str, mailbox_id: str) -> None:
        return None
