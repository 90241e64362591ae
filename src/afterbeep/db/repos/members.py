"""SQL repositories for members, their web sessions and one-time sign-in links."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from afterbeep.db import tables as t
from afterbeep.db.repos._paging import page_query, split_page
from afterbeep.domain.members import Member, Role, SignInLink, WebSession
from afterbeep.services.ports import Page

_M = t.members.c
_S = t.web_sessions.c
_L = t.sign_in_links.c


def _member(row: Any) -> Member:
    return Member(
        id=row.id,
        account_id=row.account_id,
        email=row.email,
        name=row.name,
        role=Role(row.role),
        user_id=row.user_id,
        has_password=row.password_hash is not None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class SqlMemberRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, member: Member, password_hash: str | None) -> None:
        await self._conn.execute(
            insert(t.members).values(
                id=member.id,
                account_id=member.account_id,
                email=member.email,
                name=member.name,
                role=member.role.value,
                user_id=member.user_id,
                password_hash=password_hash,
                created_at=member.created_at,
                updated_at=member.updated_at,
            )
        )

    async def get(self, account_id: str, member_id: str) -> Member | None:
        query = select(t.members).where(_M.id == member_id, _M.account_id == account_id)
        row = (await self._conn.execute(query)).first()
        return _member(row) if row else None

    async def email_taken(self, email: str) -> bool:
        row = (await self._conn.execute(select(_M.id).where(_M.email == email))).first()
        return row is not None

    async def by_email(self, email: str) -> tuple[Member, str | None] | None:
        row = (await self._conn.execute(select(t.members).where(_M.email == email))).first()
        return (_member(row), row.password_hash) if row else None

    async def list(self, account_id: str, cursor: str | None, limit: int) -> Page[Member]:
        query = page_query(select(t.members).where(_M.account_id == account_id), _M.id, cursor, limit)
        rows, next_cursor = split_page((await self._conn.execute(query)).all(), limit)
        return Page([_member(row) for row in rows], next_cursor)

    async def update(self, member: Member) -> None:
        await self._conn.execute(
            update(t.members)
            .where(_M.id == member.id, _M.account_id == member.account_id)
            .values(
                name=member.name,
                role=member.role.value,
                user_id=member.user_id,
                updated_at=member.updated_at,
            )
        )

    async def set_password_hash(self, account_id: str, member_id: str, hashed: str | None) -> None:
        await self._conn.execute(
            update(t.members)
            .where(_M.id == member_id, _M.account_id == account_id)
            .values(password_hash=hashed)
        )

    async def delete(self, account_id: str, member_id: str) -> bool:
        """The member, their sessions and links; the mailboxes they owned keep no owner."""
        await self._conn.execute(
            update(t.mailboxes)
            .where(
                t.mailboxes.c.account_id == account_id,
                t.mailboxes.c.owner_member_id == member_id,
            )
            .values(owner_member_id=None)
        )
        await self._conn.execute(delete(t.web_sessions).where(_S.member_id == member_id))
        await self._conn.execute(delete(t.sign_in_links).where(_L.member_id == member_id))
        result = await self._conn.execute(
            delete(t.members).where(_M.id == member_id, _M.account_id == account_id)
        )
        return bool(result.rowcount)

    # Sessions.

    async def add_session(self, session: WebSession) -> None:
        await self._conn.execute(
            insert(t.web_sessions).values(
                token_hash=session.token_hash,
                account_id=session.account_id,
                member_id=session.member_id,
                created_at=session.created_at,
                expires_at=session.expires_at,
            )
        )

    async def session(self, token_hash: str, now: datetime) -> tuple[WebSession, Member] | None:
        query = (
            select(t.web_sessions, t.members)
            .join(t.members, _M.id == _S.member_id)
            .where(_S.token_hash == token_hash, _S.expires_at > now)
        )
        row = (await self._conn.execute(query)).first()
        if row is None:
            return None
        mapping = row._mapping
        session = WebSession(
            token_hash=mapping[_S.token_hash],
            account_id=mapping[_S.account_id],
            member_id=mapping[_S.member_id],
            created_at=mapping[_S.created_at],
            expires_at=mapping[_S.expires_at],
        )
        member = Member(
            id=mapping[_M.id],
            account_id=mapping[_M.account_id],
            email=mapping[_M.email],
            name=mapping[_M.name],
            role=Role(mapping[_M.role]),
            user_id=mapping[_M.user_id],
            has_password=mapping[_M.password_hash] is not None,
            created_at=mapping[_M.created_at],
            updated_at=mapping[_M.updated_at],
        )
        return session, member

    async def delete_session(self, token_hash: str) -> None:
        await self._conn.execute(delete(t.web_sessions).where(_S.token_hash == token_hash))

    async def delete_sessions(self, account_id: str, member_id: str) -> int:
        result = await self._conn.execute(
            delete(t.web_sessions).where(_S.account_id == account_id, _S.member_id == member_id)
        )
        return int(result.rowcount or 0)

    async def delete_expired(self, now: datetime) -> int:
        gone = await self._conn.execute(delete(t.web_sessions).where(_S.expires_at <= now))
        links = await self._conn.execute(delete(t.sign_in_links).where(_L.expires_at <= now))
        return int(gone.rowcount or 0) + int(links.rowcount or 0)

    # Sign-in links.

    async def add_link(self, link: SignInLink) -> None:
        await self._conn.execute(
            insert(t.sign_in_links).values(
                token_hash=link.token_hash,
                account_id=link.account_id,
                member_id=link.member_id,
                next_path=link.next_path,
                created_at=link.created_at,
                expires_at=link.expires_at,
                used_at=None,
            )
        )

    async def use_link(self, token_hash: str, now: datetime) -> SignInLink | None:
        """The link, marked used, if it was unused and unexpired; None otherwise (at most one
        caller ever gets it: the mark is a conditional update)."""
        marked = await self._conn.execute(
            update(t.sign_in_links)
            .where(_L.token_hash == token_hash, _L.used_at.is_(None), _L.expires_at > now)
            .values(used_at=now)
        )
        if not marked.rowcount:
            return None
        row = (
            await self._conn.execute(select(t.sign_in_links).where(_L.token_hash == token_hash))
        ).one()
        return SignInLink(
            token_hash=row.token_hash,
            account_id=row.account_id,
            member_id=row.member_id,
            next_path=row.next_path,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )
