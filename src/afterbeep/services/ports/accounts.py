"""Repositories for accounts, API keys and the secret store."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from afterbeep.domain.accounts import Account, ApiKey


class AccountRepo(Protocol):
    async def add(self, account: Account) -> None: ...
    async def get(self, account_id: str) -> Account | None: ...
    async def add_key(self, key: ApiKey) -> None: ...
    async def account_for_key_hash(self, key_hash: str) -> Account | None: ...

    async def update_settings(self, account_id: str, timezone: str, language: str) -> None:
        """Set the account's default timezone and language."""
        ...

    async def set_device_outbound(self, account_id: str, allowed: bool) -> None: ...
    async def set_device_outbound_setup(self, account_id: str, setup_id: str | None) -> None: ...

    async def lock(self, account_id: str) -> Account | None:
        """The account, its row locked until the transaction ends (key revocations of one
        account run one at a time)."""
        ...

    async def get_key(self, key_id: str) -> ApiKey | None:
        """The key in any account, revoked or not."""
        ...

    async def active_keys(self, account_id: str) -> list[ApiKey]:
        """The account's keys not revoked, oldest first."""
        ...

    async def revoke_key(self, key_id: str, now: datetime) -> bool:
        """False when there is no such active key."""
        ...

    async def touch_key(self, key_id: str, now: datetime) -> None:
        """Record that the key was just used."""
        ...

    async def erase(self, account_id: str) -> dict[str, int]:
        """Delete every row of the account and the account; the rows removed per table."""
        ...


class SecretRepo(Protocol):
    """A key-value secret store addressed by reference (`kv:vm:<id>:pin`)."""

    async def put(self, account_id: str, ref: str, value: str) -> None: ...
    async def get(self, account_id: str, ref: str) -> str | None: ...
    async def delete(self, account_id: str, ref: str) -> None: ...
