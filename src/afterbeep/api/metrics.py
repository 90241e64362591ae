"""Prometheus metrics of the HTTP surface (one registry for the process)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from afterbeep.api.access_log import route_template
from afterbeep.metrics import REGISTRY

HTTP_REQUESTS = Counter(
    "afterbeep_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "afterbeep_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, prefixes: frozenset[str] = frozenset({""})) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = route_template(scope, self.prefixes)
            HTTP_REQUESTS.labels(scope["method"], path, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - started)
