"""Repository for the media library."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.media import Media

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class MediaRepo(Protocol):
    async def add(self, media: Media) -> Media:
        """Insert the row, unless the account already holds the same audio (`sha256`): the row
        stored for that audio either way (compare its id to know which)."""
        ...

    async def find(self, account_id: str, sha256: str) -> Media | None:
        """The account's media whose original has this sha256."""
        ...

    async def stored_bytes(self, account_id: str) -> int:
        """What the account's media take in storage, originals and renditions."""
        ...

    async def get(self, account_id: str, media_id: str) -> Media | None:
        """The media item if it exists in `account_id`; another account's id gives None."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Media]:
        """Newest first; `cursor` is a `next_cursor` from an earlier page."""
        ...

    async def delete(self, account_id: str, media_id: str) -> bool:
        """Remove the row; False when there was none. Raises `Conflict` if a row refers to it."""
        ...

    async def is_used_as_greeting(self, account_id: str, media_id: str) -> bool:
        """Whether a mailbox of `account_id` has this media as one of its greetings (unavailable, busy, temporary)."""
        ...
