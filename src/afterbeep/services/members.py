"""MemberService: the people who sign in to the web pages, and their sign-in.

Passwords are hashed with Argon2id (`argon2-cffi`) in a worker thread, outside any
transaction. Sessions and sign-in links are random tokens handed to the browser (a cookie, an
emailed link); only their SHA-256 is stored, so a copy of the database signs nobody in.
Sign-in attempts are counted per address and per source (`AttemptWindow`, in this process's
memory: several nodes each count their own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from afterbeep.domain import members as rules
from afterbeep.domain.clock import Clock
from afterbeep.domain.errors import Conflict, InvalidInput, NotFound, TooManyAttempts
from afterbeep.domain.ids import is_id, new_id
from afterbeep.domain.members import AttemptWindow, Member, SignInLink, WebSession
from afterbeep.services.ports import Page, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("afterbeep.members")

EDITABLE = frozenset({"email", "name", "role", "user_id", "password"})
UPDATABLE = frozenset({"name", "role", "user_id", "password"})

# Failed passwords per address, and attempts (passwords and links) per source address.
FAILURES_PER_EMAIL = (5, 15 * 60.0)
ATTEMPTS_PER_SOURCE = (30, 15 * 60.0)
LINKS_PER_EMAIL = (3, 15 * 60.0)


class SignInMailer(Protocol):
    async def send_sign_in_link(self, to_addr: str, name: str, url: str) -> None:
        """Email the link; raises when it could not be handed to the mail server."""
        ...


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str  # the session cookie's value (shown once, never stored)
    member: Member
    next_path: str = "/inbox"


class MemberService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        *,
        public_url: str,
        mailer: SignInMailer | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._mailer = mailer
        self._hasher = PasswordHasher()
        # A hash to verify against when the address is unknown, so both take as long.
        self._decoy: str | None = None
        self._failures = AttemptWindow(*FAILURES_PER_EMAIL)
        self._sources = AttemptWindow(*ATTEMPTS_PER_SOURCE)
        self._links = AttemptWindow(*LINKS_PER_EMAIL)

    # --- the /v1/members resource ---------------------------------------------------------

    async def create(self, account_id: str, fields: Mapping[str, object]) -> Member:
        for name in fields:
            if name not in EDITABLE:
                raise InvalidInput(name, "is not a member field that can be set")
        for required in ("email", "name", "role"):
            if required not in fields:
                raise InvalidInput(required, "is required")
        email = rules.normalise_email(fields["email"])
        name = rules.check_name(fields["name"])
        role = rules.check_role(fields["role"])
        user_id = rules.check_user_id(fields.get("user_id"))
        password = fields.get("password")
        hashed = (
            await asyncio.to_thread(self._hasher.hash, rules.check_password(password))
            if password is not None
            else None
        )
        now = self._clock.now()
        member = Member(
            id=new_id("mem"),
            account_id=account_id,
            email=email,
            name=name,
            role=role,
            user_id=user_id,
            has_password=hashed is not None,
            created_at=now,
            updated_at=now,
        )
        async with self._uow() as uow:
            if await uow.members.email_taken(email):
                raise Conflict("a member with this email address exists", "member-exists")
            await _check_user(uow, account_id, user_id)
            await uow.members.add(member, hashed)
        log.info("member created", extra={"member_id": member.id, "account_id": account_id})
        return member

    async def get(self, account_id: str, member_id: str) -> Member:
        async with self._uow() as uow:
            member = await uow.members.get(account_id, member_id) if is_id(member_id, "mem") else None
        if member is None:
            raise NotFound("member", member_id)
        return member

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Member]:
        async with self._uow() as uow:
            return await uow.members.list(account_id, cursor, limit)

    async def update(
        self, account_id: str, member_id: str, changes: Mapping[str, object]
    ) -> Member:
        """Change the fields given; a new password signs the member out everywhere."""
        for name, value in changes.items():
            if name not in UPDATABLE:
                raise InvalidInput(name, "is not a member field that can be changed")
            if value is None and name != "user_id":
                raise InvalidInput(name, "must not be null")
        user_id = rules.check_user_id(changes["user_id"]) if "user_id" in changes else None
        hashed: str | None = None
        if "password" in changes:
            password = rules.check_password(changes["password"])
            hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._uow() as uow:
            current = await uow.members.get(account_id, member_id) if is_id(member_id, "mem") else None
            if current is None:
                raise NotFound("member", member_id)
            if "user_id" in changes:
                await _check_user(uow, account_id, user_id)
            updated = dataclasses.replace(
                current,
                user_id=user_id if "user_id" in changes else current.user_id,
                name=rules.check_name(changes["name"]) if "name" in changes else current.name,
                role=rules.check_role(changes["role"]) if "role" in changes else current.role,
                has_password=current.has_password or hashed is not None,
            )
            if updated != current:
                updated = dataclasses.replace(updated, updated_at=self._clock.now())
                await uow.members.update(updated)
            if hashed is not None:
                await uow.members.set_password_hash(account_id, member_id, hashed)
                await uow.members.delete_sessions(account_id, member_id)
        return updated

    async def delete(self, account_id: str, member_id: str) -> None:
        """The member with their sessions; mailboxes they owned are left without an owner."""
        async with self._uow() as uow:
            if not is_id(member_id, "mem") or not await uow.members.delete(account_id, member_id):
                raise NotFound("member", member_id)
        log.info("member deleted", extra={"member_id": member_id, "account_id": account_id})

    # --- signing in ----------------------------------------------------------------------

    def _check_source(self, source: str) -> None:
        now = self._clock.now().timestamp()
        wait = self._sources.retry_after(source, now)
        if wait:
            raise TooManyAttempts(wait)
        self._sources.record(source, now)

    async def sign_in_password(
        self, email: str, password: str, *, source: str, next_path: str = "/inbox"
    ) -> SignedIn | None:
        """A new session when the password is right; None when it is not (or the address is
        unknown: the caller cannot tell which). `TooManyAttempts` past the rate limits."""
        self._check_source(source)
        try:
            email = rules.normalise_email(email)
        except InvalidInput:
            return None
        now = self._clock.now().timestamp()
        wait = self._failures.retry_after(email, now)
        if wait:
            raise TooManyAttempts(wait)
        async with self._uow() as uow:
            found = await uow.members.by_email(email)
        if self._decoy is None:
            self._decoy = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        hashed = found[1] if found is not None and found[1] is not None else self._decoy
        ok: bool
        try:
            ok = await asyncio.to_thread(self._hasher.verify, hashed, password[: rules.PASSWORD_MAX])
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or found is None or found[1] is None:
            self._failures.record(email, now)
            log.info("sign-in refused")
            return None
        self._failures.forget(email)
        member = found[0]
        if self._hasher.check_needs_rehash(hashed):
            rehashed = await asyncio.to_thread(self._hasher.hash, password)
            async with self._uow() as uow:
                await uow.members.set_password_hash(member.account_id, member.id, rehashed)
        return await self._open_session(member, rules.safe_next(next_path))

    async def request_link(self, email: str, *, source: str, next_path: str = "/inbox") -> None:
        """Email a one-time sign-in link to the member with this address, if there is one
        (the caller says the same either way). `TooManyAttempts` past the rate limits."""
        self._check_source(source)
        try:
            email = rules.normalise_email(email)
        except InvalidInput:
            return
        now = self._clock.now()
        wait = self._links.retry_after(email, now.timestamp())
        if wait:
            raise TooManyAttempts(wait)
        self._links.record(email, now.timestamp())
        async with self._uow() as uow:
            found = await uow.members.by_email(email)
        if found is None or self._mailer is None:
            return
        member = found[0]
        token = secrets.token_urlsafe(32)
        link = SignInLink(
            token_hash=rules.token_hash(token),
            account_id=member.account_id,
            member_id=member.id,
            next_path=rules.safe_next(next_path),
            created_at=now,
            expires_at=now + timedelta(seconds=rules.LINK_SECONDS),
        )
        async with self._uow() as uow:
            await uow.members.add_link(link)
        try:
            await self._mailer.send_sign_in_link(
                member.email, member.name, f"{self._public_url}/sign-in/link/{token}"
            )
        except Exception as exc:
            # The page says the same whether or not the address is a member's, so it cannot
            # say this either; the member asks again.
            log.error(
                "sign-in link not sent: %s", exc, extra={"member_id": member.id}
            )
            return
        log.info("sign-in link sent", extra={"member_id": member.id})

    async def use_link(self, token: str) -> SignedIn | None:
        """A new session for the link's member, once; None for a used, expired or unknown one."""
        if not 20 <= len(token) <= 100:
            return None
        async with self._uow() as uow:
            link = await uow.members.use_link(rules.token_hash(token), self._clock.now())
            member = await uow.members.get(link.account_id, link.member_id) if link else None
        if link is None or member is None:
            return None
        return await self._open_session(member, link.next_path)

    async def _open_session(self, member: Member, next_path: str) -> SignedIn:
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        session = WebSession(
            token_hash=rules.token_hash(token),
            account_id=member.account_id,
            member_id=member.id,
            created_at=now,
            expires_at=now + timedelta(seconds=rules.SESSION_SECONDS),
        )
        async with self._uow() as uow:
            # Each sign-in also clears the expired sessions and links of every member.
            await uow.members.delete_expired(now)
            await uow.members.add_session(session)
        log.info("member signed in", extra={"member_id": member.id, "account_id": member.account_id})
        return SignedIn(token, member, next_path)

    async def session(self, token: str) -> tuple[WebSession, Member] | None:
        if not 20 <= len(token) <= 100:
            return None
        async with self._uow() as uow:
            return await uow.members.session(rules.token_hash(token), self._clock.now())

    async def sign_out(self, token: str) -> None:
        async with self._uow() as uow:
            await uow.members.delete_session(rules.token_hash(token))

    async def sign_out_everywhere(self, member: Member) -> int:
        async with self._uow() as uow:
            return await uow.members.delete_sessions(member.account_id, member.id)


async def _check_user(uow: UnitOfWork, account_id: str, user_id: str | None) -> None:
    """A member is linked to a user of its own account only."""
    if user_id is not None and await uow.users.get(account_id, user_id) is None:
        raise InvalidInput(
            "user_id", "no user with this id in your account", error_id="unknown-reference"
        )
