"""The process's Prometheus registry and the metrics of the layers below the API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

SIP_INVITE_TO_200 = Histogram(
    "afterbeep_sip_invite_to_200_seconds",
    "From an INVITE's arrival to its 200 OK being sent",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    registry=REGISTRY,
)


def histogram_quantile(quantile: float, histogram: Histogram) -> float | None:
    """The upper bound of the bucket holding `quantile` of the observations (None if empty)."""
    buckets: list[tuple[float, float]] = []
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return None
    for bound, count in buckets:
        if count >= quantile * total:
            return bound
    return None
