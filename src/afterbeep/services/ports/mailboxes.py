"""Repositories for mailboxes and their messages."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.mailboxes import Mailbox, Usage
from afterbeep.domain.messages import Folder, Message

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class MailboxRepo(Protocol):
    async def add(self, mailbox: Mailbox) -> None: ...

    async def get(self, account_id: str, mailbox_id: str) -> Mailbox | None:
        """The mailbox if it exists in `account_id`; another account's id gives None."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Mailbox]:
        """Newest first; `cursor` is a `next_cursor` from an earlier page."""
        ...

    async def update(self, mailbox: Mailbox) -> None:
        """Write every setting, `pin_secret_ref` and `updated_at` of an existing mailbox."""
        ...

    async def delete(self, account_id: str, mailbox_id: str) -> bool:
        """Remove the row (its messages must be gone); False when there was none."""
        ...

    async def numbers_routed_to(self, account_id: str, mailbox_id: str) -> int:
        """How many numbers send calls (open, closed or holiday) to this mailbox."""
        ...

    async def in_queue(self, account_id: str, queue_id: str) -> builtins.list[str]:
        """The team mailboxes whose messages go to this queue (their ids)."""
        ...


class MessageRepo(Protocol):
    async def add_if_absent(self, message: Message) -> bool:
        """Insert unless the account already has a message with this `call_id`; True if inserted."""
        ...

    async def get(self, account_id: str, message_id: str) -> Message | None: ...

    async def get_by_id(self, message_id: str) -> Message | None:
        """Any account's message: only for callers that proved access another way (signed links)."""
        ...

    async def get_by_call_id(self, account_id: str, call_id: str) -> Message | None: ...

    async def list(
        self,
        account_id: str,
        mailbox_id: str | None,
        *,
        folder: Folder | None,
        created_after: datetime | None,
        created_before: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page[Message]:
        """Newest first, of one mailbox or (None) every one, optionally one folder and only
        those created in [created_after, created_before)."""
        ...

    async def update(self, message: Message) -> None:
        """Write `folder`, `read` and `updated_at`."""
        ...

    async def delete(self, account_id: str, message_id: str) -> bool: ...

    async def trash(self, account_id: str, message_id: str, now: datetime) -> bool:
        """Hide the message from every read (it stays until purged); False if not there."""
        ...

    async def restore(
        self, account_id: str, message_id: str, mailbox_ids: Collection[str] | None = None
    ) -> Message | None:
        """Bring a trashed (not yet purged) message back (only from `mailbox_ids`, if given);
        None when there is none."""
        ...

    async def trashed_before(self, cutoff: datetime, limit: int) -> builtins.list[Message]:
        """Messages of any account trashed before `cutoff`, oldest first."""
        ...

    async def delete_in_mailbox(self, account_id: str, mailbox_id: str) -> builtins.list[Message]:
        """Remove every message of the mailbox; the messages removed, oldest first."""
        ...

    async def usage(self, account_id: str, mailbox_ids: Sequence[str]) -> dict[str, Usage]:
        """Message count, bytes and unread count per mailbox (every id asked for is in the
        answer)."""
        ...
