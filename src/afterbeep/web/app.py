"""Adds the web pages to the FastAPI app: static files, the routes, their error pages and
their own request limits."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse, Response

from afterbeep.api.multipart import FORM_OVERHEAD_BYTES
from afterbeep.web import admin, auth, console, greetings, inbox, outreach
from afterbeep.web.limits import PageGate
from afterbeep.web.session import PageError, SignInRequired, WebServices, keep_pre_cookie, visitor
from afterbeep.web.templating import STATIC_DIR, page


def install(app: FastAPI, web: WebServices) -> None:
    app.state.web = web
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(auth.router)
    app.include_router(inbox.router)
    app.include_router(greetings.router)
    app.include_router(outreach.router)
    app.include_router(admin.router)
    app.include_router(console.router)
    app.add_exception_handler(SignInRequired, _sign_in_required)  # type: ignore[arg-type]
    app.add_exception_handler(PageError, _page_error)  # type: ignore[arg-type]
    app.add_middleware(PageGate, max_upload_bytes=web.api.max_upload_bytes + FORM_OVERHEAD_BYTES)


async def _sign_in_required(request: Request, exc: SignInRequired) -> Response:
    target = "/sign-in?" + urlencode({"next": exc.next_path})
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _page_error(request: Request, exc: PageError) -> Response:
    who = await visitor(request)
    context = {"csrf": who.csrf, "member": who.member, "title": exc.title, "detail": exc.detail}
    response = page(request, "error.html", context, status=exc.status)
    keep_pre_cookie(request, who, response)
    return response
