"""Create accounts and API keys; resolve a bearer key to its account."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from afterbeep.domain.accounts import (
    MAX_ACTIVE_KEYS,
    Account,
    ApiKey,
    hash_secret,
    key_id_of,
    make_secret,
    parse_language,
)
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.schedules import parse_timezone
from afterbeep.services.ports import AccountRepo, UnitOfWorkFactory
from afterbeep.services.ports.storage import ObjectStore

USE_PRECISION = timedelta(minutes=1)
MAX_NOTED_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class RevokedKey:
    account_id: str
    key_id: str
    keys_left: int


@dataclass(frozen=True, slots=True)
class IssuedKey:
    account_id: str
    key_id: str
    secret: str
    created_at: datetime


class AccountService:
    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, *, lookups: UnitOfWorkFactory | None = None
    ) -> None:
        """`lookups`: read-only units of work for `authenticate` (every API request)."""
        self._uow = uow
        self._lookups = lookups or uow
        self._clock = clock
        self._noted: dict[str, datetime] = {}  # key id -> when its use was last written

    async def create_account(self, name: str) -> IssuedKey:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name", "must be 1 to 200 characters")
        account = Account(id=new_id("acc"), name=name, created_at=self._clock.now())
        async with self._uow() as uow:
            await uow.accounts.add(account)
            return await self._issue(uow.accounts, account.id)

    async def create_key(self, account_id: str) -> IssuedKey:
        async with self._uow() as uow:
            if await uow.accounts.lock(account_id) is None:
                raise NotFound("account", account_id[:40])
            if len(await uow.accounts.active_keys(account_id)) >= MAX_ACTIVE_KEYS:
                raise Conflict(
                    f"the account has {MAX_ACTIVE_KEYS} API keys: revoke one first",
                    error_id="too-many-api-keys",
                )
            return await self._issue(uow.accounts, account_id)

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        """The account's keys that are not revoked, oldest first (hashes only, never secrets)."""
        async with self._uow() as uow:
            return await uow.accounts.active_keys(account_id)

    async def revoke_key(self, account_id: str | None, key_id: str) -> RevokedKey:
        """Revoke at once: the next request with the key is refused. With `account_id` (a
        tenant revoking its own key) the account's last key is refused; without (the
        operator) any key of any account may go."""
        async with self._uow() as uow:
            found = await uow.accounts.get_key(key_id) if is_id(key_id, "key") else None
            if found is None or found.revoked_at is not None or (
                account_id is not None and found.account_id != account_id
            ):
                raise NotFound("API key", key_id[:40])
            await uow.accounts.lock(found.account_id)
            active = await uow.accounts.active_keys(found.account_id)
            if account_id is not None and [k.id for k in active] == [key_id]:
                raise Conflict(
                    "this is the account's last API key: create another one first",
                    error_id="last-api-key",
                )
            if not await uow.accounts.revoke_key(key_id, self._clock.now()):
                raise NotFound("API key", key_id[:40])
        return RevokedKey(found.account_id, key_id, keys_left=len(active) - 1)

    async def delete_account(self, account_id: str, store: ObjectStore) -> dict[str, int]:
        """Erase the account: its stored objects, then every row keyed by it. What was
        removed, counted per table (and `objects`). Run again after a failure, it finishes."""
        async with self._uow() as uow:
            if await uow.accounts.get(account_id) is None:
                raise NotFound("account", account_id[:40])
        objects = 0
        for key in await store.list(f"{account_id}/"):
            await store.delete(key)
            objects += 1
        async with self._uow() as uow:
            removed = await uow.accounts.erase(account_id)
        return {**removed, "objects": objects}

    async def update_settings(
        self, account_id: str, timezone: object = None, language: object = None
    ) -> Account:
        """Change the account's default timezone and/or language (None: unchanged)."""
        async with self._uow() as uow:
            account = await uow.accounts.lock(account_id)
            if account is None:
                raise NotFound("account", account_id[:40])
            changed = replace(
                account,
                timezone=account.timezone
                if timezone is None
                else parse_timezone(timezone) or account.timezone,
                language=account.language if language is None else parse_language(language),
            )
            await uow.accounts.update_settings(account_id, changed.timezone, changed.language)
        return changed

    async def allow_device_outbound(self, account_id: str, allowed: object) -> Account:
        """Whether the account's devices may dial numbers outside afterbeep."""
        if not isinstance(allowed, bool):
            raise InvalidInput("allow_device_outbound", "must be true or false")
        async with self._uow() as uow:
            account = await uow.accounts.lock(account_id)
            if account is None:
                raise NotFound("account", account_id[:40])
            await uow.accounts.set_device_outbound(account_id, allowed)
        return replace(account, allow_device_outbound=allowed)

    async def device_outbound_setup(self, account_id: str, setup_id: object) -> Account:
        """The telephony setup (of this account) its devices dial outside numbers through."""
        if setup_id is not None and (not isinstance(setup_id, str) or not is_id(setup_id, "setup")):
            raise InvalidInput("device_outbound_setup_id", "must be a telephony setup id (setup_...) or null")
        async with self._uow() as uow:
            account = await uow.accounts.lock(account_id)
            if account is None:
                raise NotFound("account", account_id[:40])
            if setup_id is not None and await uow.telephony_setups.get(account_id, setup_id) is None:
                raise InvalidInput("device_outbound_setup_id", "is not a telephony setup of this account")
            await uow.accounts.set_device_outbound_setup(account_id, setup_id)
        return replace(account, device_outbound_setup_id=setup_id)

    async def authenticate(self, secret: str) -> Account | None:
        key_id = key_id_of(secret)
        if key_id is None:
            return None
        async with self._lookups() as uow:
            account = await uow.accounts.account_for_key_hash(hash_secret(secret))
        if account is not None:
            await self._note_use(key_id)
        return account

    async def _note_use(self, key_id: str) -> None:
        """`last_used_at`, to the minute: one write per key and minute, not one per request."""
        now = self._clock.now()
        last = self._noted.get(key_id)
        if last is not None and now - last < USE_PRECISION:
            return
        if len(self._noted) >= MAX_NOTED_KEYS:
            self._noted.clear()
        self._noted[key_id] = now
        async with self._uow() as uow:
            await uow.accounts.touch_key(key_id, now)

    async def _issue(self, repo: AccountRepo, account_id: str) -> IssuedKey:
        key_id = new_id("key")
        secret = make_secret(key_id)
        now = self._clock.now()
        await repo.add_key(
            ApiKey(id=key_id, account_id=account_id, key_hash=hash_secret(secret), created_at=now)
        )
        return IssuedKey(account_id=account_id, key_id=key_id, secret=secret, created_at=now)
