"""Create accounts and API keys; resolve a bearer key to its account."""

from __future__ import annotations

from dataclasses import dataclass

from afterbeep.domain.accounts import Account, ApiKey, hash_secret, key_id_of, make_secret
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import InvalidInput, NotFound
from afterbeep.domain.ids import new_id
from afterbeep.services.ports import AccountRepo, UnitOfWorkFactory


@dataclass(frozen=True, slots=True)
class IssuedKey:
    account_id: str
    key_id: str
    secret: str


class AccountService:
    def __init__(
        self, uow: UnitOfWorkFactory, clock: Clock, *, lookups: UnitOfWorkFactory | None = None
    ) -> None:
        """`lookups`: read-only units of work for `authenticate` (every API request)."""
        self._uow = uow
        self._lookups = lookups or uow
        self._clock = clock

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
            if await uow.accounts.get(account_id) is None:
                raise NotFound("account", account_id)
            return await self._issue(uow.accounts, account_id)

    async def authenticate(self, secret: str) -> Account | None:
        if key_id_of(secret) is None:
            return None
        async with self._lookups() as uow:
            return await uow.accounts.account_for_key_hash(hash_secret(secret))

    async def _issue(self, repo: AccountRepo, account_id: str) -> IssuedKey:
        key_id = new_id("key")
        secret = make_secret(key_id)
        await repo.add_key(
            ApiKey(id=key_id, account_id=account_id, key_hash=hash_secret(secret), created_at=self._clock.now())
        )
        return IssuedKey(account_id=account_id, key_id=key_id, secret=secret)
