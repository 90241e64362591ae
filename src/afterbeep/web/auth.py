"""Sign-in pages: by password, by a one-time link sent by email; sign out (here, everywhere)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import RedirectResponse, Response

from afterbeep.domain.errors import TooManyAttempts
from afterbeep.domain.members import safe_next
from afterbeep.services.members import SignedIn as NewSession
from afterbeep.web.session import (
    Anyone,
    Form,
    PageError,
    SignedIn,
    Web,
    clear_session_cookie,
    keep_pre_cookie,
    set_session_cookie,
)
from afterbeep.web.templating import page

router = APIRouter(include_in_schema=False)

Next = Annotated[str, Query(max_length=500)]


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _field(form: Form, name: str, limit: int = 400) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _too_many(exc: TooManyAttempts) -> PageError:
    return PageError(
        429, "Too many attempts", f"Too many sign-in attempts. Try again in {exc.retry_after} seconds."
    )


def _signed_in(request: Request, session: NewSession) -> Response:
    response = RedirectResponse(session.next_path, status_code=303)
    set_session_cookie(request, response, session.token)
    return response


@router.get("/")
async def home(who: Anyone) -> Response:
    return RedirectResponse("/inbox" if who.member else "/sign-in", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, who: Anyone, next: Next = "/inbox") -> Response:
    if who.member is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    response = page(request, "sign_in.html", {"csrf": who.csrf, "next": safe_next(next)})
    keep_pre_cookie(request, who, response)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, web: Web, who: Anyone, form: Form) -> Response:
    email = _field(form, "email", 320)
    next_path = safe_next(_field(form, "next", 500))
    try:
        session = await web.members.sign_in_password(
            email, _field(form, "password"), source=_source(request), next_path=next_path
        )
    except TooManyAttempts as exc:
        raise _too_many(exc) from exc
    if session is None:
        context = {
            "csrf": who.csrf,
            "next": next_path,
            "email": email,
            "error": "That email and password do not match.",
        }
        return page(request, "sign_in.html", context, status=401)
    return _signed_in(request, session)


@router.post("/sign-in/link")
async def request_link(request: Request, web: Web, who: Anyone, form: Form) -> Response:
    email = _field(form, "email", 320)
    try:
        await web.members.request_link(
            email, source=_source(request), next_path=safe_next(_field(form, "next", 500))
        )
    except TooManyAttempts as exc:
        raise _too_many(exc) from exc
    return page(request, "sign_in_sent.html", {"csrf": who.csrf, "email": email})


@router.get("/sign-in/link/{token}")
async def link_page(request: Request, token: str, who: Anyone) -> Response:
    """A page with a button, not the sign-in itself: mail scanners that fetch links must not
    use up the one-time link."""
    response = page(request, "sign_in_link.html", {"csrf": who.csrf, "token": token[:100]})
    keep_pre_cookie(request, who, response)
    return response


@router.post("/sign-in/link/{token}")
async def use_link(request: Request, token: str, web: Web, form: Form) -> Response:
    session = await web.members.use_link(token)
    if session is None:
        raise PageError(
            410, "Link expired", "This sign-in link has expired or was already used. Ask for another."
        )
    return _signed_in(request, session)


@router.post("/sign-out")
async def sign_out(request: Request, web: Web, who: SignedIn, form: Form) -> Response:
    if who.session_token is not None:
        await web.members.sign_out(who.session_token)
    response = RedirectResponse("/sign-in", status_code=303)
    clear_session_cookie(request, response)
    return response


@router.post("/sign-out-everywhere")
async def sign_out_everywhere(request: Request, web: Web, who: SignedIn, form: Form) -> Response:
    await web.members.sign_out_everywhere(who.signed_in)
    response = RedirectResponse("/sign-in", status_code=303)
    clear_session_cookie(request, response)
    return response
