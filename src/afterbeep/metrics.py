"""The process's Prometheus registry and the metrics of the layers below the API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_SIP_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2,
    0.5, 1.0, 2.0, 5.0,
)  # fmt: skip

SIP_INVITE_TO_200 = Histogram(
    "afterbeep_sip_invite_to_200_seconds",
    "From an INVITE's arrival to its 200 OK being sent",
    buckets=_SIP_BUCKETS,
    registry=REGISTRY,
)

SIP_INVITE_ROUTED = Histogram(
    "afterbeep_sip_invite_routed_seconds",
    "From an INVITE's arrival to its route being known (the rest of INVITE-to-200 is answering)",
    ["path"],  # "quick": decided in the INVITE's own callback; "async": by the router task
    buckets=_SIP_BUCKETS,
    registry=REGISTRY,
)


def histogram_quantile(quantile: float, histogram: Histogram) -> float | None:
    """The upper bound of the bucket holding `quantile` of the observations, over every label
    set of the histogram (None if empty)."""
    counts: dict[float, float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
    buckets = sorted(counts.items())
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return None
    for bound, count in buckets:
        if count >= quantile * total:
            return bound
    return None


_LATE_BUCKETS = (
    0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5,
    1.0, 2.0,
)  # fmt: skip

PROMPT_LATE = Histogram(
    "afterbeep_prompt_late_seconds",
    "How late a prompt's first frame left after it was due (a prompt following another: after "
    "that one's end)",
    buckets=_LATE_BUCKETS,
    registry=REGISTRY,
)

LOOP_LAG = Histogram(
    "afterbeep_event_loop_lag_seconds",
    "How late the telephony event loop ran a timer (sampled every 50 ms)",
    buckets=_LATE_BUCKETS,
    registry=REGISTRY,
)

CALLS_REFUSED = Counter(
    "afterbeep_calls_refused_total",
    "New INVITEs answered 503 by this node, by reason (max_calls, capacity, answer_rate, loop_lag, "
    "prompt_late, draining)",
    ["reason"],
    registry=REGISTRY,
)

LOOP_BUSY = Gauge(
    "afterbeep_event_loop_busy_ratio",
    "Share of the telephony event loop thread's time spent running (its CPU time over the last "
    "half second): admission keeps it under its target",
    registry=REGISTRY,
)

PROMPT_SKIPPED = Histogram(
    "afterbeep_prompt_skipped_seconds",
    "How much of the start of a sequence played from the answer (greeting, instructions, beep) was "
    "skipped because it reached the pacer after it was due: the loop's delay from the 200 OK",
    buckets=(0.0, *_LATE_BUCKETS),
    registry=REGISTRY,
)

PROMPT_STALLS = Counter(
    "afterbeep_prompt_stalls_total",
    "Times a call's prompts fell more than 5 frames behind their schedule (the pacer starved of a "
    "CPU): the native pacer dropped the frames due, the Python pacer slipped its schedule",
    registry=REGISTRY,
)

ADMISSION_CALL_LIMIT = Gauge(
    "afterbeep_admission_call_limit",
    "Calls in progress that fit under the event loop's busy target, by the cost per call learned "
    "so far (AFTERBEEP_MAX_CALLS until one is learned)",
    registry=REGISTRY,
)
