"""Repositories for ringless voicemail: setups, use cases, sends and their attempts,
suppressions and consents. The delivery engine's side of the send table (claiming due sends
under a lease, recording outcomes) is `services.delivery.DeliveryStore`."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from afterbeep.domain.ringless import (
    Channel,
    Consent,
    SendAttempt,
    SendKind,
    SendStats,
    SendStatus,
    Suppression,
    TelephonySetup,
    UseCase,
    VoicemailSend,
)

if TYPE_CHECKING:
    from afterbeep.services.ports import Page


@dataclass(frozen=True, slots=True)
class SendFilter:
    use_case_id: str | None = None
    setup_id: str | None = None
    status: SendStatus | None = None
    to_e164: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    kind: SendKind = SendKind.RINGLESS
    campaign_id: str | None = None


class TelephonySetupRepo(Protocol):
    async def add(self, setup: TelephonySetup) -> None: ...
    async def get(self, account_id: str, setup_id: str) -> TelephonySetup | None: ...
    async def get_any(self, setup_id: str) -> TelephonySetup | None:
        """The setup whatever its account (the engine's lookup)."""
        ...

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[TelephonySetup]: ...
    async def update(self, setup: TelephonySetup) -> None: ...
    async def delete(self, account_id: str, setup_id: str) -> bool: ...
    async def in_use(self, account_id: str, setup_id: str) -> bool:
        """True while a use case or a send refers to the setup."""
        ...


class UseCaseRepo(Protocol):
    async def add(self, use_case: UseCase) -> None: ...
    async def get(self, account_id: str, use_case_id: str) -> UseCase | None: ...
    async def get_any(self, use_case_id: str) -> UseCase | None: ...
    async def list(
        self,
        account_id: str,
        channel: Channel | None,
        setup_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[UseCase]: ...
    async def update(self, use_case: UseCase) -> None: ...
    async def delete(self, account_id: str, use_case_id: str) -> bool: ...
    async def has_sends(self, account_id: str, use_case_id: str) -> bool: ...
    async def is_fallback(self, account_id: str, use_case_id: str) -> bool:
        """True while another use case names this one as its `fallback_use_case_id`."""
        ...
    async def advance_rr(self, account_id: str, use_case_id: str) -> int:
        """The round-robin cursor before this call, moved on by one (atomically, in the
        caller's transaction)."""
        ...


class VoicemailSendRepo(Protocol):
    async def add(self, send: VoicemailSend) -> None: ...
    async def get(self, account_id: str, send_id: str) -> VoicemailSend | None: ...
    async def get_any(self, send_id: str) -> VoicemailSend | None: ...
    async def list(
        self, account_id: str, where: SendFilter, cursor: str | None, limit: int
    ) -> Page[VoicemailSend]:
        """Newest first."""
        ...

    async def attempts(self, account_id: str, send_id: str) -> builtins.list[SendAttempt]:
        """The send's attempts, oldest first."""
        ...

    async def stats(self, account_id: str, where: SendFilter) -> SendStats: ...

    async def cancel(self, account_id: str, send_id: str, now: datetime) -> VoicemailSend | None:
        """Mark an accepted, never attempted, unclaimed send `skipped` (`cancelled`); None when
        it is not in that state."""
        ...

    async def release_leases(self, now: datetime) -> int:
        """Clear every lease still live at `now` on waiting sends (a sole claimer's start-up);
        how many."""
        ...

    async def count_attempts_to(self, account_id: str, to_e164: str, since: datetime) -> int:
        """Attempts to this recipient by the account started at or after `since`."""
        ...


class SuppressionRepo(Protocol):
    async def add(self, suppression: Suppression) -> bool:
        """False when the number is already suppressed in the account."""
        ...

    async def get(self, account_id: str, suppression_id: str) -> Suppression | None: ...
    async def by_e164(self, account_id: str, e164: str) -> Suppression | None: ...
    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Suppression]: ...
    async def delete(self, account_id: str, suppression_id: str) -> bool: ...
    async def is_suppressed(self, account_id: str, e164: str) -> bool: ...


class ConsentRepo(Protocol):
    async def add(self, consent: Consent) -> None: ...
    async def get(self, account_id: str, consent_id: str) -> Consent | None: ...
    async def list(
        self, account_id: str, e164: str | None, cursor: str | None, limit: int
    ) -> Page[Consent]: ...
    async def revoke(self, account_id: str, consent_id: str, at: datetime) -> bool:
        """Set revoked_at if not yet revoked; False when it was already revoked or is unknown."""
        ...

    async def current(self, account_id: str, e164: str) -> Consent | None:
        """The newest active consent for the number, else the newest revoked one, else None."""
        ...
