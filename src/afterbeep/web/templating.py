"""Jinja2 templates and the filters they use; every page answer goes through `page()`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# Everything a page loads comes from the service itself (no CDN, no inline script or style).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def duration(ms: int) -> str:
    """`m:ss`, whole seconds cut down as the browser's player shows them."""
    seconds = max(ms, 0) // 1000
    return f"{seconds // 60}:{seconds % 60:02d}"


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(moment: datetime, zone: str | None, style: str = "short") -> str:
    """The time in the mailbox's zone: `Mon 7 Dec, 14:03` (short) or with year and zone."""
    local = moment.astimezone(_zone(zone))
    if style == "long":
        return local.strftime("%A %-d %B %Y, %H:%M:%S %Z")
    return local.strftime("%a %-d %b, %H:%M")


def iso_time(moment: datetime) -> str:
    return moment.isoformat()


def caller_number(value: str | None) -> str:
    """A caller as shown: a SIP URI's user part (`sip:+1202...@host` → `+1202...`)."""
    if not value:
        return "unknown number"
    if value.startswith(("sip:", "sips:")):
        user = value.split(":", 1)[1].split("@", 1)[0]
        return user or value
    return value


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters["duration"] = duration
templates.env.filters["local_time"] = local_time
templates.env.filters["iso_time"] = iso_time
templates.env.filters["caller_number"] = caller_number


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response
