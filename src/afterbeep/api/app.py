"""The FastAPI application: routers, problem handlers, middleware. Built with its services."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI

from afterbeep import __version__
from afterbeep.api import (
    account,
    admin,
    agent_desk,
    agents,
    api_keys,
    call_centers,
    campaigns,
    consents,
    devices,
    docs,
    drops,
    flows,
    health,
    mailboxes,
    media,
    members,
    messages,
    numbers,
    problems,
    queues,
    ring_groups,
    schedules,
    suppressions,
    telephony,
    telephony_setups,
    use_cases,
    users,
    voicemails,
    webhooks,
    work_items,
)
from afterbeep.api import connectors as connectors_api
from afterbeep.api import notifications as notifications_api
from afterbeep.api.access_log import AccessLogMiddleware
from afterbeep.api.deps import ApiServices
from afterbeep.api.idempotency import IdempotencyMiddleware
from afterbeep.api.limits import RequestGate
from afterbeep.api.query_params import reject_unknown_query
from afterbeep.services.ports.idempotency import IdempotencyStore

_PREFIXES = frozenset({"", "/v1"})  # the prefixes routers are included under


def create_app(
    services: ApiServices,
    idempotency: IdempotencyStore,
    readiness: Callable[[], Awaitable[list[str]]] | None = None,
    pages: Callable[[FastAPI], None] | None = None,
) -> FastAPI:
    """The API; `pages` adds the web pages (outside `/v1`) before the middleware is added."""
    app = FastAPI(
        title="afterbeep",
        version=__version__,
        description="Self-hosted voicemail: mailboxes, ringless voicemail, drops, voicemails for reps.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.services = services
    app.state.readiness = readiness
    problems.install(app)
    docs.install(app)
    app.include_router(health.router)
    # First after the health checks: the router is matched route by route, and accepting
    # sends is the busiest route (the order changes no match: no other path overlaps).
    app.include_router(voicemails.router, prefix="/v1")
    for module in (media, mailboxes, messages, numbers, webhooks, flows):
        app.include_router(module.router, prefix="/v1")
    app.include_router(notifications_api.router, prefix="/v1")
    app.include_router(campaigns.router, prefix="/v1")
    for ringless in (telephony_setups, use_cases, drops, suppressions, consents):
        app.include_router(ringless.router, prefix="/v1")
    for module in (account, schedules, members):
        app.include_router(module.router, prefix="/v1")
    for module in (users, devices):
        app.include_router(module.router, prefix="/v1")
    for keys_and_admin in (api_keys, admin):
        app.include_router(keys_and_admin.router, prefix="/v1")
    # Before agents: /v1/agents/me is the agent's own API, not an agent named "me".
    for contact_center in (agent_desk, work_items):
        app.include_router(contact_center.router, prefix="/v1")
    for pbx in (ring_groups, queues, agents):
        app.include_router(pbx.router, prefix="/v1")
    app.include_router(connectors_api.router, prefix="/v1")
    app.include_router(call_centers.router, prefix="/v1")
    app.include_router(telephony.router)  # /telephony/v1, the seed 002 Telephony API
    if pages is not None:
        pages(app)
    app.add_middleware(IdempotencyMiddleware, store=idempotency)
    app.add_middleware(
        RequestGate,
        authenticate=services.accounts.authenticate,
        max_json_bytes=services.max_body_bytes,
        max_upload_bytes=services.max_upload_bytes,
        route_json_bytes={
            ("POST", "/v1/campaigns"): campaigns.MAX_JSON_BYTES,
            ("POST", "/telephony/v1/voiceCalls/messages"): telephony.MAX_BULK_JSON_BYTES,
        },
        admin_key_hash=services.admin_key_hash,
        authenticate_agent=services.work_items.authenticate if services.work_items else None,
    )
    # Added last, so outermost: one line (and its metrics) for every request, whatever answers it.
    app.add_middleware(AccessLogMiddleware, prefixes=_PREFIXES)
    return app
