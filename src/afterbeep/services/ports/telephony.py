"""Repositories of the Telephony API: call centers, voice calls and their transcript entries,
and the JWT ids already seen."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.call_centers import CallCenter
from afterbeep.domain.voice_calls import TranscriptMessage, VoiceCall

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


class CallCenterRepo(Protocol):
    async def add(self, center: CallCenter) -> bool:
        """False when the account already has a call center of that API name."""
        ...

    async def get(self, account_id: str, center_id: str) -> CallCenter | None: ...
    async def by_api_name(self, account_id: str, api_name: str) -> CallCenter | None: ...

    async def by_issuer(self, org_id: str, api_name: str) -> builtins.list[CallCenter]:
        """Every call center (of any account) whose tokens `iss` and `sub` would name."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[CallCenter]: ...

    async def update(self, center: CallCenter) -> bool:
        """False when the new API name is taken in the account."""
        ...

    async def delete(self, account_id: str, center_id: str) -> bool: ...
    async def has_voice_calls(self, center_id: str) -> bool: ...

    async def queue_by_name(self, account_id: str, name: str) -> str | None:
        """The id of the account's queue of that name (the oldest when several share it)."""
        ...


class VoiceCallRepo(Protocol):
    async def add(self, call: VoiceCall) -> bool:
        """False when its call center already has a call of that vendorCallKey."""
        ...

    async def get(self, account_id: str, voice_call_id: str) -> VoiceCall | None: ...

    async def by_key(
        self, account_id: str, vendor_call_key: str, call_center_id: str | None = None
    ) -> VoiceCall | None: ...

    async def update(self, call: VoiceCall) -> None:
        """Writes the partner's fields, never those the service's own steps set below."""
        ...

    async def set_routed_queue(
        self, account_id: str, voice_call_id: str, queue_id: str, now: datetime
    ) -> bool:
        """False when the call already had its queue (routing is resolved once)."""
        ...

    async def set_work_item(
        self, account_id: str, voice_call_id: str, work_item_id: str, now: datetime
    ) -> None: ...

    async def set_callback(
        self, account_id: str, voice_call_id: str, number: str, callback_id: str, now: datetime
    ) -> bool:
        """False when the call already has its callback."""
        ...

    async def messages(self, voice_call_id: str) -> builtins.list[TranscriptMessage]: ...

    async def existing_messages(
        self, voice_call_id: str, message_ids: Sequence[str]
    ) -> dict[str, TranscriptMessage]: ...

    async def add_messages(self, messages: Sequence[TranscriptMessage], now: datetime) -> None: ...


class TelephonyJtiRepo(Protocol):
    async def remember(
        self, call_center_id: str, jti: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record a token id until it expires; False when it was already seen (a replay).
        Forgets the expired ones."""
        ...
