"""The FastAPI application: routers, problem handlers, middleware. Built with its services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from afterbeep import __version__
from afterbeep.api import (
    admin,
    api_keys,
    campaigns,
    consents,
    drops,
    health,
    mailboxes,
    media,
    messages,
    numbers,
    problems,
    suppressions,
    telephony_setups,
    use_cases,
    voicemails,
    webhooks,
)
from afterbeep.api import notifications as notifications_api
from afterbeep.api.deps import ApiServices
from afterbeep.api.idempotency import IdempotencyMiddleware
from afterbeep.api.metrics import MetricsMiddleware
from afterbeep.services.ports.idempotency import IdempotencyStore


def create_app(
    services: ApiServices,
    idempotency: IdempotencyStore,
    readiness: Callable[[], Awaitable[list[str]]] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="afterbeep",
        version=__version__,
        description="Self-hosted voicemail: mailboxes, ringless voicemail, drops, voicemails for reps.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.services = services
    app.state.readiness = readiness
    problems.install(app)
    app.include_router(health.router)
    # First after the health checks: the router is matched route by route, and accepting
    # sends is the busiest route (the order changes no match: no other path overlaps).
    app.include_router(voicemails.router, prefix="/v1")
    for module in (media, mailboxes, messages, numbers, webhooks):
        app.include_router(module.router, prefix="/v1")
    app.include_router(notifications_api.router, prefix="/v1")
    app.include_router(campaigns.router, prefix="/v1")
    for ringless in (telephony_setups, use_cases, drops, suppressions, consents):
        app.include_router(ringless.router, prefix="/v1")
    for keys_and_admin in (api_keys, admin):
        app.include_router(keys_and_admin.router, prefix="/v1")
    app.add_middleware(IdempotencyMiddleware, store=idempotency)
    app.add_middleware(MetricsMiddleware)
    return app
