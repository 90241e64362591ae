"""Who is asking: the session cookie, the CSRF token of every form, and the page errors.

Sessions live server-side (`web_sessions`); the cookie holds a random token (HttpOnly,
SameSite=Lax, Secure when the request came over HTTPS or a proxy says it did). Every POST
must carry the CSRF token (the `csrf` form field, or the `X-CSRF-Token` header that htmx and
`app.js` send): an HMAC of the session token, or, before signing in, of a random pre-session
cookie. A POST without it gets a 403 page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from afterbeep.api.deps import ApiServices
from afterbeep.domain.clock import Clock
from afterbeep.domain.members import SESSION_SECONDS, Member, Role
from afterbeep.services.mailboxes import MailboxService
from afterbeep.services.members import MemberService
from afterbeep.services.messages import MessageService

SESSION_COOKIE = "afterbeep_session"
PRE_COOKIE = "afterbeep_pre"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(slots=True)
class WebServices:
    """What the pages use: the same services as the API."""

    members: MemberService
    mailboxes: MailboxService
    messages: MessageService
    clock: Clock
    secret_key: bytes
    closing: Callable[[], bool]  # True once the service is shutting down
    # The same service on read-only units of work, for the inbox's live look-ups (on SQLite a
    # read-write unit would take the one writer's lock every second per open inbox).
    live_messages: MessageService
    # Everything else the API uses (media, sends, campaigns, numbers, flows, ...): the pages
    # call the same services.
    api: ApiServices
    live_poll_seconds: float = 1.0
    live_stream_seconds: float = 300.0  # then the browser reconnects (EventSource does)
    # Open live streams per member in this process (each looks at the database every second).
    live_streams: dict[str, int] = field(default_factory=dict)


class SignInRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """Answered with the error page."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


def not_found() -> PageError:
    return PageError(404, "Not found", "There is nothing here, or it is not yours to see.")


def web_services(request: Request) -> WebServices:
    found = request.app.state.web
    assert isinstance(found, WebServices)
    return found


@dataclass(slots=True)
class Visitor:
    member: Member | None
    session_token: str | None
    csrf: str
    new_pre: str | None = None  # a pre-session value to set as a cookie

    @property
    def signed_in(self) -> Member:
        assert self.member is not None
        return self.member


def _csrf_for(secret_key: bytes, seed: str) -> str:
    digest = hmac.new(secret_key, b"afterbeep-csrf-v1:" + seed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


async def visitor(request: Request) -> Visitor:
    web = web_services(request)
    token = request.cookies.get(SESSION_COOKIE)
    found = await web.members.session(token) if token else None
    if found is not None and token is not None:
        member = found[1]
        request.state.account_id = member.account_id  # for the access log
        return Visitor(member, token, _csrf_for(web.secret_key, "session:" + token))
    pre = request.cookies.get(PRE_COOKIE, "")
    new_pre = None
    if not 20 <= len(pre) <= 100:
        pre = new_pre = secrets.token_urlsafe(24)
    return Visitor(None, None, _csrf_for(web.secret_key, "pre:" + pre), new_pre)


async def signed_in(request: Request, who: Annotated[Visitor, Depends(visitor)]) -> Visitor:
    if who.member is None:
        query = request.url.query
        raise SignInRequired(request.url.path + (f"?{query}" if query else ""))
    return who


def admin_only(who: Visitor) -> Member:
    """The member if an admin of the account, else the 403 page (the admin pages)."""
    member = who.signed_in
    if member.role is not Role.ADMIN:
        raise PageError(403, "Admins only", "This page is for the account's admins.")
    return member


def check_csrf(who: Visitor, sent: object) -> None:
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
        raise PageError(403, "Refused", "This form has expired or did not come from this site. Reload the page and try again.")


async def checked_form(
    request: Request, who: Annotated[Visitor, Depends(visitor)]
) -> FormData:
    """The posted form, once its CSRF token is checked (403 page otherwise)."""
    form = await request.form(max_files=0, max_fields=50)
    check_csrf(who, form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or "")
    return form


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=is_https(request),
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="lax", secure=is_https(request), path="/"
    )


def keep_pre_cookie(request: Request, who: Visitor, response: Response) -> None:
    if who.new_pre is not None:
        response.set_cookie(
            PRE_COOKIE, who.new_pre, httponly=True, samesite="lax", secure=is_https(request), path="/"
        )


Web = Annotated[WebServices, Depends(web_services)]
Anyone = Annotated[Visitor, Depends(visitor)]
SignedIn = Annotated[Visitor, Depends(signed_in)]
Form = Annotated[FormData, Depends(checked_form)]
