"""The process's Prometheus registry and the metrics of the layers below the API."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

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
    "prompt_late, draining, cpu_wait)",
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

PROCESS_CPU_SHARE = Gauge(
    "afterbeep_process_cpu_share_ratio",
    "The process's CPU (all threads, over the last half second) as a share of the CPU it could "
    "have had on its cores (its own; what was idle, niced or used by its children; what others "
    "took past half of them): admission keeps it under its target",
    registry=REGISTRY,
)

LOOP_CPU_WAIT = Gauge(
    "afterbeep_event_loop_cpu_wait_ratio",
    "Seconds the telephony event loop thread waited for a CPU per second (run-queue wait over the "
    "last half second): admission refuses new calls past its limit (cpu_wait)",
    registry=REGISTRY,
)

ADMISSION_CALL_LIMIT = Gauge(
    "afterbeep_admission_call_limit",
    "Calls in progress that fit under the event loop's busy target, by the cost per call learned "
    "so far (AFTERBEEP_MAX_CALLS until one is learned)",
    registry=REGISTRY,
)


class _NativeReceiveCounters(Protocol):
    wakeups: int  # the loop woken by the receiver
    datagrams: int  # handed to Python

    def thread_counters(self) -> tuple[int, int, int, int]: ...  # wakeups, taken, dropped x2


class NativeReceiveCollector(Collector):
    """``afterbeep_recv_*``: the native RTP receivers' counters (`telephony/media/native.py`),
    read when /metrics is scraped, so that the receive thread does no metric work per packet."""

    _NAMES = (
        ("thread_wakeups", "Times the native RTP receive thread woke (none while idle)"),
        ("packets", "RTP packets the native receive thread took for recordings itself"),
        ("overflow", "Datagrams the native receive thread dropped: its queue for Python was full"),
        ("oversize", "Datagrams the native receive thread dropped: over 2048 bytes"),
        ("wakeups", "Times the native receiver woke the event loop"),
        ("datagrams", "Datagrams the native receiver handed to the Python receive path"),
    )

    def __init__(self) -> None:
        self._receivers: weakref.WeakSet[_NativeReceiveCounters] = weakref.WeakSet()
        self._closed = [0] * len(self._NAMES)  # totals of the receivers closed

    def add(self, receiver: _NativeReceiveCounters) -> None:
        self._receivers.add(receiver)

    def remove(self, receiver: _NativeReceiveCounters) -> None:
        if receiver in self._receivers:
            self._receivers.discard(receiver)
            for index, value in enumerate(self._values(receiver)):
                self._closed[index] += value

    @staticmethod
    def _values(receiver: _NativeReceiveCounters) -> tuple[int, ...]:
        return (*receiver.thread_counters(), receiver.wakeups, receiver.datagrams)

    def collect(self) -> Iterator[Metric]:
        totals = list(self._closed)
        for receiver in list(self._receivers):
            for index, value in enumerate(self._values(receiver)):
                totals[index] += value
        for (name, doc), value in zip(self._NAMES, totals, strict=True):
            yield CounterMetricFamily(f"afterbeep_recv_{name}", doc, value=value)


RECV_COUNTERS = NativeReceiveCollector()
REGISTRY.register(RECV_COUNTERS)

RECORDING_START_LATE = Histogram(
    "afterbeep_recording_start_late_seconds",
    "How long after the beep's scheduled end a message's recording was set up by its coroutine "
    "(the audio received meanwhile is kept, up to the pre-roll)",
    buckets=(0.0, *_LATE_BUCKETS),
    registry=REGISTRY,
)

RECORDING_PREROLL_OVERFLOW = Counter(
    "afterbeep_recording_preroll_overflow_total",
    "Recordings set up later after the beep than the audio kept for them (the pre-roll): the "
    "start of the message is lost",
    registry=REGISTRY,
)
