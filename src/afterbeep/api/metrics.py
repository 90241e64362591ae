"""Prometheus metrics of the HTTP surface (one registry for the process), observed by the
access-log middleware (`afterbeep.api.access_log`) with the same route template."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from afterbeep.metrics import REGISTRY

HTTP_REQUESTS = Counter(
    "afterbeep_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "afterbeep_http_request_seconds", "HTTP request latency", ["method", "route"], registry=REGISTRY
)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)
