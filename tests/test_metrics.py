"""The process metrics registry and the bucket quantile used by the benchmarks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from afterbeep.metrics import histogram_quantile


def test_quantile_is_the_bucket_upper_bound() -> None:
    h = Histogram("x_seconds", "x", buckets=(0.01, 0.05, 0.1, 1.0), registry=CollectorRegistry())
    assert histogram_quantile(0.5, h) is None
    for value in [0.005] * 98 + [0.07, 0.5]:
        h.observe(value)
    assert histogram_quantile(0.5, h) == 0.01
    assert histogram_quantile(0.98, h) == 0.01
    assert histogram_quantile(0.99, h) == 0.1
    assert histogram_quantile(1.0, h) == 1.0
